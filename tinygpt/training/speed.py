"""Measuring training speed on the training code path (``python -m tinygpt.bench``): the training
config composed exactly as ``python -m tinygpt.train`` composes it (bench's config holds it), the same
job built in a temporary run directory, warm-up steps (compilation included, and timed), then timed
steps of the real ``train_step`` on the real batches with the device synchronized at both ends: ms/step,
tokens/s, FLOPs per step (tinygpt/training/flops.py), MFU against the device's peak, peak memory and
compile time.
"""

import logging
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from tinygpt.config.schema import check_train_config
from tinygpt.runtime.device import pick_device
from tinygpt.runtime.distributed import SINGLE_PROCESS
from tinygpt.training.flops import flops_per_token
from tinygpt.training.job import build_job
from tinygpt.training.loop import take_step, training_batch

log = logging.getLogger("tinygpt")

HEADER = (
    "| device | model | batch | precision | compile | ms/step | tokens/s | MFU | peak memory | warm-up s |"
)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type}, {torch.get_num_threads()} threads"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    cfg: DictConfig,
    steps: int,
    warmup: int,
    vocab_size: int | None = None,
    eager_update: bool = False,
) -> dict[str, Any]:
    """Build the training job for the training config ``cfg`` and time its steps (no text samples);
    returns the raw figures."""
    cfg = cfg.copy()
    cfg.sample_interval = 0
    check_train_config(cfg)
    device = pick_device(cfg.device)
    log.info("bench: building the model and its data on %s", device)
    with tempfile.TemporaryDirectory(prefix="tinygpt-bench-") as run_dir:
        job = build_job(cfg, Path(run_dir), SINGLE_PROCESS, device, ckpt=None, vocab_size=vocab_size)
        job.logger.close()
        if eager_update:
            job.update = None
        state, block_size = job.state, cfg.model.block_size
        state.model.train()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

        def step() -> None:
            x, y = training_batch(job, cfg.batch_size, block_size)
            take_step(job, x, y)
            state.step += 1

        log.info("bench: warm-up, %d step(s)%s", warmup, " (compiling: minutes the first time)" * cfg.compile)
        start = time.perf_counter()
        for _ in range(warmup):
            step()
        synchronize(device)
        warmup_s = time.perf_counter() - start
        log.info("bench: timing %d step(s)", steps)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        seconds = time.perf_counter() - start
    return dict(
        cfg=cfg,
        device=device,
        seconds_per_step=seconds / steps,
        warmup_s=warmup_s,
        tokens_per_step=cfg.batch_size * block_size,
        flops_per_token=flops_per_token(state.model, block_size),
        params=state.model.num_params(non_embedding=False),
        graphed_update=job.update is not None,
        graphed_step=job.graphed_step is not None and job.graphed_step.graph is not None,
    )


def report(raw: dict[str, Any], peak: float | None, peak_source: str) -> dict[str, Any]:
    """The figures a user reads: per step, per second, against the peak, and memory."""
    cfg, device, step_s = raw["cfg"], raw["device"], raw["seconds_per_step"]
    m = cfg.model
    flops_per_step = raw["flops_per_token"] * raw["tokens_per_step"]
    if device.type == "cuda":
        peak_memory, memory_kind = torch.cuda.max_memory_allocated(device), "GPU, max allocated"
    else:
        peak_memory, memory_kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process RSS"
    return {
        "device": device_name(device),
        "torch": torch.__version__,
        "model": f"{m.n_layer}L-{m.n_head}H-{m.n_embd}E, block {m.block_size}",
        "params": raw["params"],
        "batch_size": cfg.batch_size,
        "precision": str(cfg.precision),
        "compile": bool(cfg.compile),
        "ms_per_step": 1e3 * step_s,
        "tokens_per_s": raw["tokens_per_step"] / step_s,
        "flops_per_step": flops_per_step,
        "peak_flops": peak,
        "peak_source": peak_source,
        "mfu": flops_per_step / step_s / peak if peak else None,
        "peak_memory_bytes": peak_memory,
        "peak_memory_kind": memory_kind,
        "warmup_s": raw["warmup_s"],
        "graphed_update": raw[
            "graphed_update"
        ],  # the update replayed as a CUDA graph (tinygpt/training/graphs.py)
        "graphed_step": raw["graphed_step"],  # cuda_graph=true: the whole step replayed as one CUDA graph
    }
