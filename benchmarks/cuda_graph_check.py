"""Do the CUDA-graph replays of the training step train exactly as the eager step, and what does each cost?

    python benchmarks/cuda_graph_check.py step [--steps 30] [training overrides, e.g. precision=fp32]
    python benchmarks/cuda_graph_check.py update [--steps 30] [training overrides, e.g. ema_decay=0.99]

Needs a CUDA device (without one it prints ``SKIP: no CUDA device`` and exits 1).

``step``: the whole step as one graph (``cuda_graph=true``, training/graphs.py ``GraphedStep``). Builds
the training job twice from the same config and seed (``cuda_graph=false``, then ``true``), runs
``--steps`` steps of each on the same batches and learning rates (warm-up, a schedule, a block-size
curriculum if asked for) and prints PASS if their losses and final weights agree within float tolerance
(attention backward kernels add in a varying order); then ms per step each way, and the time to draw a
batch from the memmap and from the copy of the split in GPU memory.

``update``: the update alone as a graph (``compile_mode=reduce-overhead``, ``GraphedUpdate``). Two copies
of the default model get the same gradients (one backward, copied), learning rates (a new one every
step) and one non-finite loss; one applies them with ``apply_update``, the other with the graph. Prints
PASS if their weights, EMA and skip counters agree exactly, then the update's time each way.

Exit status 0 on PASS, 1 otherwise.
"""

import argparse
import functools
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from tinygpt.config.schema import check_train_config, conf_dir
from tinygpt.data import get_batch
from tinygpt.runtime.distributed import SINGLE_PROCESS
from tinygpt.training.graphs import GraphedUpdate, can_graph_update
from tinygpt.training.job import Job, build_job
from tinygpt.training.loop import take_step, training_batch
from tinygpt.training.optim import build_optimizer, set_lr
from tinygpt.training.state import TrainState, make_ema
from tinygpt.training.step import StepSettings, apply_update


def new_state(cfg, vocab_size: int = 65) -> TrainState:
    torch.manual_seed(0)
    model = instantiate(cfg.model)(vocab_size=vocab_size).cuda()
    ema = make_ema(model) if cfg.ema_decay is not None else None
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    return TrainState(model, build_optimizer(model, cfg.optim), scaler, ema)


def max_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters(), strict=True))


def ms_per_call(fn, n: int) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return 1e3 * (time.perf_counter() - start) / n


def update_ms(state: TrainState, update, settings: StepSettings, n: int = 50) -> float:
    """Mean ms of the update alone (gradients left from the last backward; the weights change, no matter)."""
    loss = torch.ones((), device="cuda")
    return ms_per_call(lambda: update(state, loss, settings), n)


def check_update(steps: int, overrides: list[str]) -> int:
    """The update graph of compile_mode=reduce-overhead against ``apply_update``: 0 if they agree."""
    with initialize_config_dir(version_base="1.3", config_dir=conf_dir()):
        cfg = compose("train", overrides=["device=cuda", "precision=bf16", *overrides])
    settings = StepSettings(**{k: cfg[k] for k in StepSettings.__dataclass_fields__})
    eager, graphed = new_state(cfg), new_state(cfg)
    why_not = can_graph_update(graphed, distributed=False)
    if why_not:
        print(f"SKIP: {why_not}")
        return 1
    graph = GraphedUpdate(graphed)
    eager_update = functools.partial(apply_update, keep_grads=True)
    for p in eager.model.parameters():
        p.grad = torch.zeros_like(p)
    g = torch.Generator(device="cuda").manual_seed(0)
    for i in range(steps):
        x = torch.randint(0, 65, (cfg.batch_size, cfg.model.block_size + 1), device="cuda", generator=g)
        eager.model(x[:, :-1], targets=x[:, 1:]).backward()
        for p, q in zip(eager.model.parameters(), graphed.model.parameters(), strict=True):
            q.grad.copy_(p.grad)  # the same gradients: only the updates are compared
        loss = torch.tensor(float("nan") if i == steps // 2 else 1.0, device="cuda")  # one skipped step
        for state, update in ((eager, eager_update), (graphed, graph)):
            set_lr(state.optimizer, cfg.optim.lr * (1 + i) / steps)  # a new rate every step
            update(state, loss, settings)
    worst = max_difference(eager.model, graphed.model)
    if eager.ema is not None:
        worst = max(worst, max_difference(eager.ema.module, graphed.ema.module))
    same_counters = eager.counters() == graphed.counters()
    ok = worst <= 1e-5 and same_counters and graph.graph is not None
    print(
        f"{'PASS' if ok else 'FAIL'}: {steps} steps, max |weight difference| {worst:.2e}, "
        f"counters {graphed.counters()} vs {eager.counters()}"
    )
    print(
        f"update alone: eager {update_ms(eager, eager_update, settings):.3f} ms, "
        f"graph replay {update_ms(graphed, graph, settings):.3f} ms"
    )
    return 0 if ok else 1


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
        x, y = training_batch(job, cfg.batch_size, cfg.model.block_size)
        losses.append(take_step(job, x, y).loss)
        state.step += 1
    return losses


def check_step(steps: int, overrides: list[str]) -> int:
    """cuda_graph=true against cuda_graph=false on the same batches: 0 if they agree."""
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


CHECKS = {"step": check_step, "update": check_update}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("check", choices=CHECKS)
    parser.add_argument("--steps", type=int, default=30)
    args, overrides = parser.parse_known_args(argv)
    if not torch.cuda.is_available():
        print("SKIP: no CUDA device")
        return 1
    return CHECKS[args.check](args.steps, overrides)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
