"""The LM head's matmul in FP8 (``model.fp8_head``), as modded-nanogpt's speedrun records run theirs.

Forward: the hidden states and the weight are cast to e4m3 (3 mantissa bits, range +-448) and multiplied
by ``torch._scaled_mm``, which accumulates in higher precision and multiplies the scales back in. The
backward is ours (a ``torch.autograd.Function``): the logits' gradient is cast to e5m2 (2 mantissa bits,
range +-57344: gradients need range more than precision) and both gradient matmuls run in FP8 too,
against the e4m3 copies saved by the forward (a quarter of the fp32 memory).

Scaling is per tensor and dynamic: each tensor is divided by amax / (the format's largest value), so its
largest entry lands on that value; modded-nanogpt uses fixed scales instead, tuned for its one model,
which a model of any size here cannot share. The amax stays on the device (no host sync).

Hopper GPUs (compute capability 9.0+) have the FP8 tensor cores; ``check_fp8_device``
(``runtime.device``) refuses other devices at start-up. The weights stay ordinary tensors, so
evaluation and generation (the model in eval mode) use the plain head anywhere. ``torch._scaled_mm``
on CUDA wants the inner and output sizes to be multiples of 16; the operands are zero-padded up to
that, which leaves every product unchanged, and the results cut back.
"""

import torch
import torch.nn.functional as F

E4M3 = torch.float8_e4m3fn  # activations and weights
E5M2 = torch.float8_e5m2  # gradients
ALIGN = 16  # torch._scaled_mm on CUDA: sizes a multiple of this


def to_fp8(t: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """t (any shape) as fp8 ``dtype``, scaled so that its largest magnitude is the format's largest
    value, and the () fp32 scale that undoes it: t ~= t8.float() * scale."""
    top = torch.finfo(dtype).max
    scale = t.detach().abs().amax().float().clamp(min=1e-12) / top  # an all-zero t: any scale works
    return (t.float() / scale).clamp(-top, top).to(dtype).contiguous(), scale  # row-major for _scaled_mm


def padded(t: torch.Tensor) -> torch.Tensor:
    """A 2-D t with zero rows and columns appended so that both sizes are multiples of ``ALIGN``."""
    rows, cols = -t.size(0) % ALIGN, -t.size(1) % ALIGN
    return F.pad(t, (0, cols, 0, rows)) if rows or cols else t


def column_major(t: torch.Tensor) -> torch.Tensor:
    """The same matrix laid out column by column, as ``torch._scaled_mm`` wants its second operand."""
    return t.t().contiguous().t()


def logits_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the plain head would give: autocast's inside an autocast region, else x's."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


class FP8Linear(torch.autograd.Function):
    """x (N, C) @ w (V, C).T -> (N, V), every matmul of forward and backward in FP8."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
        x8, x_scale = to_fp8(padded(x), E4M3)  # (N', C')
        w8, w_scale = to_fp8(padded(w), E4M3)  # (V', C')
        out = torch._scaled_mm(x8, w8.t(), scale_a=x_scale, scale_b=w_scale, out_dtype=out_dtype)
        ctx.save_for_backward(x8, x_scale, w8, w_scale)
        ctx.shapes, ctx.dtypes = (x.shape, w.shape), (x.dtype, w.dtype)
        return out[: x.size(0), : w.size(0)]  # (N, V)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        x8, x_scale, w8, w_scale = ctx.saved_tensors
        (n, c), (v, _) = ctx.shapes
        g8, g_scale = to_fp8(padded(grad), E5M2)  # (N', V')
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:  # (N', V') @ (V', C') -> (N, C)
            grad_x = torch._scaled_mm(
                g8, column_major(w8), scale_a=g_scale, scale_b=w_scale, out_dtype=ctx.dtypes[0]
            )[:n, :c]
        if ctx.needs_input_grad[1]:  # (V', N') @ (N', C') -> (V, C)
            grad_w = torch._scaled_mm(
                g8.t().contiguous(),
                column_major(x8),
                scale_a=g_scale,
                scale_b=x_scale,
                out_dtype=ctx.dtypes[1],
            )[:v, :c]
        return grad_x, grad_w, None


def fp8_linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.linear(x, weight)`` (no bias) in FP8: x (..., C), weight (V, C) -> (..., V)."""
    out = FP8Linear.apply(x.flatten(0, -2), weight, logits_dtype(x))  # (N, V)
    return out.view(*x.shape[:-1], weight.size(0))
