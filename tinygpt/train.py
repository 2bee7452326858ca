"""Training entry point: ``python -m tinygpt.train [overrides]``.

The loop, top to bottom: build data, model, optimizer and schedule from the config; maybe resume;
then for each step: set the LR and block size, accumulate gradients over micro-batches under autocast,
unscale and clip, skip the update if anything is non-finite, step, update the EMA; and at their
intervals log, evaluate, sample and checkpoint. Everything a run writes goes to its run directory.
"""

import contextlib
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from tinygpt.checkpoint import (
    capture_rng,
    check_training_state,
    load_checkpoint,
    remove_partial_checkpoints,
    restore_rng,
    save_checkpoint,
)
from tinygpt.config import check_train_config, conf_dir
from tinygpt.data import TRAIN_STREAM, VAL_STREAM, TextData, check_fits, get_batch
from tinygpt.distributed import (
    SINGLE_PROCESS,
    World,
    broadcast_from_main,
    close_world,
    init_world,
    sum_over_ranks,
)
from tinygpt.errors import UserError, exit_on_user_error, find_user_error
from tinygpt.jsonconfig import with_json_config
from tinygpt.loggers import NullLogger
from tinygpt.loss import lm_loss
from tinygpt.optim import build_optimizer, set_lr
from tinygpt.progress import STEP_LINE, progress_bar
from tinygpt.rundir import locked_run_dir, truncate_metrics
from tinygpt.schedule import curriculum_block_size

log = logging.getLogger("tinygpt")

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(name: str, world: World = SINGLE_PROCESS) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UserError("device=cuda but no CUDA GPU is visible; use device=cpu or device=auto")
        return torch.device("cuda", world.local_rank)
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError("device=mps but MPS is not available here; use device=cpu or device=auto")
    return torch.device(name)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, data: TextData, cfg: DictConfig, device: torch.device, world: World
) -> float:
    """Mean val loss over ``eval_iters`` batches, the same ones at every evaluation so values compare;
    under DDP each rank takes every world.size-th batch and the sum is reduced."""
    was_training = model.training
    model.eval()
    total = torch.zeros((), device=device)
    for i in range(world.rank, cfg.eval_iters, world.size):
        x, y = get_batch(
            data.val, cfg.batch_size, cfg.model.block_size, (cfg.seed, VAL_STREAM), i, device=device
        )
        with autocast(device, cfg.precision):
            total += lm_loss(model(x), y)
    model.train(was_training)
    return sum_over_ranks(total, world).item() / cfg.eval_iters


@torch.no_grad()
def sample_text(model: torch.nn.Module, data: TextData, n_tokens: int) -> str:
    """A sample drawn exactly as ``python -m tinygpt.generate`` draws one (KV cache, stop at EOT)."""
    from tinygpt.generate import generate_text  # here, not at the top: tinygpt.generate imports this module

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


def accumulate_gradients(
    forward: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: DictConfig,
    scaler: torch.amp.GradScaler,
    no_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> torch.Tensor:
    """Backward over ``grad_accum_steps`` equal slices of the batch x, y (B, T); returns the mean loss.

    Each micro-step's loss is divided by the number of slices, so the summed gradient equals the
    gradient of the whole batch's mean loss: accumulation changes memory use, not the result. Under
    DDP, ``no_sync`` skips the gradient all-reduce on every micro-step but the last.
    """
    loss_sum = torch.zeros((), device=x.device)
    slices = list(zip(x.chunk(cfg.grad_accum_steps), y.chunk(cfg.grad_accum_steps), strict=True))
    for i, (xm, ym) in enumerate(slices):
        with no_sync() if i < len(slices) - 1 else contextlib.nullcontext():
            with autocast(x.device, cfg.precision):
                loss = lm_loss(forward(xm), ym, cfg.label_smoothing, cfg.z_loss) / cfg.grad_accum_steps
            scaler.scale(loss).backward()
        loss_sum += loss.detach()
    return loss_sum


def make_ema(model: torch.nn.Module, decay: float) -> AveragedModel:
    """torch's AveragedModel as an EMA: the first update copies the weights, then
    ema <- decay * ema + (1 - decay) * weights after every optimizer step."""
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def flat_items(node: Any, prefix: str = "") -> dict[str, Any]:
    """{"model.n_layer": 4, ...} for a nested config (dicts only; lists are values)."""
    if not isinstance(node, dict):
        return {prefix: node}
    items: dict[str, Any] = {}
    for key, value in node.items():
        items.update(flat_items(value, f"{prefix}.{key}" if prefix else str(key)))
    return items


# What a resumed run must share with its checkpoint: the model, the optimizer's kind, the precision.
SAME_ON_RESUME = ("model.", "optim._target_", "precision")


def check_same_experiment(saved: dict[str, Any], cfg: DictConfig, path: Path) -> None:
    """Refuse a resume that would change SAME_ON_RESUME, naming each key with its old and new value."""
    old, new = flat_items(saved), flat_items(OmegaConf.to_container(cfg, resolve=True))
    unset = "(unset)"
    changed = [
        f"{key} {old.get(key, unset)} -> {new.get(key, unset)}"
        for key in sorted(old.keys() | new.keys())
        if key.startswith(SAME_ON_RESUME) and old.get(key, unset) != new.get(key, unset)
    ]
    if changed:
        raise UserError(
            f"cannot resume {path}: this run differs from the checkpoint's ({'; '.join(changed)}); resume "
            "with the checkpoint's model.*, optim= and precision, or start a new run directory"
        )


def checkpoint_to_resume(cfg: DictConfig, ckpt_path: Path) -> dict[str, Any] | None:
    """The checkpoint this run continues from, per ``resume``: true (it must exist), false (there must be
    none: a new run never overwrites one) or auto (continue if there is one, else start fresh)."""
    exists = ckpt_path.exists()
    if cfg.resume is False and exists:
        raise UserError(
            f"{ckpt_path.parent} already holds a run (ckpt.pt); pass resume=true to continue it, "
            "or choose a new hydra.run.dir"
        )
    if cfg.resume is True and not exists:
        raise UserError(
            f"resume=true but there is no checkpoint at {ckpt_path} yet; use resume=auto to continue when "
            "there is one and start fresh when there is not"
        )
    if not exists or cfg.resume is False:
        return None
    ckpt = load_checkpoint(ckpt_path)
    check_training_state(ckpt, ckpt_path)
    check_same_experiment(ckpt["config"], cfg, ckpt_path)
    if cfg.ema_decay is not None and ckpt.get("ema") is None:
        raise UserError(f"cannot resume {ckpt_path} with ema_decay set: it was trained without EMA")
    return ckpt


def restore(
    ckpt: dict[str, Any],
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    ema: AveragedModel | None,
) -> None:
    """Load a checkpoint's states into the run's parts and its RNGs; a state that does not fit (edited
    or damaged weights, another optimizer's state) is refused in one line."""
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        if ema is not None:
            ema.module.load_state_dict(ckpt["ema"])
            ema.n_averaged.copy_(ckpt["ema_n_averaged"])
        restore_rng(ckpt["rng"])
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"cannot resume {path}: its saved state does not fit this run ({first_line[:200]}); the file is "
            "damaged or was edited: resume from a good copy, or start a new hydra.run.dir"
        ) from exc


def stop_message(step: int, skipped: int, cfg: DictConfig, run_dir: Path, best_val: float) -> str:
    """Why a diverged run stopped, and which checkpoint is still good: ckpt.pt may already hold huge
    weights (the first bad update can be finite), but ckpt_best.pt was saved at the lowest val loss."""
    best = run_dir / "ckpt_best.pt"
    good = (
        f"the last good checkpoint is {best} (val loss {best_val:.4f}); {run_dir / 'ckpt.pt'} may hold "
        "diverged weights"
        if math.isfinite(best_val) and best.exists()
        else "no checkpoint of this run is known to be good"
    )
    return (
        f"stopped at step {step}: {skipped} non-finite losses or gradients in a row "
        f"(max_skipped_steps={cfg.max_skipped_steps}); {good}. "
        "Lower optim.lr, set grad_clip, or use precision=bf16/fp32"
    )


def train(cfg: DictConfig, run_dir: str | Path, world: World = SINGLE_PROCESS) -> dict[str, float]:
    """Run (or resume) one training job into ``run_dir``; returns final and best val loss.

    Under DDP every rank calls this with the same run_dir; rank 0 alone writes into it.
    """
    run_dir = Path(run_dir)
    check_train_config(cfg, world.size)
    device = pick_device(cfg.device, world)
    with locked_run_dir(run_dir, enabled=world.is_main):  # one process per run directory
        return run_training(cfg, run_dir, world, device)


def run_training(cfg: DictConfig, run_dir: Path, world: World, device: torch.device) -> dict[str, float]:
    """The body of ``train``, run while this process owns ``run_dir``."""
    ckpt_path = run_dir / "ckpt.pt"
    ckpt = checkpoint_to_resume(cfg, ckpt_path)

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    data: TextData = instantiate(cfg.data)
    check_fits(data, cfg.model.block_size)
    model = instantiate(cfg.model)(vocab_size=data.tokenizer.vocab_size).to(device)
    model.grad_checkpointing = cfg.grad_checkpointing
    optimizer = build_optimizer(model, cfg.optim)
    lr_factor = instantiate(cfg.schedule)
    lr_factor(0, cfg.max_steps)  # a bad schedule value fails here, before any work
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    ema = None
    if cfg.ema_decay is not None:
        ema = make_ema(model, cfg.ema_decay)
    # Checkpoints always save the plain `model`: never the DDP or compiled wrapper.
    ddp = (
        DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
        if world.distributed
        else None
    )
    forward = ddp or model
    forward = torch.compile(forward) if cfg.compile else forward
    curriculum_steps = cfg.curriculum_steps if cfg.curriculum_steps is not None else cfg.max_steps // 2

    step, best_val, tokens_seen, skipped_in_a_row, skipped_total = 0, math.inf, 0, 0, 0
    if world.is_main:
        remove_partial_checkpoints(run_dir)
    if ckpt is not None:
        restore(ckpt, ckpt_path, model, optimizer, scaler, ema)
        step, best_val, tokens_seen = ckpt["step"], ckpt["best_val_loss"], ckpt["tokens_seen"]
        skipped_in_a_row, skipped_total = ckpt["skipped_in_a_row"], ckpt["skipped_total"]
        log.info("resumed %s at step %d", ckpt_path, step)
    if world.is_main:
        truncate_metrics(run_dir, step)  # records after the checkpoint (or all, on a fresh start) are redone

    resolved = OmegaConf.to_container(cfg, resolve=True)
    logger = NullLogger()
    if world.is_main:
        (run_dir / "effective_config.json").write_text(
            json.dumps(resolved, indent=2) + "\n", encoding="utf-8"
        )
        data.tokenizer.save(run_dir / "tokenizer.json")
        resume_id = ckpt.get("logger_run_id") if ckpt else None
        logger = instantiate(cfg.logger)(run_dir=run_dir, config=resolved, run_id=resume_id)
    log.info(
        "model: %.2fM parameters (%.2fM non-embedding), vocab %d, device %s, precision %s, run dir %s",
        model.num_params(non_embedding=False) / 1e6,
        model.num_params() / 1e6,
        data.tokenizer.vocab_size,
        device,
        cfg.precision,
        run_dir,
    )

    def checkpoint(path: Path) -> None:
        if not world.is_main:
            return
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "ema": ema.module.state_dict() if ema is not None else None,
            "ema_n_averaged": ema.n_averaged if ema is not None else None,
            "step": step,
            "best_val_loss": best_val,
            "tokens_seen": tokens_seen,
            "skipped_in_a_row": skipped_in_a_row,
            "skipped_total": skipped_total,
            "config": resolved,
            "logger_run_id": logger.run_id,
            "rng": capture_rng(),
        }
        save_checkpoint(state, path)

    grad_clip = cfg.grad_clip if cfg.grad_clip > 0 else math.inf  # the norm is always computed and logged
    val_loss = math.nan
    t_last, tokens_last = time.perf_counter(), tokens_seen
    model.train()
    with (
        progress_bar(cfg.max_steps, step, enabled=world.is_main) as show_progress,
        contextlib.closing(logger),
    ):
        while step < cfg.max_steps:
            lr = cfg.optim.lr * lr_factor(step, cfg.max_steps)
            set_lr(optimizer, lr)
            block_size = curriculum_block_size(
                step, cfg.curriculum_start_block_size, cfg.model.block_size, curriculum_steps
            )
            # This rank's rows of the step's global batch, a pure function of (seed, step): resume-exact.
            x, y = get_batch(
                data.train,
                cfg.batch_size,
                block_size,
                (cfg.seed, TRAIN_STREAM),
                step,
                rank=world.rank,
                world_size=world.size,
                sampling=data.sampling,
                device=device,
            )
            loss_sum = accumulate_gradients(
                forward, x, y, cfg, scaler, ddp.no_sync if ddp else contextlib.nullcontext
            )
            loss_sum = sum_over_ranks(loss_sum, world) / world.size  # every rank takes the same skip decision
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            # One host sync per step: a non-finite loss or gradient must never reach the weights.
            if torch.isfinite(grad_norm).logical_and(torch.isfinite(loss_sum)).item():
                scaler.step(optimizer)
                skipped_in_a_row = 0
                if ema is not None:
                    ema.update_parameters(model)
            else:
                skipped_in_a_row += 1
                skipped_total += 1
                log.warning(
                    "step %d: non-finite loss or gradient, update skipped (%d in a row)",
                    step + 1,
                    skipped_in_a_row,
                )
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            tokens_seen += cfg.batch_size * block_size
            if skipped_in_a_row >= cfg.max_skipped_steps:
                raise UserError(stop_message(step, skipped_in_a_row, cfg, run_dir, best_val))

            if step % cfg.log_interval == 0 or step == cfg.max_steps:
                train_loss = loss_sum.item()  # host syncs beyond the skip check happen only at log time
                elapsed = time.perf_counter() - t_last
                tokens_per_s = (tokens_seen - tokens_last) / max(elapsed, 1e-9)
                t_last, tokens_last = time.perf_counter(), tokens_seen
                record = dict(
                    time=time.time(),
                    step=step,
                    train_loss=train_loss,
                    lr=lr,
                    grad_norm=grad_norm.item(),
                    tokens_per_s=tokens_per_s,
                    tokens_seen=tokens_seen,
                    block_size=block_size,
                    skipped_steps=skipped_total,
                )
                logger.log(record)
                log.info(
                    "step %d/%d | loss %.4f | lr %.2e | grad norm %.3f | %.0f tok/s",
                    step,
                    cfg.max_steps,
                    train_loss,
                    lr,
                    record["grad_norm"],
                    tokens_per_s,
                    extra={STEP_LINE: True},
                )
                if show_progress is not None:  # on a terminal the bar replaces the step lines
                    show_progress(step, f"loss {train_loss:.4f} | lr {lr:.2e} | {tokens_per_s:,.0f} tok/s")
            pause = time.perf_counter()  # eval, samples and checkpoints do not count against tokens/s
            if step % cfg.eval_interval == 0 or step == cfg.max_steps:
                val_loss = evaluate(forward, data, cfg, device, world)
                record = dict(step=step, val_loss=val_loss, lr=lr, time=time.time())
                if ema is not None:
                    record["ema_val_loss"] = evaluate(ema.module, data, cfg, device, world)
                logger.log(record)
                log.info(
                    "step %d | %s", step, " | ".join(f"{k} {v:.4f}" for k, v in record.items() if "val" in k)
                )
                if val_loss < best_val:
                    best_val = val_loss
                    checkpoint(run_dir / "ckpt_best.pt")
            if (
                world.is_main
                and cfg.sample_interval
                and (step % cfg.sample_interval == 0 or step == cfg.max_steps)
            ):
                text = sample_text(ema.module if ema is not None else model, data, cfg.sample_tokens)
                log.info("sample at step %d:\n%s", step, text)
                logger.sample(step, text)
            if step % cfg.ckpt_interval == 0 or step == cfg.max_steps:
                checkpoint(ckpt_path)
            t_last += time.perf_counter() - pause
    if ckpt is not None and step == ckpt["step"]:
        log.info("nothing to do: the run already reached max_steps=%d", cfg.max_steps)
    return {"val_loss": val_loss, "best_val_loss": best_val, "step": step}


def run_sweep_job(cfg: DictConfig, run_dir: Path) -> float:
    """One job of a multirun: a failure is written to ``error.txt`` and logged, and the sweep goes on;
    the returned NaN tells a sweeper (e.g. Optuna) that the trial failed."""
    try:
        return train(cfg, run_dir)["best_val_loss"]
    except Exception as exc:
        user_error = find_user_error(exc)
        message = str(user_error) if user_error else f"{type(exc).__name__}: {exc}"
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "error.txt").write_text(message + "\n", encoding="utf-8")
        log.error("job %s failed: %s", run_dir, message, exc_info=user_error is None)
        return math.nan


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


@with_json_config  # config_json=FILE: the JSON's keys become overrides before Hydra reads the command line
@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        world = init_world(cfg.device, cfg.dist_timeout_s)
        try:
            run_dir = shared_run_dir(run_dir, world)
            if not world.is_main:
                log.setLevel(logging.WARNING)  # rank 0 alone reports progress
            return train(cfg, run_dir, world)["best_val_loss"]
        finally:
            close_world(world)
    if "group" in cfg.logger and cfg.logger.group is None:
        cfg.logger.group = Path(hydra_cfg.sweep.dir).name  # W&B groups a sweep's jobs together
    return run_sweep_job(cfg, run_dir)


if __name__ == "__main__":
    # Call the copy of this module imported under its real name: launchers that pickle the task
    # function (joblib, submitit) can then find it by reference instead of serializing __main__.
    from tinygpt.train import main as entry

    entry()
