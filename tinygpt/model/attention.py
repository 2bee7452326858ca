"""Attention's kernel: softmax(q k^T / sqrt(hd) + mask) v, computed the way the device does fastest.

On GPUs, and in fp32 anywhere, this is torch's scaled-dot-product attention (its flash and
memory-efficient kernels). On a CPU in bf16 or fp16 it is not: there torch's CPU flash kernel runs its
backward several times slower than in fp32, while bf16 matrix products run about 3x faster than fp32
ones (benchmarks/RESULTS.md, "bf16 on the CPU"). So for contexts up to ``EXPLICIT_MAX_KEYS`` keys,
low-precision attention on a CPU is computed explicitly: the scores as one batched matrix product with
the mask added, a softmax, and a second batched product with the values. It is the same function (tested
against SDPA in fp32); the scores and probabilities are rounded to the low precision, as flash kernels
round the probabilities before their product with the values.
"""

import math

import torch
import torch.nn.functional as F

# Longest context the explicit path takes: past it the (T, Tk) scores cost more memory traffic than
# torch's blocked kernel loses (benchmarks/cpu_precision_ops.py --block N on a 2-core AMD EPYC with
# avx512_bf16, 4 heads of 32: bf16 explicit against the best SDPA 2.8x faster at 128 keys, 1.4x at 512,
# 2.4x slower at 1,024).
EXPLICIT_MAX_KEYS = 512
LOW_PRECISION = (torch.bfloat16, torch.float16)


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    causal: bool,
    dropout_p: float,
) -> torch.Tensor:
    """q (B, nh, T, hd), k and v (B, nkv, Tk, hd) with nh a multiple of nkv (grouped-query heads) ->
    (B, nh, T, hd). ``mask``: which keys each query sees, bool, broadcastable to (B, nh, T, Tk), or None;
    ``causal``: the usual causal mask instead (without ``mask``)."""
    dtype = compute_dtype(q)
    if q.device.type == "cpu" and dtype in LOW_PRECISION and k.size(-2) <= EXPLICIT_MAX_KEYS:
        with torch.autocast("cpu", enabled=False):  # the dtypes are chosen here, not by autocast
            return explicit_attention(q.to(dtype), k.to(dtype), v.to(dtype), mask, causal, dropout_p)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal, enable_gqa=k.size(1) != q.size(1)
    )


def compute_dtype(q: torch.Tensor) -> torch.dtype:
    """The dtype attention computes in: autocast's on q's device when autocast is on there, else q's."""
    device = q.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else q.dtype


def explicit_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    causal: bool,
    dropout_p: float,
) -> torch.Tensor:
    """``attend``'s function as three plain operations: scores (with the mask as -inf added), softmax,
    product with the values. Shapes as in ``attend``; every query must see at least one key."""
    B, nh, T, hd = q.shape
    Tk = k.size(-2)
    if k.size(1) != nh:  # grouped-query: each k, v head serves nh // nkv query heads
        k, v = (t.repeat_interleave(nh // t.size(1), dim=1) for t in (k, v))  # (B, nh, Tk, hd)
    if causal:  # top-left aligned, as SDPA's is_causal
        mask = torch.ones(T, Tk, dtype=torch.bool, device=q.device).tril()
    bias = torch.zeros((T, Tk) if mask is None else mask.shape, dtype=q.dtype, device=q.device)
    if mask is not None:
        bias.masked_fill_(~mask, float("-inf"))
    bias = bias.expand(B, nh, T, Tk).reshape(B * nh, T, Tk)  # a view unless the mask differs per row
    scores = torch.baddbmm(
        bias, q.reshape(B * nh, T, hd), k.reshape(B * nh, Tk, hd).transpose(1, 2), alpha=1 / math.sqrt(hd)
    )  # (B*nh, T, Tk)
    probs = F.softmax(scores, dim=-1)
    if dropout_p:
        probs = F.dropout(probs, p=dropout_p)
    return torch.bmm(probs, v.reshape(B * nh, Tk, hd)).view(B, nh, T, hd)
