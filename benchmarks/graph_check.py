"""Does the update replayed as a CUDA graph (training/graphs.py) train exactly as the eager one? And what
does the update cost each way? Needs a CUDA device:

    python benchmarks/graph_check.py [--steps 30] [training overrides, e.g. ema_decay=0.99]

Two copies of the default model get the same gradients (one backward, copied), learning rates (a new
one every step) and one non-finite loss; one applies them with ``apply_update``, the other with
``GraphedUpdate``. Prints PASS if their weights, EMA and skip counters agree, then the update's time
each way.
"""

import functools
import sys
import time

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from tinygpt.config.schema import conf_dir
from tinygpt.training.graphs import GraphedUpdate, can_graph_update
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


def update_ms(state: TrainState, update, settings: StepSettings, n: int = 50) -> float:
    """Mean ms of the update alone (gradients left from the last backward; the weights change, no matter)."""
    loss = torch.ones((), device="cuda")
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        update(state, loss, settings)
    torch.cuda.synchronize()
    return 1e3 * (time.perf_counter() - start) / n


def steps_and_overrides(argv: list[str]) -> tuple[int, list[str]]:
    """``[--steps N] [overrides]`` (N: 30 by default); shared with step_graph_check.py."""
    steps = int(argv[argv.index("--steps") + 1]) if "--steps" in argv else 30
    return steps, [a for i, a in enumerate(argv) if a != "--steps" and (i == 0 or argv[i - 1] != "--steps")]


def main(argv: list[str]) -> int:
    if not torch.cuda.is_available():
        print("SKIP: no CUDA device")
        return 1
    steps, overrides = steps_and_overrides(argv)
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
