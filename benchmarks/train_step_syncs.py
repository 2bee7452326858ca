"""Does ``tinygpt.training.step.train_step`` run without a host sync on a GPU? And what does one step cost?

    python benchmarks/train_step_syncs.py            # needs CUDA

For each optimizer and precision it builds a TrainState of the default model on the GPU, warms up,
then runs steps (one with a NaN loss) under ``torch.cuda.set_sync_debug_mode("error")``: any
synchronizing call inside the step raises. It prints a row per case with the mean step time.
"""

import sys

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from tinygpt.config.schema import conf_dir
from tinygpt.training.optim import build_optimizer
from tinygpt.training.state import TrainState, make_ema
from tinygpt.training.step import StepSettings, train_step

OPTIMS = ["adamw", "lion", "muon", "sgd"]
PRECISIONS = ["fp32", "bf16", "fp16"]


def state_for(optim: str, precision: str, ema: bool) -> TrainState:
    with initialize_config_dir(version_base="1.3", config_dir=conf_dir()):
        cfg = compose("train", overrides=[f"optim={optim}"])
    model = instantiate(cfg.model)(vocab_size=96).cuda()
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    return TrainState(model, build_optimizer(model, cfg.optim), scaler, make_ema(model) if ema else None)


def run(optim: str, precision: str, ema: bool) -> str:
    state = state_for(optim, precision, ema)
    x = torch.randint(0, 96, (64, 128), device="cuda")
    settings = StepSettings(precision=precision, ema_decay=0.99 if ema else None)
    poisoned = lambda ids, **loss: state.model(ids, **loss) * float("nan")  # noqa: E731
    for _ in range(3):
        train_step(state, state.model, x, x, settings)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    status = "no sync"
    torch.cuda.set_sync_debug_mode("error")
    try:
        start.record()
        for i in range(20):
            train_step(state, poisoned if i == 10 else state.model, x, x, settings)
        end.record()
    except RuntimeError as exc:
        status = "SYNC: " + str(exc).splitlines()[0][:80]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    ms = start.elapsed_time(end) / 20 if status == "no sync" else float("nan")
    skipped = int(state.skipped_total.item())
    return f"| {optim} | {precision} | {'yes' if ema else 'no'} | {status} | {skipped} | {ms:.2f} |"


def main() -> None:
    if not torch.cuda.is_available():
        sys.exit("train_step_syncs.py needs a CUDA GPU")
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}; default model, batch 64 x 128")
    print("| optim | precision | EMA | sync check | skipped of 20 | ms/step |")
    print("|---|---|---|---|---:|---:|")
    for optim in OPTIMS:
        for precision in PRECISIONS:
            print(run(optim, precision, ema=False), flush=True)
    print(run("adamw", "bf16", ema=True), flush=True)


if __name__ == "__main__":
    main()
