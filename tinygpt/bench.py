"""Training speed on the training code path: ``python -m tinygpt.bench [options] [training overrides]``.

    python -m tinygpt.bench                                   # the default model on this machine
    python -m tinygpt.bench --steps 50 model=llama precision=bf16 device=cuda --json out.json

The measurement itself is tinygpt/training/speed.py; any training override works, e.g. model=llama.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tinygpt.errors import UserError, exit_on_user_error
from tinygpt.training.flops import peak_flops
from tinygpt.training.speed import HEADER, measure, report


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m tinygpt.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first, compilation included")
    parser.add_argument("--json", type=Path, help="also write the result to this file")
    parser.add_argument("--peak-tflops", type=float, help="the device's peak, instead of the table/probe")
    parser.add_argument(
        "--vocab-size", type=int, help="build the model with this many token ids (e.g. GPT-2's 50304)"
    )
    parser.add_argument(
        "--eager-update",
        action="store_true",
        help="with compile_mode=reduce-overhead, keep the update out of CUDA graphs (to compare)",
    )
    args, overrides = parser.parse_known_args(argv)
    if args.steps < 1 or args.warmup < 0:
        raise UserError("--steps must be >= 1 and --warmup >= 0")
    unknown = [o for o in overrides if o.startswith("-")]
    if unknown:
        raise UserError(f"unknown option {unknown[0]}; training settings go as key=value overrides")
    return args, overrides


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict[str, Any]:
    args, overrides = parse_args(argv)
    raw = measure(overrides, args.steps, args.warmup, args.vocab_size, args.eager_update)
    peak, source = (
        (args.peak_tflops * 1e12, "--peak-tflops")
        if args.peak_tflops
        else peak_flops(raw["device"], str(raw["cfg"].precision))
    )
    result = report(raw, peak, source)
    mfu = f"{100 * result['mfu']:.1f}%" if result["mfu"] is not None else "n/a"
    print(HEADER)
    print("|---|---|---:|---|---|---:|---:|---:|---:|---:|")
    print(
        f"| {result['device']} | {result['model']} | {result['batch_size']} | {result['precision']} | "
        f"{result['compile']} | {result['ms_per_step']:.2f} | {result['tokens_per_s']:,.0f} | {mfu} | "
        f"{result['peak_memory_bytes'] / 2**20:,.0f} MiB | {result['warmup_s']:.1f} |"
    )
    print(f"peak: {source}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
