"""Candidate speed-ups of the CPU training step, timed against the step as it is, alternating.

    python benchmarks/train_step_variants.py --rounds 4 --steps 3 --threads 1 model.bias=false

Builds the training job once (as ``python -m tinygpt.bench`` does, device=cpu) and times ``--steps``
real training steps per variant, the variants taking turns for ``--rounds`` rounds so that the load
of a shared machine falls on all of them alike. Each variant changes one thing, for the time of its
turn only: torch's fused AdamW kernel instead of foreach; exact (erf) GELU instead of tanh; SDPA's
math backend instead of CPU flash attention. Prints, per variant, the best and median wall time and
the best CPU time per step (CPU time is what a busy machine disturbs least, with one thread).
"""

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from torch.nn.attention import SDPBackend, sdpa_kernel

from tinygpt.config.schema import conf_dir
from tinygpt.model import GeluMLP
from tinygpt.runtime.distributed import SINGLE_PROCESS
from tinygpt.training.job import Job, build_job
from tinygpt.training.loop import job_mean, training_batch
from tinygpt.training.optim import param_groups
from tinygpt.training.step import train_step


@contextlib.contextmanager
def fused_adamw(job: Job) -> Iterator[None]:
    """The same AdamW settings with torch's fused kernel (it also skips a bad step on its own)."""
    foreach, cfg = job.state.optimizer, job.cfg.optim
    groups = param_groups(job.state.model, cfg.weight_decay, cfg.decay_embeddings)
    fused = torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=True)
    job.state.optimizer = fused
    try:
        yield
    finally:
        job.state.optimizer = foreach


@contextlib.contextmanager
def exact_gelu(job: Job) -> Iterator[None]:
    tanh_forward = GeluMLP.forward
    GeluMLP.forward = lambda self, x: self.dropout(self.c_proj(F.gelu(self.c_fc(x))))
    try:
        yield
    finally:
        GeluMLP.forward = tanh_forward


VARIANTS: dict[str, Callable[[Job], contextlib.AbstractContextManager]] = {
    "as it is (foreach AdamW, tanh GELU, flash SDPA)": lambda job: contextlib.nullcontext(),
    "fused AdamW": fused_adamw,
    "exact GELU": exact_gelu,
    "SDPA math backend": lambda job: sdpa_kernel(SDPBackend.MATH),
}


def time_steps(job: Job, steps: int) -> tuple[float, float]:
    """(wall s, CPU s) per training step, over ``steps`` steps."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        x, y = training_batch(job, job.cfg.batch_size, job.cfg.model.block_size)
        train_step(job.state, job.forward, x, y, job.settings, job_mean(job), job.no_sync)
        job.state.step += 1
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="steps per variant per round")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args, overrides = parser.parse_known_args()
    torch.set_num_threads(args.threads)
    with initialize_config_dir(version_base="1.3", config_dir=conf_dir()):
        cfg = compose("train", overrides=["device=cpu", *overrides, "sample_interval=0"])
    with tempfile.TemporaryDirectory(prefix="tinygpt-variants-") as run_dir:
        job = build_job(cfg, Path(run_dir), SINGLE_PROCESS, torch.device("cpu"), ckpt=None)
        job.logger.close()
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
        for round_ in range(args.rounds + 1):  # round 0 warms every variant up
            for name, variant in VARIANTS.items():
                with variant(job):
                    figures = time_steps(job, args.steps)
                if round_:
                    times[name].append(figures)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.rounds} rounds of {args.steps} steps")
    print("| variant | best ms/step | median ms/step | best CPU ms/step | CPU time vs as it is |")
    print("|---|---:|---:|---:|---:|")
    base_cpu = min(cpu for _, cpu in times[next(iter(VARIANTS))])
    for name, runs in times.items():
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        print(
            f"| {name} | {1e3 * min(walls):.0f} | {1e3 * statistics.median(walls):.0f} "
            f"| {1e3 * min(cpus):.0f} | {min(cpus) / base_cpu - 1:+.1%} |"
        )


if __name__ == "__main__":
    main()
