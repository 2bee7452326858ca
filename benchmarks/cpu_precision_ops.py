"""Each operation of the default model's training step on this CPU, fp32 against bf16, forward + backward.

    python benchmarks/cpu_precision_ops.py [--rounds 3] [--threads N] [--batch 64] [--block 128]

The shapes are the default model's (4 layers, 4 heads, 128 wide, a 65-character vocabulary) at
``--batch`` x ``--block`` tokens. Per operation it times fp32 and bf16 inputs (and, for attention, each
kernel TinyGPT could use: SDPA's flash and math backends, and the explicit scores-softmax-values path of
``tinygpt/model/attention.py``), alternating the variants for ``--rounds`` rounds, and prints the best ms
per call and the step's share: the times are per call, the step makes ``per step`` of them. This is
the measurement behind ``precision=auto``'s choices on the CPU (benchmarks/RESULTS.md, "bf16 on the CPU").
"""

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from tinygpt.model.attention import explicit_attention

Op = Callable[[], None]


def fwd_bwd(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> Op:
    """A call of fn(*inputs) and the backward of its output (gradient of ones) to every input."""
    leaves = [x.detach().requires_grad_() for x in inputs]

    def run() -> None:
        out = fn(*leaves)
        out.backward(torch.ones_like(out))

    return run


def best_ms(op: Op, calls: int) -> float:
    op()  # warm-up
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        op()
        best = min(best, time.perf_counter() - start)
    return 1e3 * best


def sdpa(backend: SDPBackend) -> Callable[..., torch.Tensor]:
    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    return attend


def operations(B: int, T: int, dtype: torch.dtype) -> dict[str, tuple[int, Op]]:
    """name -> (calls per training step, the op at the default model's shapes in ``dtype``)."""
    C, H, V, L = 128, 4, 65, 4
    make = lambda *shape: torch.randn(*shape, dtype=dtype)  # noqa: E731
    ops: dict[str, tuple[int, Op]] = {}
    for name, (n_in, n_out) in {
        "linear: qkv": (C, 3 * C),
        "linear: attention out": (C, C),
        "linear: MLP up": (C, 4 * C),
        "linear: MLP down": (4 * C, C),
        "linear: LM head": (C, V),
    }.items():
        calls = 1 if name.endswith("head") else L
        ops[name] = (calls, fwd_bwd(F.linear, make(B * T, n_in), make(n_out, n_in) * 0.02))
    q, k, v = (make(B, H, T, C // H) for _ in range(3))
    ops["attention: SDPA flash"] = (L, fwd_bwd(sdpa(SDPBackend.FLASH_ATTENTION), q, k, v))
    ops["attention: SDPA math"] = (L, fwd_bwd(sdpa(SDPBackend.MATH), q, k, v))
    explicit = lambda q, k, v: explicit_attention(q, k, v, None, True, 0.0)  # noqa: E731
    ops["attention: explicit (tinygpt)"] = (L, fwd_bwd(explicit, q, k, v))
    hidden = make(B, T, 4 * C)
    ops["GELU, tanh form (GPT-2's)"] = (L, fwd_bwd(lambda x: F.gelu(x, approximate="tanh"), hidden))
    ops["GELU, erf form"] = (L, fwd_bwd(F.gelu, hidden))
    norm = torch.nn.LayerNorm(C).to(dtype)
    ops["LayerNorm"] = (2 * L + 1, fwd_bwd(norm, make(B, T, C)))
    targets = torch.randint(0, V, (B * T,))
    ops["cross-entropy (upcast to fp32)"] = (
        1,
        fwd_bwd(lambda z: F.cross_entropy(z.float(), targets), make(B * T, V)),
    )
    x32 = torch.randn(B, T, 4 * C)
    ops["cast fp32 -> this dtype, (B, T, 4C)"] = (L, lambda: x32.to(dtype))
    return ops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=5, help="timed calls per op per round (the best counts)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--block", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    ops = {name: operations(args.batch, args.block, dtype) for name, dtype in dtypes.items()}
    best: dict[tuple[str, str], float] = {}
    for _ in range(args.rounds):  # variants alternate, so a busy moment falls on all of them alike
        for op in ops["fp32"]:
            for dtype in dtypes:
                ms = best_ms(ops[dtype][op][1], args.calls)
                best[op, dtype] = min(best.get((op, dtype), float("inf")), ms)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch} x block {args.block}")
    print("| operation (forward + backward) | per step | fp32 ms | bf16 ms | bf16 / fp32 |")
    print("|---|---:|---:|---:|---:|")
    for op, (calls, _) in ops["fp32"].items():
        fp32, bf16 = best[op, "fp32"], best[op, "bf16"]
        print(f"| {op} | {calls} | {fp32:.2f} | {bf16:.2f} | {bf16 / fp32:.2f} |")


if __name__ == "__main__":
    main()
