"""``model.fp8_head`` on a Hopper GPU: is the FP8 head right there, and what does it save?

    python benchmarks/fp8_head_check.py                      # GPT-2's head: 8192 tokens, C=768, V=50304
    python benchmarks/fp8_head_check.py --tokens 16384 --compile

Only a CUDA GPU of compute capability 9.0+ has the FP8 kernels this times (anything else is refused in
one line); the CPU tests (tests/test_speedrun_head.py) check the same numbers on torch's CPU kernels.

1. Correctness: the head's logits and both gradients of ``fp8_linear`` against fp32 ``F.linear`` on the
   same random hidden states (N, C) and weight (V, C); relative errors within FP8's (e4m3 forward ~4%,
   e5m2 gradients ~6%) pass.
2. Speed: forward + cross-entropy + backward of the head under bf16 autocast, plain (bf16 matmuls)
   against FP8, eager and with ``--compile`` through torch.compile; median milliseconds of ``--steps``.
"""

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from tinygpt.errors import UserError
from tinygpt.model.fp8 import fp8_linear
from tinygpt.runtime.device import check_fp8_device


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def check_numbers(x: torch.Tensor, w: torch.Tensor) -> dict[str, float]:
    """The relative error of the FP8 logits and gradients against fp32's, on one random output gradient."""
    grad = torch.randn(x.size(0), w.size(0), device=x.device)
    fp8_out = fp8_linear(x, w)
    fp8_dx, fp8_dw = torch.autograd.grad(fp8_out, (x, w), grad)
    out = F.linear(x, w)
    dx, dw = torch.autograd.grad(out, (x, w), grad)
    return {
        "logits": relative_error(fp8_out, out),
        "grad x": relative_error(fp8_dx, dx),
        "grad w": relative_error(fp8_dw, dw),
    }


def head_step(head: Callable, x: torch.Tensor, w: torch.Tensor, targets: torch.Tensor) -> Callable[[], None]:
    """One forward + loss + backward of the head under bf16 autocast."""

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(head(x, w).float(), targets)
        loss.backward()

    return step


def median_ms(step: Callable[[], None], steps: int) -> float:
    for _ in range(3):  # warm-up (and compilation)
        step()
    times = []
    for _ in range(steps):
        torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--n-embd", type=int, default=768)
    parser.add_argument("--vocab", type=int, default=50304)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        check_fp8_device(True, device)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    torch.manual_seed(0)
    x = torch.randn(args.tokens, args.n_embd, device=device, requires_grad=True)
    w = (0.02 * torch.randn(args.vocab, args.n_embd, device=device)).requires_grad_()
    targets = torch.randint(0, args.vocab, (args.tokens,), device=device)
    for name, error in check_numbers(x, w).items():
        print(f"{name}: relative error {error:.4f} (FP8 against fp32)")
    heads = {"plain": F.linear, "fp8": fp8_linear}
    if args.compile:
        heads |= {f"{name}, compiled": torch.compile(head) for name, head in list(heads.items())}
    for name, head in heads.items():
        ms = median_ms(head_step(head, x, w, targets), args.steps)
        print(f"{name}: {ms:.2f} ms per forward + loss + backward of the head ({args.tokens} tokens)")


if __name__ == "__main__":
    main()
