"""The training loop: ``train`` locks the run directory and builds a ``Job`` (tinygpt/training/job.py);
``run_loop`` then, for each step, sets the LR, batch size and block size, draws the step's batch and calls
``train_step`` (tinygpt/training/step.py), and after it runs the periodic actions
(tinygpt/training/periodic.py): log, evaluate (and keep the best checkpoint), sample, checkpoint.
Everything a run writes goes to its run directory; rank 0 alone writes under DDP.
"""

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from tinygpt.config.schema import check_train_config
from tinygpt.data import TRAIN_STREAM, get_batch
from tinygpt.hf.init_from import with_init_from
from tinygpt.runtime.device import pick_device
from tinygpt.runtime.distributed import (
    SINGLE_PROCESS,
    World,
    sum_over_ranks,
)
from tinygpt.runtime.progress import progress_bar
from tinygpt.runtime.startup import FIRST_STEP, StartupClock
from tinygpt.training.job import Job, build_job
from tinygpt.training.optim import set_lr
from tinygpt.training.periodic import evaluate_and_keep_best, log_sample, log_training, save, stop_if_diverged
from tinygpt.training.resume import checkpoint_to_resume, record_resume
from tinygpt.training.rundir import locked_run_dir
from tinygpt.training.schedule import sequences_before, staged_size
from tinygpt.training.step import StepStats, train_step
from tinygpt.training.stopping import STOP, Interrupted
from tinygpt.training.summary import summary_line

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


def train(
    cfg: DictConfig,
    run_dir: str | Path,
    world: World = SINGLE_PROCESS,
    overrides: list[str] | None = None,
    ckpt: dict[str, Any] | None = None,
    clock: StartupClock | None = None,
) -> dict[str, float]:
    """Run (or resume) one training job into ``run_dir``; returns final and best val loss.

    Under DDP every rank calls this with the same run_dir; rank 0 alone writes into it. ``overrides``
    (the command line's) are stored in checkpoints, so that a resume can compose the run's recipe again.
    ``ckpt``: run_dir's ckpt.pt when the caller has read it already (``resumed_config``), else read here.
    ``clock``: the command's start-up clock (tinygpt/runtime/startup.py), else one that starts here.
    """
    run_dir, started = Path(run_dir), time.perf_counter()
    if cfg.init_from is not None:  # model config and tokenizer from a transformers folder
        cfg = with_init_from(cfg, overrides or [])
    check_train_config(cfg, world.size)
    device = pick_device(cfg.device, world)
    with locked_run_dir(run_dir, enabled=world.is_main):  # one process per run directory
        ckpt = checkpoint_to_resume(cfg, run_dir / "ckpt.pt", ckpt)
        job = build_job(cfg, run_dir, world, device, ckpt, clock=clock or StartupClock(started))
        job.overrides = overrides
        if ckpt is not None and world.is_main:
            record_resume(run_dir, job.state.step, overrides or [])
        with contextlib.closing(job.logger):
            run_loop(job)
    if ckpt is not None and job.state.step == ckpt["step"]:
        log.info("nothing to do: the run already reached max_steps=%d", cfg.max_steps)
    elif world.is_main:
        log_summary(job, time.perf_counter() - started)
    return {"val_loss": job.val_loss, "best_val_loss": job.state.best_val_loss, "step": job.state.step}


def run_loop(job: Job) -> None:
    """The training loop: schedule, batch, step, then the periodic actions."""
    cfg, state = job.cfg, job.state
    throughput = Throughput(state.tokens_seen)
    whole_run = Throughput(state.tokens_seen)
    state.model.train()
    STOP.arm()  # from here a SIGINT/SIGTERM stops the loop at a step boundary, after a save
    with progress_bar(cfg.max_steps, state.step, enabled=job.world.is_main) as show_progress:
        while state.step < cfg.max_steps:
            lr = cfg.optim.lr * job.lr_factor(state.step, cfg.max_steps)
            set_lr(state.optimizer, lr)
            batch_size, block_size = step_shape(cfg, state.step)
            x, y = training_batch(job, batch_size, block_size)
            stats = take_step(job, x, y)
            state.step += 1
            state.tokens_seen += batch_size * block_size  # the tokens this step trained on

            logs = job.due(cfg.log_interval) or state.step == 1  # the first step shows the run is under way
            if logs or job.due(cfg.eval_interval) or job.due(cfg.ckpt_interval):
                stop_if_diverged(job)
            if logs:
                shape = (batch_size, block_size)
                log_training(job, stats, lr, shape, throughput.rate(state.tokens_seen), show_progress)
            job.startup.mark(FIRST_STEP)  # its loss is read above: on a GPU the step has run by now
            stop = STOP.agreed(job.world)  # a signal on any rank: every rank stops after this step
            with throughput.paused(), whole_run.paused():
                if job.due(cfg.eval_interval):
                    evaluate_and_keep_best(job, lr, show_progress)
                reached = job.due(cfg.eval_interval) and reached_target(job)
                if job.world.is_main and cfg.sample_interval and job.due(cfg.sample_interval):
                    log_sample(job)
                if job.due(cfg.ckpt_interval) or reached or stop:
                    save(job, job.run_dir / "ckpt.pt")
                if job.due(cfg.eval_interval):
                    report_startup(job)
            if reached:
                break
            if stop and not job.last_step:
                raise Interrupted(stop, state.step, job.run_dir)
    job.tokens_per_s = whole_run.rate(state.tokens_seen)


def report_startup(job: Job) -> None:
    """After the first evaluation: the start-up's line in the log, and its phases in the metrics."""
    phases = job.startup.report_once()
    if phases is not None:
        job.logger.log({"step": job.state.step, "time": time.time(), "startup_s": phases})


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


def step_shape(cfg: DictConfig, step: int) -> tuple[int, int]:
    """The global batch size and the block size of ``step``: the batch and length schedules (each a
    constant when off, its steps the first half of training when null)."""
    return (
        staged_size(step, cfg.batch_size_start, cfg.batch_size, growth_steps(cfg.batch_size_steps, cfg)),
        staged_size(
            step,
            cfg.curriculum_start_block_size,
            cfg.model.block_size,
            growth_steps(cfg.curriculum_steps, cfg),
        ),
    )


def growth_steps(steps: int | None, cfg: DictConfig) -> int:
    return steps if steps is not None else cfg.max_steps // 2


def training_batch(job: Job, batch_size: int, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's rows of the step's global batch, a pure function of (seed, step): resume-exact."""
    cfg, world = job.cfg, job.world
    drawn = sequences_before(
        job.state.step, cfg.batch_size_start, cfg.batch_size, growth_steps(cfg.batch_size_steps, cfg)
    )
    return get_batch(
        job.train_ids,
        batch_size,
        block_size,
        (cfg.seed, TRAIN_STREAM),
        job.state.step,
        rank=world.rank,
        world_size=world.size,
        sampling=job.data.sampling,
        device=job.device,
        doc_starts=job.data.train_doc_starts,
        drawn=drawn,
    )


def job_mean(job: Job) -> Callable[[torch.Tensor], torch.Tensor]:
    """Mean of a scalar over the ranks (so every rank takes the same skip decision)."""
    world = job.world
    return (lambda t: sum_over_ranks(t, world) / world.size) if world.distributed else (lambda t: t)


def log_summary(job: Job, wall_s: float) -> None:
    """The end of a run in one line: how long, how it did, where it is, and how to sample from it."""
    step, best = job.state.step, job.state.best_val_loss
    log.info(summary_line(step, job.run_dir, job.val_loss, best, job.tokens_per_s, wall_s))
