"""Training entry point: ``python -m tinygpt.train [overrides]``.

Read top to bottom: ``train`` locks the run directory and builds a ``Job`` (data, model, optimizer,
schedule, maybe a resumed state); ``run_loop`` then, for each step, sets the LR and block size, draws
the step's batch and calls ``train_step`` (tinygpt/step.py), and after it runs the periodic actions:
log, evaluate (and keep the best checkpoint), sample, checkpoint. Everything a run writes goes to its
run directory; rank 0 alone writes under DDP.
"""

import contextlib
import gc
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.nn.parallel import DistributedDataParallel as DDP

from tinygpt.argv import with_command_line
from tinygpt.checkpoint import remove_partial_checkpoints, save_checkpoint
from tinygpt.config import check_train_config, conf_dir, resolved
from tinygpt.data import TRAIN_STREAM, VAL_STREAM, TextData, get_batch, on_device
from tinygpt.device import autocast, pick_device
from tinygpt.distributed import (
    SINGLE_PROCESS,
    World,
    broadcast_from_main,
    close_world,
    init_world,
    sum_over_ranks,
)
from tinygpt.engine import generate_text
from tinygpt.errors import UserError, exit_on_user_error, find_user_error
from tinygpt.flops import flops_per_token, gpu_peak
from tinygpt.graphs import GraphedStep, GraphedUpdate, can_graph_update
from tinygpt.init_from import load_weights, with_init_from
from tinygpt.loggers import NullLogger
from tinygpt.optim import build_optimizer, set_lr
from tinygpt.progress import STEP_LINE, progress_bar
from tinygpt.resume import checkpoint_to_resume, record_resume, resumed_config, stop_message
from tinygpt.rundir import locked_run_dir, truncate_metrics
from tinygpt.schedule import curriculum_block_size
from tinygpt.scoring import bits_per_byte, count_bytes
from tinygpt.state import TrainState, make_ema
from tinygpt.step import StepSettings, StepStats, Update, train_step

log = logging.getLogger("tinygpt")


class Throughput:
    """Tokens per second of training alone: time spent in eval, samples and checkpoints is left out."""

    def __init__(self, tokens_seen: int):
        self.start, self.tokens = time.perf_counter(), tokens_seen

    def rate(self, tokens_seen: int) -> float:
        """Tokens/s since the last call (or the start), then start counting anew."""
        now = time.perf_counter()
        rate = (tokens_seen - self.tokens) / max(now - self.start, 1e-9)
        self.start, self.tokens = now, tokens_seen
        return rate

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        pause = time.perf_counter()
        yield
        self.start += time.perf_counter() - pause


@dataclass
class Job:
    """One training run, built: its config and place, its data and state, and how it steps."""

    cfg: DictConfig
    run_dir: Path
    world: World
    device: torch.device
    data: TextData
    train_ids: np.ndarray | torch.Tensor  # the splits batches are drawn from: memmaps, or copies on the GPU
    val_ids: np.ndarray | torch.Tensor
    state: TrainState
    forward: torch.nn.Module  # the model as the step and evaluation call it (DDP/compiled), loss included
    no_sync: Callable[[], contextlib.AbstractContextManager]  # DDP's, else a no-op
    lr_factor: Callable[[int, int], float]  # (step, max_steps) -> multiplier of optim.lr
    settings: StepSettings
    config: dict[str, Any]  # the resolved config: effective_config.json and every checkpoint's copy
    overrides: list[str] | None = None  # the command line's overrides, kept in checkpoints for resumes
    update: Update | None = None  # how the step applies its gradients: None = eagerly (apply_update)
    graphed_step: GraphedStep | None = None  # cuda_graph=true: the whole step, replayed as a CUDA graph
    logger: Any = field(default_factory=NullLogger)
    flops_per_token: float = 0.0  # training FLOPs per token (tinygpt/flops.py), for MFU
    peak_flops: float | None = None  # the GPU's peak from the table; None elsewhere (no MFU logged)
    val_loss: float = math.nan  # the latest evaluation
    val_bytes_per_token: float | None = None  # over the whole val split: val loss -> bits per byte
    tokens_per_s: float = math.nan  # over the whole (resumed part of the) run, evals and checkpoints left out
    skipped_logged: int = 0  # skipped updates already reported

    @property
    def last_step(self) -> bool:
        return self.state.step == self.cfg.max_steps

    def due(self, interval: int) -> bool:
        return self.state.step % interval == 0 or self.last_step


def train(
    cfg: DictConfig, run_dir: str | Path, world: World = SINGLE_PROCESS, overrides: list[str] | None = None
) -> dict[str, float]:
    """Run (or resume) one training job into ``run_dir``; returns final and best val loss.

    Under DDP every rank calls this with the same run_dir; rank 0 alone writes into it. ``overrides``
    (the command line's) are stored in checkpoints, so that a resume can compose the run's recipe again.
    """
    run_dir = Path(run_dir)
    if cfg.init_from is not None:  # model config and tokenizer from a transformers folder
        cfg = with_init_from(cfg, overrides or [])
    check_train_config(cfg, world.size)
    device = pick_device(cfg.device, world)
    with locked_run_dir(run_dir, enabled=world.is_main):  # one process per run directory
        ckpt = checkpoint_to_resume(cfg, run_dir / "ckpt.pt")
        job = build_job(cfg, run_dir, world, device, ckpt)
        job.overrides = overrides
        if ckpt is not None and world.is_main:
            record_resume(run_dir, job.state.step, overrides or [])
        with contextlib.closing(job.logger):
            run_loop(job)
    if ckpt is not None and job.state.step == ckpt["step"]:
        log.info("nothing to do: the run already reached max_steps=%d", cfg.max_steps)
    elif world.is_main:
        log_summary(job)
    return {"val_loss": job.val_loss, "best_val_loss": job.state.best_val_loss, "step": job.state.step}


def run_loop(job: Job) -> None:
    """The training loop: schedule, batch, step, then the periodic actions."""
    cfg, state = job.cfg, job.state
    curriculum_steps = cfg.curriculum_steps if cfg.curriculum_steps is not None else cfg.max_steps // 2
    throughput = Throughput(state.tokens_seen)
    whole_run = Throughput(state.tokens_seen)
    state.model.train()
    with progress_bar(cfg.max_steps, state.step, enabled=job.world.is_main) as show_progress:
        while state.step < cfg.max_steps:
            lr = cfg.optim.lr * job.lr_factor(state.step, cfg.max_steps)
            set_lr(state.optimizer, lr)
            block_size = curriculum_block_size(
                state.step, cfg.curriculum_start_block_size, cfg.model.block_size, curriculum_steps
            )
            x, y = training_batch(job, block_size)
            stats = take_step(job, x, y)
            state.step += 1
            state.tokens_seen += cfg.batch_size * block_size

            if job.due(cfg.log_interval) or job.due(cfg.eval_interval) or job.due(cfg.ckpt_interval):
                stop_if_diverged(job)
            if job.due(cfg.log_interval):
                log_training(job, stats, lr, block_size, throughput.rate(state.tokens_seen), show_progress)
            with throughput.paused(), whole_run.paused():
                if job.due(cfg.eval_interval):
                    evaluate_and_keep_best(job, lr)
                reached = job.due(cfg.eval_interval) and reached_target(job)
                if job.world.is_main and cfg.sample_interval and job.due(cfg.sample_interval):
                    log_sample(job)
                if job.due(cfg.ckpt_interval) or reached:
                    save(job, job.run_dir / "ckpt.pt")
            if reached:
                break
    job.tokens_per_s = whole_run.rate(state.tokens_seen)


def reached_target(job: Job) -> bool:
    """stop_at_val_loss: the latest val loss (the same on every rank) is at or below the target."""
    target = job.cfg.stop_at_val_loss
    if target is None or not job.val_loss <= target:
        return False
    log.info("step %d: val loss %.4f <= stop_at_val_loss=%g: stopping", job.state.step, job.val_loss, target)
    return True


def take_step(job: Job, x: torch.Tensor, y: torch.Tensor) -> StepStats:
    """One optimizer step on the batch x, y: replayed from its CUDA graph (cuda_graph=true) or run as is."""
    if job.graphed_step is not None:
        return job.graphed_step(job.state, x, y)
    return train_step(job.state, job.forward, x, y, job.settings, job_mean(job), job.no_sync, job.update)


def training_batch(job: Job, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's rows of the step's global batch, a pure function of (seed, step): resume-exact."""
    cfg, world = job.cfg, job.world
    return get_batch(
        job.train_ids,
        cfg.batch_size,
        block_size,
        (cfg.seed, TRAIN_STREAM),
        job.state.step,
        rank=world.rank,
        world_size=world.size,
        sampling=job.data.sampling,
        device=job.device,
    )


def job_mean(job: Job) -> Callable[[torch.Tensor], torch.Tensor]:
    """Mean of a scalar over the ranks (so every rank takes the same skip decision)."""
    world = job.world
    return (lambda t: sum_over_ranks(t, world) / world.size) if world.distributed else (lambda t: t)


def log_summary(job: Job) -> None:
    """The end of a run in one line: where it is, how it did, and how to sample from it."""
    log.info(
        "done: %d steps in %s | val loss %.4f (best %.4f) | %.0f tok/s | sample from it: "
        "python -m tinygpt.generate run=%s",
        job.state.step,
        job.run_dir,
        job.val_loss,
        job.state.best_val_loss,
        job.tokens_per_s,
        job.run_dir,
    )


# ---- building a job -----------------------------------------------------------------------------


def build_job(
    cfg: DictConfig,
    run_dir: Path,
    world: World,
    device: torch.device,
    ckpt: dict[str, Any] | None,
    vocab_size: int | None = None,
) -> Job:
    """Data, model, optimizer, schedule and state from the config (restored from ``ckpt`` if given),
    and the run directory's files. ``vocab_size`` (benchmarks) builds a larger output layer than the
    tokenizer needs."""
    seed_everything(cfg.seed)
    data: TextData = instantiate(cfg.data, min_tokens=cfg.model.block_size + 1)  # one window + its target
    model = instantiate(cfg.model)(vocab_size=max(vocab_size or 0, data.tokenizer.vocab_size)).to(device)
    model.grad_checkpointing = cfg.grad_checkpointing
    if cfg.init_from is not None and ckpt is None:  # a resume takes its weights from its checkpoint
        load_weights(model, cfg.init_from, resolved(cfg)["model"])
    optimizer = build_optimizer(model, cfg.optim)
    lr_factor = instantiate(cfg.schedule)
    lr_factor(0, cfg.max_steps)  # a bad schedule value fails here, before any work
    warmup = cfg.schedule.get("warmup_steps", 0)
    if warmup >= cfg.max_steps:
        log.warning(
            "schedule.warmup_steps=%d >= max_steps=%d: the learning rate never reaches optim.lr and the run "
            "learns little; lower schedule.warmup_steps (e.g. %d)",
            warmup,
            cfg.max_steps,
            max(cfg.max_steps // 10, 1),
        )
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    ema = make_ema(model) if cfg.ema_decay is not None else None
    state = TrainState(model, optimizer, scaler, ema)
    if ckpt is not None:
        state.restore(ckpt, run_dir / "ckpt.pt")
        log.info("resumed %s at step %d", run_dir / "ckpt.pt", state.step)
    # Checkpoints always save the plain `model`: never the DDP or compiled wrapper.
    ddp = (
        DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
        if world.distributed
        else None
    )
    forward = ddp or model
    if cfg.compile:
        log.info(
            "compiling the model (mode %s): the first steps take a while, often a minute or more",
            cfg.compile_mode,
        )
    job = Job(
        cfg=cfg,
        run_dir=run_dir,
        world=world,
        device=device,
        data=data,
        train_ids=on_device(data.train, device, "train"),
        val_ids=on_device(data.val, device, "val"),
        state=state,
        forward=torch.compile(forward, mode=str(cfg.compile_mode)) if cfg.compile else forward,
        no_sync=ddp.no_sync if ddp else contextlib.nullcontext,
        lr_factor=lr_factor,
        settings=StepSettings(**{f.name: cfg[f.name] for f in fields(StepSettings)}),
        config=resolved(cfg),
        skipped_logged=state.counters()["skipped_total"],
        flops_per_token=flops_per_token(model, cfg.model.block_size),
        peak_flops=gpu_peak(device, str(cfg.precision)) if device.type == "cuda" else None,
        val_bytes_per_token=bytes_per_token(data),
    )
    if cfg.compile and str(cfg.compile_mode) == "reduce-overhead":
        job.update = graphed_update(state, world)
    if cfg.cuda_graph:
        why_not = can_graph_update(state, world.distributed)
        if why_not:
            raise UserError(f"cuda_graph=true: {why_not}; set cuda_graph=false")
        job.graphed_step = GraphedStep(state, job.forward, job.settings)
    if world.is_main:
        start_run_dir(job)
    log.info(
        "model: %.2fM parameters (%.2fM non-embedding), vocab %d, device %s, precision %s, run dir %s",
        model.num_params(non_embedding=False) / 1e6,
        model.num_params() / 1e6,
        data.tokenizer.vocab_size,
        device,
        cfg.precision,
        run_dir,
    )
    return job


def graphed_update(state: TrainState, world: World) -> GraphedUpdate | None:
    """compile_mode=reduce-overhead: the update joins the forward and backward in CUDA graphs where it can."""
    why_not = can_graph_update(state, world.distributed)
    if why_not:
        log.info("compile_mode=reduce-overhead: the update stays out of CUDA graphs: %s", why_not)
        return None
    return GraphedUpdate(state)


def bytes_per_token(data: TextData) -> float | None:
    """Mean UTF-8 bytes per token of the val split; None (no val_bpb) if the tokenizer cannot say."""
    n_bytes = count_bytes(data.val, data.tokenizer.token_bytes())
    if n_bytes is None:
        log.warning(
            "val_bpb is not logged: this tokenizer's vocabulary does not say how many bytes a token is"
        )
        return None
    return n_bytes / len(data.val)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def start_run_dir(job: Job) -> None:
    """Rank 0: clear what a killed run left, write the run's config and tokenizer, open the logger."""
    run_dir, state = job.run_dir, job.state
    remove_partial_checkpoints(run_dir)
    # records after the checkpoint (or all of them, on a fresh start) are redone
    truncate_metrics(run_dir, state.step)
    (run_dir / "effective_config.json").write_text(json.dumps(job.config, indent=2) + "\n", encoding="utf-8")
    job.data.tokenizer.save(run_dir / "tokenizer.json")
    job.logger = instantiate(job.cfg.logger)(run_dir=run_dir, config=job.config, run_id=state.logger_run_id)
    state.logger_run_id = job.logger.run_id


# ---- the periodic actions -----------------------------------------------------------------------


def stop_if_diverged(job: Job) -> None:
    """Stop after ``max_skipped_steps`` skipped updates in a row (checked when the loop syncs anyway)."""
    worst = int(job.state.worst_in_a_row.item())
    if worst >= job.cfg.max_skipped_steps:
        raise UserError(stop_message(job.state.step, worst, job.cfg, job.run_dir, job.state.best_val_loss))


def train_record(job: Job, stats: StepStats, lr: float, block_size: int, tokens_per_s: float) -> dict:
    """The metrics.jsonl record of a training step: a new training metric is added here."""
    state = job.state
    record = dict(
        time=time.time(),
        step=state.step,
        train_loss=stats.loss.item(),
        lr=lr,
        grad_norm=stats.grad_norm.item(),
        tokens_per_s=tokens_per_s,
        tokens_seen=state.tokens_seen,
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
    block_size: int,
    tokens_per_s: float,
    show_progress: Callable[[int, str], None] | None,
) -> None:
    record = train_record(job, stats, lr, block_size, tokens_per_s)
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


def evaluate_and_keep_best(job: Job, lr: float) -> None:
    """Val loss (and the EMA's) into the metrics, also in bits per byte (with the val split's mean
    bytes per token: an estimate; tinygpt.eval scores the whole split); a new best is saved as
    ckpt_best.pt."""
    state = job.state
    job.val_loss = evaluate(job.forward, job.val_ids, job.cfg, job.device, job.world)
    record = dict(step=state.step, val_loss=job.val_loss, lr=lr, time=time.time())
    ratio = job.val_bytes_per_token
    if ratio is not None:
        record["val_bpb"] = bits_per_byte(job.val_loss, ratio)
    if state.ema is not None:
        record["ema_val_loss"] = evaluate(state.ema.module, job.val_ids, job.cfg, job.device, job.world)
        if ratio is not None:
            record["ema_val_bpb"] = bits_per_byte(record["ema_val_loss"], ratio)
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
    under DDP each rank takes every world.size-th batch and the sum is reduced."""
    was_training = model.training
    model.eval()
    total = torch.zeros((), device=device)
    for i in range(world.rank, cfg.eval_iters, world.size):
        x, y = get_batch(
            val_ids, cfg.batch_size, cfg.model.block_size, (cfg.seed, VAL_STREAM), i, device=device
        )
        with autocast(device, cfg.precision):
            total += model(x, targets=y)  # the compiled model computes its loss in its own graph
    model.train(was_training)
    return sum_over_ranks(total, world).item() / cfg.eval_iters


def log_sample(job: Job) -> None:
    state = job.state
    text = sample_text(
        state.ema.module if state.ema is not None else state.model, job.data, job.cfg.sample_tokens
    )
    log.info("sample at step %d:\n%s", state.step, text)
    job.logger.sample(state.step, text)


@torch.no_grad()
def sample_text(model: torch.nn.Module, data: TextData, n_tokens: int) -> str:
    """A sample drawn exactly as ``python -m tinygpt.generate`` draws one (KV cache, stop at EOT)."""
    was_training = model.training
    model.eval()
    tok = data.tokenizer
    try:
        start = "\n"  # samples open like a new paragraph when the vocabulary can say so
        tok.encode(start)
    except UserError:
        start = tok.decode([0])
    text = generate_text(model, tok, start, max_new_tokens=n_tokens, temperature=0.8, top_k=50)[0]
    model.train(was_training)
    return text[len(start) :]


def save(job: Job, path: Path) -> None:
    """Rank 0 writes the whole training state to ``path``, atomically."""
    if job.world.is_main:
        save_checkpoint(job.state.to_checkpoint(job.config, job.overrides), path)


# ---- the command --------------------------------------------------------------------------------


class JobLabel(logging.Filter):
    """Puts ``[job N]`` before a sweep job's log lines: parallel jobs (joblib) interleave them."""

    def __init__(self, label: str):
        super().__init__()
        self.label = label

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = f"[{self.label}] {record.msg}"
        return True


def run_sweep_job(cfg: DictConfig, run_dir: Path, overrides: list[str], job: int | None = None) -> float:
    """One job of a multirun: a failure is written to ``error.txt`` and logged, and the sweep goes on;
    the returned NaN tells a sweeper (e.g. Optuna) that the trial failed."""
    label = JobLabel(f"job {job}")
    log.addFilter(label)
    try:
        return train(cfg, run_dir, overrides=overrides)["best_val_loss"]
    except Exception as exc:
        user_error = find_user_error(exc)
        message = str(user_error) if user_error else f"{type(exc).__name__}: {exc}"
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "error.txt").write_text(message + "\n", encoding="utf-8")
        log.error("job %s failed: %s", run_dir, message, exc_info=user_error is None)
        return math.nan
    finally:
        log.removeFilter(label)  # a joblib worker process runs several jobs


def shared_run_dir(own_dir: Path, world: World) -> Path:
    """Every rank's Hydra app made its own run dir (``${now:...}`` can differ by a second between
    ranks): all ranks use rank 0's, and a rank whose own dir differs removes what Hydra put there."""
    run_dir = Path(broadcast_from_main(str(own_dir), world))
    if run_dir != own_dir:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == own_dir:
                handler.close()
                logging.getLogger().removeHandler(handler)
        shutil.rmtree(own_dir / ".hydra", ignore_errors=True)
        for leftover in own_dir.glob("*.log"):
            leftover.unlink()
        with contextlib.suppress(OSError):
            own_dir.rmdir()  # only if nothing else is in it
    return run_dir


@with_command_line  # flat keys, config_json=FILE and typos handled before Hydra reads the command line
@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    typed = list(hydra_cfg.overrides.task)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        world = init_world(cfg.device, cfg.dist_timeout_s)
        finished = False
        try:
            run_dir = shared_run_dir(run_dir, world)
            if not world.is_main:
                log.setLevel(logging.WARNING)  # rank 0 alone reports progress
            cfg, overrides = resumed_config(cfg, run_dir, typed)  # a resume keeps the run's own recipe
            best = train(cfg, run_dir, world, overrides)["best_val_loss"]
            finished = True
            return best
        finally:
            close_world(world, finished)
    if "group" in cfg.logger and cfg.logger.group is None:
        cfg.logger.group = Path(hydra_cfg.sweep.dir).name  # W&B groups a sweep's jobs together
    return run_sweep_job(cfg, run_dir, typed, hydra_cfg.job.num)


if __name__ == "__main__":
    # Call the copy of this module imported under its real name: launchers that pickle the task
    # function (joblib, submitit) can then find it by reference instead of serializing __main__.
    from tinygpt.train import main as entry

    # The objects alive now (torch's, Hydra's) live until exit: leave them out of later collections (the
    # optimizer imports torch._dynamo, ~0.2 s of collections) and, with the rest, out of the
    # interpreter's last one at exit (~0.5 s); the OS frees them instead, and none needs finalizing.
    gc.freeze()
    entry()
    gc.freeze()
