"""What the training loop does between steps: log the step, evaluate (and keep the best checkpoint),
sample, save."""

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from tinygpt.data import VAL_STREAM, get_batch
from tinygpt.errors import UserError
from tinygpt.evaluation.scoring import bits_per_byte
from tinygpt.inference.repeated import RepeatedSample
from tinygpt.runtime.device import autocast
from tinygpt.runtime.distributed import (
    World,
    sum_over_ranks,
)
from tinygpt.runtime.progress import STEP_LINE
from tinygpt.training.checkpoint import save_checkpoint
from tinygpt.training.job import Job
from tinygpt.training.resume import stop_message
from tinygpt.training.step import StepStats

log = logging.getLogger("tinygpt")

SLOW_EVAL_S = 2.0  # an evaluation expected to take longer is announced before it starts


def stop_if_diverged(job: Job) -> None:
    """Stop after ``max_skipped_steps`` skipped updates in a row (checked when the loop syncs anyway)."""
    worst = int(job.state.worst_in_a_row.item())
    if worst >= job.cfg.max_skipped_steps:
        raise UserError(stop_message(job.state.step, worst, job.cfg, job.run_dir, job.state.best_val_loss))


def train_record(job: Job, stats: StepStats, lr: float, shape: tuple[int, int], tokens_per_s: float) -> dict:
    """The metrics.jsonl record of a training step (``shape``: its global batch size and block size): a new
    training metric is added here."""
    state, (batch_size, block_size) = job.state, shape
    record = dict(
        time=time.time(),
        step=state.step,
        train_loss=stats.loss.item(),
        lr=lr,
        grad_norm=stats.grad_norm.item(),
        tokens_per_s=tokens_per_s,
        tokens_seen=state.tokens_seen,
        batch_size=batch_size,
        block_size=block_size,
        skipped_steps=int(state.skipped_total.item()),
        tflops=tokens_per_s * job.flops_per_token / 1e12,  # achieved, at this step's block size
    )
    if job.peak_flops:
        record["mfu"] = record["tflops"] * 1e12 / job.peak_flops
    return record


def log_training(
    job: Job,
    stats: StepStats,
    lr: float,
    shape: tuple[int, int],
    tokens_per_s: float,
    show_progress: Callable[[int, str], None] | None,
) -> None:
    record = train_record(job, stats, lr, shape, tokens_per_s)
    job.logger.log(record)
    if record["skipped_steps"] > job.skipped_logged:
        log.warning(
            "step %d: %d update(s) skipped since the last log (non-finite loss or gradient), %d in a row",
            record["step"],
            record["skipped_steps"] - job.skipped_logged,
            job.state.skipped_in_a_row.item(),
        )
        job.skipped_logged = record["skipped_steps"]
    log.info(
        "step %d/%d | loss %.4f | lr %.2e | grad norm %.3f | %.0f tok/s | %s",
        record["step"],
        job.cfg.max_steps,
        record["train_loss"],
        lr,
        record["grad_norm"],
        tokens_per_s,
        f"MFU {100 * record['mfu']:.1f}%" if "mfu" in record else f"{record['tflops']:.2f} TFLOP/s",
        extra={STEP_LINE: True},
    )
    if show_progress is not None:  # on a terminal the bar replaces the step lines
        show_progress(
            record["step"], f"loss {record['train_loss']:.4f} | lr {lr:.2e} | {tokens_per_s:,.0f} tok/s"
        )


def announce_evaluation(job: Job, show_progress: Callable[[int, str], None] | None) -> bool:
    """Say that an evaluation is under way when it may take a while: the first (its time is not known
    yet), the final one (which the bar, at its end, would show as ETA 0:00:00), and any whose previous
    evaluation took over ``SLOW_EVAL_S``. Returns whether it did."""
    seconds = job.eval_seconds
    if not (job.last_step or seconds is None or seconds > SLOW_EVAL_S):
        return False
    ema = ", and the EMA's" if job.state.ema is not None else ""
    what = f"evaluating ({job.cfg.eval_iters} batches{ema})"
    log.info("step %d: %s", job.state.step, what, extra={STEP_LINE: show_progress is not None})
    if show_progress is not None:  # on a terminal the bar says it, where the stats were
        show_progress(job.state.step, what)
    return True


def evaluate_and_keep_best(
    job: Job, lr: float, show_progress: Callable[[int, str], None] | None = None
) -> None:
    """Val loss (and the EMA's) into the metrics, also in bits per byte (with the val split's mean
    bytes per token: an estimate; tinygpt.eval scores the whole split); a new best is saved as
    ckpt_best.pt. An evaluation that may take a while is announced first (announce_evaluation)."""
    state = job.state
    announced = announce_evaluation(job, show_progress)
    started = time.perf_counter()
    job.val_loss = evaluate(job.forward, job.val_ids, job.cfg, job.device, job.world)
    record = dict(step=state.step, val_loss=job.val_loss, lr=lr, time=time.time())
    ratio = job.val_bytes_per_token
    if ratio is not None:
        record["val_bpb"] = bits_per_byte(job.val_loss, ratio)
    if state.ema is not None:
        record["ema_val_loss"] = evaluate(state.ema.module, job.val_ids, job.cfg, job.device, job.world)
        if ratio is not None:
            record["ema_val_bpb"] = bits_per_byte(record["ema_val_loss"], ratio)
    job.eval_seconds = time.perf_counter() - started
    job.startup.add("first evaluation", job.eval_seconds)  # the first one's compilation shows here
    if announced and show_progress is not None:
        show_progress(state.step, f"val loss {job.val_loss:.4f}")
    job.logger.log(record)
    log.info("step %d | %s", state.step, " | ".join(f"{k} {v:.4f}" for k, v in record.items() if "val" in k))
    if job.val_loss < state.best_val_loss:
        state.best_val_loss = job.val_loss
        save(job, job.run_dir / "ckpt_best.pt")


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    val_ids: np.ndarray | torch.Tensor,
    cfg: DictConfig,
    device: torch.device,
    world: World,
) -> float:
    """Mean val loss over ``eval_iters`` batches, the same ones at every evaluation so values compare;
    under DDP each rank takes every world.size-th batch and the sum is reduced. A batch goes through the
    model in ``grad_accum_steps`` pieces, the training's micro-batches: what fits in memory for training
    fits here (the mean of equal pieces' means is the batch's mean)."""
    was_training = model.training
    model.eval()
    total = torch.zeros((), device=device)
    pieces = cfg.grad_accum_steps
    for i in range(world.rank, cfg.eval_iters, world.size):
        x, y = get_batch(
            val_ids, cfg.batch_size, cfg.model.block_size, (cfg.seed, VAL_STREAM), i, device=device
        )
        with autocast(device, cfg.precision):
            for x_piece, y_piece in zip(x.chunk(pieces), y.chunk(pieces), strict=True):
                total += model(x_piece, targets=y_piece) / pieces  # the compiled model's loss is in its graph
    model.train(was_training)
    return sum_over_ranks(total, world).item() / cfg.eval_iters


def log_sample(job: Job) -> None:
    """Log a text sample of the model (of the EMA, when there is one), drawn by the run's one sampler."""
    state, started = job.state, time.perf_counter()
    if job.sampler is None:  # made at the first sample; its decoder is kept for the next ones
        job.sampler = training_sample(job.data.tokenizer, job.cfg.sample_tokens)
    text = sample_text(state.ema.module if state.ema is not None else state.model, job.sampler)
    job.startup.add("first sample", time.perf_counter() - started)
    log.info("sample at step %d:\n%s", state.step, text)
    job.logger.sample(state.step, text)


def training_sample(tokenizer: Any, n_tokens: int) -> RepeatedSample:
    """The training loop's samples, drawn exactly as ``python -m tinygpt.generate`` draws one (KV cache,
    stop at EOT), at temperature 0.8 and top_k 50, from the start of a paragraph when the vocabulary
    can say so."""
    try:
        start = "\n"
        tokenizer.encode(start)
    except UserError:
        start = tokenizer.decode([0])
    return RepeatedSample(tokenizer, start, n_tokens, temperature=0.8, top_k=50)


@torch.no_grad()
def sample_text(model: torch.nn.Module, sampler: RepeatedSample) -> str:
    """The continuation ``sampler`` draws from ``model`` (in eval mode meanwhile), without its start."""
    was_training = model.training
    model.eval()
    text = sampler.text(model)
    model.train(was_training)
    return text[len(sampler.prompt) :]


def save(job: Job, path: Path) -> None:
    """Rank 0 writes the whole training state to ``path``, atomically."""
    if job.world.is_main:
        save_checkpoint(job.state.to_checkpoint(job.config, job.overrides), path)
