"""One training run, built from its config: the data, the model, the optimizer and schedule, the
training state (restored from a checkpoint on resume), how the step runs, and the run directory's files."""

import contextlib
import json
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.nn.parallel import DistributedDataParallel as DDP

from tinygpt.config.schema import resolved
from tinygpt.data import TextData, on_device
from tinygpt.errors import UserError
from tinygpt.evaluation.scoring import count_bytes
from tinygpt.hf.init_from import check_weight_shapes, load_weights
from tinygpt.inference.repeated import RepeatedSample
from tinygpt.model import build_gpt
from tinygpt.runtime.device import DTYPES, check_fp8_device, choose_precision
from tinygpt.runtime.distributed import World
from tinygpt.runtime.files import remove_leftovers, write_text
from tinygpt.runtime.startup import StartupClock
from tinygpt.training.flops import flops_per_token, gpu_peak
from tinygpt.training.graphs import GraphedStep, GraphedUpdate, can_graph_update
from tinygpt.training.loggers import NullLogger
from tinygpt.training.metrics import truncate_records
from tinygpt.training.optim import build_optimizer
from tinygpt.training.resume import schedule_stretch
from tinygpt.training.state import TrainState, make_ema
from tinygpt.training.step import StepSettings, Update

log = logging.getLogger("tinygpt")


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
    flops_per_token: float = 0.0  # training FLOPs per token (tinygpt/training/flops.py), for MFU
    peak_flops: float | None = None  # the GPU's peak from the table; None elsewhere (no MFU logged)
    val_loss: float = math.nan  # the latest evaluation
    eval_seconds: float | None = None  # how long the latest evaluation took (None: none yet)
    val_bytes_per_token: float | None = None  # over the whole val split: val loss -> bits per byte
    tokens_per_s: float = math.nan  # over the whole (resumed part of the) run, evals and checkpoints left out
    skipped_logged: int = 0  # skipped updates already reported
    sampler: RepeatedSample | None = None  # the periodic samples', kept with its decoder between them
    startup: StartupClock = field(default_factory=StartupClock)  # the start-up's phases, reported once

    @property
    def last_step(self) -> bool:
        return self.state.step == self.cfg.max_steps

    def due(self, interval: int) -> bool:
        return self.state.step % interval == 0 or self.last_step


def build_job(
    cfg: DictConfig,
    run_dir: Path,
    world: World,
    device: torch.device,
    ckpt: dict[str, Any] | None,
    vocab_size: int | None = None,
    clock: StartupClock | None = None,
) -> Job:
    """Data, model, optimizer, schedule and state from the config (restored from ``ckpt`` if given),
    and the run directory's files. ``vocab_size`` (benchmarks) builds a larger output layer than the
    tokenizer needs. ``clock`` marks the start-up's phases as they end (tinygpt/runtime/startup.py)."""
    clock = clock or StartupClock()
    clock.mark("setup")  # since the imports: the process group, the resume check, the config's checks
    check_fp8_device(cfg.model.get("fp8_head", False), device)  # before any data or model is made
    settle_precision(cfg, device, ckpt)
    seed_everything(cfg.seed)
    data: TextData = instantiate(cfg.data, min_tokens=cfg.model.block_size + 1)  # one window + its target
    clock.mark("data")
    model = build_model(cfg, data, device, vocab_size, cfg.init_from is not None and ckpt is None, clock)
    lr_factor = build_schedule(cfg, ckpt)
    state = build_state(cfg, model, device, ckpt, run_dir)
    clock.mark("optimizer")
    forward, no_sync = wrap_model(model, cfg, world, device)
    clock.mark("wrap")
    job = Job(
        cfg=cfg,
        run_dir=run_dir,
        world=world,
        device=device,
        data=data,
        train_ids=on_device(data.train, device, "train"),
        val_ids=on_device(data.val, device, "val"),
        state=state,
        forward=forward,
        no_sync=no_sync,
        lr_factor=lr_factor,
        settings=StepSettings(**{f.name: cfg[f.name] for f in fields(StepSettings)}),
        config=resolved(cfg),
        skipped_logged=state.counters()["skipped_total"],
        flops_per_token=flops_per_token(model, cfg.model.block_size),
        peak_flops=gpu_peak(device, str(cfg.precision)) if device.type == "cuda" else None,
        val_bytes_per_token=bytes_per_token(data),
        startup=clock,
    )
    clock.mark("job")
    set_up_graphs(job)
    clock.mark("graphs")
    if world.is_main:
        start_run_dir(job)
    clock.mark("run dir")
    log_model(job)
    return job


def log_model(job: Job) -> None:
    """The start-up's "model:" line: its size, vocabulary, device, precision and run directory."""
    model = job.state.model
    log.info(
        "model: %.2fM parameters (%.2fM non-embedding), vocab %d, device %s, precision %s, run dir %s",
        model.num_params(non_embedding=False) / 1e6,
        model.num_params() / 1e6,
        job.data.tokenizer.vocab_size,
        job.device,
        job.cfg.precision,
        job.run_dir,
    )


def settle_precision(cfg: DictConfig, device: torch.device, ckpt: dict[str, Any] | None) -> None:
    """Replace ``precision=auto`` in ``cfg`` by the precision this run trains in (a resume: its
    checkpoint's), so that the run's record and checkpoints store it; say which, and why."""
    recorded = ckpt["config"].get("precision") if ckpt is not None else None
    if recorded is not None and recorded not in DTYPES:
        raise UserError(
            f"the checkpoint records precision={recorded!r}, not one of {', '.join(DTYPES)}: it is damaged; "
            "resume with precision=fp32 or bf16 as the run was trained, or start a new run"
        )
    precision, why = choose_precision(str(cfg.precision), device, recorded)
    cfg.precision = precision
    log.info("precision: %s (%s)", precision, why)


def build_model(
    cfg: DictConfig,
    data: TextData,
    device: torch.device,
    vocab_size: int | None,
    from_folder: bool,
    clock: StartupClock,
) -> torch.nn.Module:
    """The GPT on ``device``, its weights from ``cfg.init_from``'s folder when ``from_folder`` (not on a
    resume: its weights come from its checkpoint). The start-up's "model" phase ends before the move: a
    GPU's first use (CUDA's start) shows in "to device", with the weights' loading."""
    if from_folder:  # before the model is built: its config.json may claim a huge model
        check_weight_shapes(cfg.init_from, resolved(cfg)["model"], data.tokenizer)
    model = build_gpt(instantiate(cfg.model), data.tokenizer, vocab_size)
    clock.mark("model")
    model = model.to(device)
    model.grad_checkpointing = cfg.grad_checkpointing
    if from_folder:
        load_weights(model, cfg.init_from, resolved(cfg)["model"])
    clock.mark("to device")
    return model


def build_state(
    cfg: DictConfig, model: torch.nn.Module, device: torch.device, ckpt: dict[str, Any] | None, run_dir: Path
) -> TrainState:
    """The model with its optimizer, GradScaler and EMA: fresh, or as ``ckpt`` left them."""
    optimizer = build_optimizer(model, cfg.optim)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    ema = make_ema(model) if cfg.ema_decay is not None else None
    state = TrainState(model, optimizer, scaler, ema)
    if ckpt is not None:
        state.restore(ckpt, run_dir / "ckpt.pt")
        log.info("resumed %s at step %d", run_dir / "ckpt.pt", state.step)
    return state


def build_schedule(cfg: DictConfig, ckpt: dict[str, Any] | None = None) -> Callable[[int, int], float]:
    """The LR multiplier (step, max_steps) -> factor; a bad schedule value fails here, before any work.
    On a resume from ``ckpt``, a warning if the run's schedule is stretched (``schedule_stretch``)."""
    lr_factor = instantiate(cfg.schedule)
    lr_factor(0, cfg.max_steps)
    stretched = schedule_stretch(cfg, ckpt, lr_factor) if ckpt is not None else None
    if stretched:
        log.warning(stretched)
    warmup = cfg.schedule.get("warmup_steps", 0)
    if warmup >= cfg.max_steps:
        log.warning(
            "schedule.warmup_steps=%d >= max_steps=%d: the learning rate never reaches optim.lr and the run "
            "learns little; lower schedule.warmup_steps (e.g. %d)",
            warmup,
            cfg.max_steps,
            max(cfg.max_steps // 10, 1),
        )
    return lr_factor


def wrap_model(
    model: torch.nn.Module, cfg: DictConfig, world: World, device: torch.device
) -> tuple[torch.nn.Module, Callable[[], contextlib.AbstractContextManager]]:
    """The model as the step calls it (DDP and/or compiled), and DDP's no_sync (else a no-op).
    Checkpoints always save the plain ``model``: never the DDP or compiled wrapper."""
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
        forward = torch.compile(forward, mode=str(cfg.compile_mode))
    return forward, ddp.no_sync if ddp else contextlib.nullcontext


def set_up_graphs(job: Job) -> None:
    """CUDA graphs where the config asks for them: the update (compile_mode=reduce-overhead, where it
    can) or the whole step (cuda_graph=true, refused where it cannot)."""
    cfg, state = job.cfg, job.state
    if cfg.compile and str(cfg.compile_mode) == "reduce-overhead":
        job.update = graphed_update(state, job.world)
    if cfg.cuda_graph:
        why_not = can_graph_update(state, job.world.distributed)
        if why_not:
            raise UserError(f"cuda_graph=true: {why_not}; set cuda_graph=false")
        job.graphed_step = GraphedStep(state, job.forward, job.settings)


def graphed_update(state: TrainState, world: World) -> GraphedUpdate | None:
    """compile_mode=reduce-overhead: the update joins the forward and backward in CUDA graphs where it can."""
    why_not = can_graph_update(state, world.distributed)
    if why_not:
        log.info("compile_mode=reduce-overhead: the update stays out of CUDA graphs: %s", why_not)
        return None
    return GraphedUpdate(state)


def bytes_per_token(data: TextData) -> float | None:
    """Mean UTF-8 bytes per token of the val split; None (no val_bpb) if nothing can say: stored with
    prepared shards, else counted from the tokenizer's vocabulary."""
    if data.val_bytes is not None:
        return data.val_bytes / len(data.val)
    if not data.bytes_known:
        log.warning(
            "val_bpb is not logged: these shards do not say how many bytes of text they hold (no meta.json "
            "from python -m tinygpt.prepare beside them)"
        )
        return None
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
    remove_leftovers(run_dir)  # this run holds the directory's lock: no other writer is in it
    # records after the checkpoint (or all of them, on a fresh start) are redone
    truncate_records(run_dir, state.step)
    write_text(run_dir / "effective_config.json", json.dumps(job.config, indent=2) + "\n")
    job.data.tokenizer.save(run_dir / "tokenizer.json")
    job.logger = instantiate(job.cfg.logger)(run_dir=run_dir, config=job.config, run_id=state.logger_run_id)
    state.logger_run_id = job.logger.run_id
