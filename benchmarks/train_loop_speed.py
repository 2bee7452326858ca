"""Training throughput of the whole loop (evaluation, logging and all) as `python -m tinygpt.train` runs it.

    python benchmarks/train_loop_speed.py                  # CPU: default model, fp32/bf16 x eager/compile
    python benchmarks/train_loop_speed.py --device cuda --model both --steps 300

Each variant trains ``--steps`` steps of ``tinygpt.training.loop.train`` in a temp dir; the first log
interval (compile and warm-up) is dropped. Prints one Markdown row per variant: the median tokens/s of
the other logged intervals (from metrics.jsonl) and the wall time of the whole run. The bare step, without
the loop around it, is ``python -m tinygpt.bench``.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from tinygpt.config.schema import conf_dir
from tinygpt.training.loop import train

MODELS = {
    "default": [],  # 4L-4H-128E, block 128, batch 64
    "6L-384E": ["model.n_layer=6", "model.n_head=6", "model.n_embd=384", "model.block_size=256"],
}


def measure(overrides: list[str], steps: int) -> tuple[float, float]:
    interval = max(1, steps // 5)
    with initialize_config_dir(version_base="1.3", config_dir=conf_dir()):
        cfg = compose(
            "train",
            overrides=[
                *overrides,
                f"max_steps={steps}",
                f"log_interval={interval}",
                f"eval_interval={steps}",
                "eval_iters=1",
                "sample_interval=0",
            ],
        )
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        train(cfg, run_dir)
        wall = time.perf_counter() - start
        records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["tokens_per_s"] for r in records if "tokens_per_s" in r][1:]
    return statistics.median(speeds), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", choices=[*MODELS, "both"], default="default")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--compile", default="false,true")
    args = parser.parse_args()
    models = list(MODELS) if args.model == "both" else [args.model]
    name = (
        torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    )
    print(f"device: {name}; torch {torch.__version__}; {args.steps} steps per row", file=sys.stderr)
    print("| model | precision | compile | tokens/s | wall s |")
    print("|---|---|---|---:|---:|")
    for model in models:
        for precision in args.precisions.split(","):
            for compiled in args.compile.split(","):
                overrides = [
                    *MODELS[model],
                    f"device={args.device}",
                    f"precision={precision}",
                    f"compile={compiled}",
                ]
                tok_s, wall = measure(overrides, args.steps)
                print(f"| {model} | {precision} | {compiled} | {tok_s:,.0f} | {wall:.1f} |", flush=True)


if __name__ == "__main__":
    main()
