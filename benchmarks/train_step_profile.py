"""Where a training step's time goes: torch.profiler over a few steps of the training path.

    python benchmarks/train_step_profile.py [training overrides]      # e.g. the GPT-2 shape on cuda
    OMP_NUM_THREADS=1 python benchmarks/train_step_profile.py device=cpu model.bias=false

Builds the job exactly as ``python -m tinygpt.bench`` does (on cuda with GPT-2's 50304 token ids),
warms up, profiles 5 steps and prints the operators that take the most device time (CPU: self time;
one thread keeps a shared machine's waits out of the operators' times).
"""

import sys
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir
from torch.profiler import ProfilerActivity, profile

from tinygpt.config.schema import conf_dir
from tinygpt.runtime.device import pick_device
from tinygpt.runtime.distributed import SINGLE_PROCESS
from tinygpt.training.job import build_job
from tinygpt.training.loop import job_mean, training_batch
from tinygpt.training.speed import synchronize
from tinygpt.training.step import train_step


def main(overrides: list[str]) -> None:
    with initialize_config_dir(version_base="1.3", config_dir=conf_dir()):
        cfg = compose("train", overrides=[*overrides, "sample_interval=0"])
    device = pick_device(cfg.device)
    cuda = device.type == "cuda"
    vocab_size = 50304 if cuda else None  # GPT-2's token ids on a GPU; the data's own on the CPU
    with tempfile.TemporaryDirectory() as run_dir:
        job = build_job(cfg, Path(run_dir), SINGLE_PROCESS, device, ckpt=None, vocab_size=vocab_size)
        job.logger.close()

        def step() -> None:
            x, y = training_batch(job, cfg.batch_size, cfg.model.block_size)
            train_step(job.state, job.forward, x, y, job.settings, job_mean(job), job.no_sync, job.update)
            job.state.step += 1

        for _ in range(5):
            step()
        synchronize(device)
        activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]
        with profile(activities=activities) as prof:
            for _ in range(5):
                step()
            synchronize(device)
    sort_by = "cuda_time_total" if cuda else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=sort_by, row_limit=18, max_name_column_width=60))


if __name__ == "__main__":
    main(sys.argv[1:])
