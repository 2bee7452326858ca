"""Does ``cuda_graph=true`` (the whole step replayed as one CUDA graph, training/graphs.py ``GraphedStep``)
train as the eager step does, and what does each way cost? Needs a CUDA device:

    python benchmarks/step_graph_check.py [--steps 30] [training overrides, e.g. precision=bf16 compile=true]

Builds the training job twice from the same config and seed (``cuda_graph=false``, then ``true``), runs
``--steps`` steps of each on the same batches and learning rates (warm-up, a schedule, a block-size
curriculum if asked for), and prints PASS if their losses and final weights agree within float
tolerance (attention backward kernels add in a varying order), then ms per step each way and the time
to draw a batch from the memmap and from the copy of the split in GPU memory.
"""

import sys
import tempfile
import time
from pathlib import Path

import torch
from graph_check import steps_and_overrides  # this script's folder is on the path when it runs
from hydra import compose, initialize_config_dir

from tinygpt.config.schema import check_train_config, conf_dir
from tinygpt.data import get_batch
from tinygpt.runtime.distributed import SINGLE_PROCESS
from tinygpt.training.job import Job, build_job
from tinygpt.training.loop import take_step, training_batch
from tinygpt.training.optim import set_lr


def build(overrides: list[str], run_dir: str) -> Job:
    with initialize_config_dir(version_base="1.3", config_dir=conf_dir()):
        cfg = compose("train", overrides=["device=cuda", "sample_interval=0", *overrides])
    check_train_config(cfg)
    job = build_job(cfg, Path(run_dir), SINGLE_PROCESS, torch.device("cuda"), ckpt=None)
    job.logger.close()
    job.state.model.train()
    return job


def run(job: Job, steps: int) -> list[torch.Tensor]:
    cfg, state, losses = job.cfg, job.state, []
    for _ in range(steps):
        set_lr(state.optimizer, cfg.optim.lr * job.lr_factor(state.step, cfg.max_steps))
        x, y = training_batch(job, cfg.model.block_size)
        losses.append(take_step(job, x, y).loss)
        state.step += 1
    return losses


def ms_per_call(fn, n: int) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return 1e3 * (time.perf_counter() - start) / n


def main(argv: list[str]) -> int:
    if not torch.cuda.is_available():
        print("SKIP: no CUDA device")
        return 1
    steps, overrides = steps_and_overrides(argv)
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        eager = build([*overrides, "cuda_graph=false"], a)
        graphed = build([*overrides, "cuda_graph=true"], b)
        expected = torch.stack(run(eager, steps)).float()
        got = torch.stack(run(graphed, steps)).float()
        recorded = graphed.graphed_step.graph is not None
        loss_diff = (expected - got).abs().max().item()
        weight_diff = max(
            (p.float() - q.float()).abs().max().item()
            for p, q in zip(eager.state.model.parameters(), graphed.state.model.parameters(), strict=True)
        )
        tolerance = 1e-3 if eager.cfg.precision == "fp32" else 3e-2
        ok = recorded and loss_diff <= tolerance and weight_diff <= tolerance
        print(
            f"{'PASS' if ok else 'FAIL'}: {steps} steps, graph recorded: {recorded}, max |loss difference| "
            f"{loss_diff:.2e}, max |weight difference| {weight_diff:.2e} (tolerance {tolerance:g}); "
            f"losses {expected[0]:.4f} -> {expected[-1]:.4f}"
        )
        n = 200
        eager_ms, graphed_ms = ms_per_call(lambda: run(eager, 1), n), ms_per_call(lambda: run(graphed, 1), n)
        print(
            f"ms/step over {n} steps (batch drawn each step): eager {eager_ms:.3f}, "
            f"one CUDA graph {graphed_ms:.3f}"
        )
        cfg = eager.cfg
        for name, ids in (("memmap", eager.data.train), ("GPU copy", eager.train_ids)):
            ms = ms_per_call(
                lambda ids=ids: get_batch(
                    ids, cfg.batch_size, cfg.model.block_size, (0, 0), 1, device="cuda"
                ),
                n,
            )
            print(f"drawing one batch from the {name}: {ms:.3f} ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
