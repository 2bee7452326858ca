"""How much arithmetic a training step is, and how much the device could do: for tokens/s -> MFU.

FLOPs are counted from the model as built, the way nanoGPT and the PaLM paper count them, so MFU
figures compare: every weight of a ``Linear`` (the tied or untied lm_head included, embedding lookups
not) costs 6 FLOPs per token for forward and backward, and attention's two matmuls cost
12 * n_layer * n_embd * context per token (full context, not halved for the causal mask; a sliding
window shortens the context).
"""

import time

import torch
from torch import nn

from tinygpt.runtime.device import DTYPES

# Dense peak FLOP/s of common GPUs by precision (the vendors' figures, without sparsity). fp32 is the
# plain (non-tensor-core) rate: torch does not use TF32 for matmuls unless told to.
GPU_PEAKS: dict[str, dict[str, float]] = {
    "H200": {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12},
    "H100": {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12},
    "A100": {"bf16": 312e12, "fp16": 312e12, "fp32": 19.5e12},
    "L40S": {"bf16": 362e12, "fp16": 362e12, "fp32": 91.6e12},
    "L4": {"bf16": 121e12, "fp16": 121e12, "fp32": 30.3e12},
    "A10": {"bf16": 125e12, "fp16": 125e12, "fp32": 31.2e12},
    "RTX 4090": {"bf16": 165e12, "fp16": 165e12, "fp32": 82.6e12},
    "RTX 3090": {"bf16": 71e12, "fp16": 71e12, "fp32": 35.6e12},
}


def flops_per_token(model: nn.Module, context: int) -> float:
    """Training FLOPs (forward + backward) per token at ``context`` tokens of context."""
    matmul_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    n_layer, n_embd = model.n_layer, model.transformer.wte.weight.shape[1]
    # each layer's window (window_pattern: short or long; None = full causal)
    windows = getattr(model, "layer_windows", None) or [getattr(model, "sliding_window", None)] * n_layer
    attended = sum(min(window or context, context) for window in windows)  # keys per query, all layers
    return 6 * matmul_weights + 12 * n_embd * attended


def gpu_peak(device: torch.device, precision: str) -> float | None:
    """The table's peak for this GPU and precision, or None for a GPU not in it."""
    name = torch.cuda.get_device_name(device)
    for key, peaks in GPU_PEAKS.items():
        if key in name:
            return peaks[precision]
    return None


def cpu_peak(seconds: float = 0.5, size: int = 2048, dtype: torch.dtype = torch.float32) -> float:
    """This CPU's matmul rate in ``dtype``, measured: the best of repeated ``size`` x ``size`` matmuls."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up: thread pool, caches
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def peak_flops(device: torch.device, precision: str) -> tuple[float | None, str]:
    """The device's peak FLOP/s for the precision, and where the figure comes from."""
    if device.type == "cuda":
        peak = gpu_peak(device, precision)
        return (
            peak,
            f"{torch.cuda.get_device_name(device)} {precision} from the table in tinygpt/training/flops.py",
        )
    if device.type == "cpu":  # autocast's products run in its dtype: measure that one
        name = precision if precision in DTYPES else "fp32"
        peak = cpu_peak(dtype=DTYPES[name])
        return peak, f"measured: {name} 2048x2048 matmul, {torch.get_num_threads()} threads"
    return None, f"no peak known for {device.type}"
