"""The training objective: next-token cross-entropy, optionally with label smoothing and z-loss."""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

Head = Callable[[torch.Tensor], torch.Tensor]  # final hidden states (n, C) -> logits (n, V)

# Logits per chunk of the chunked loss: 2**27 fp32 values (512 MiB), e.g. 2,668 tokens of GPT-2's 50,304.
LOGITS_PER_CHUNK = 2**27


def lm_loss(
    logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0, z_loss: float = 0.0
) -> torch.Tensor:
    """Mean over tokens of CE(logits, targets) + z_loss * logsumexp(logits)^2, computed in fp32.

    logits (B, T, V), targets (B, T). The z-loss term (PaLM, Chowdhery et al. 2022) keeps the softmax
    normalizer near 1, which keeps low-precision logits well-conditioned.
    """
    return summed_loss(logits.flatten(0, 1), targets.flatten(), label_smoothing, z_loss) / targets.numel()


def summed_loss(
    logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float, z_loss: float
) -> torch.Tensor:
    """The sum over N tokens of what ``lm_loss`` averages: logits (N, V), targets (N,)."""
    logits = logits.float()  # (N, V); inside a compiled graph the upcast fuses into the softmax
    loss = F.cross_entropy(logits, targets, label_smoothing=label_smoothing, reduction="sum")
    if z_loss:
        loss = loss + z_loss * torch.logsumexp(logits, dim=-1).square().sum()
    return loss


def chunked_lm_loss(
    hidden: torch.Tensor,
    head: Head,
    vocab_size: int,
    targets: torch.Tensor,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
) -> torch.Tensor:
    """``lm_loss(head(hidden), targets, ...)`` without ever holding the (B*T, V) logits whole.

    hidden (B, T, C), targets (B, T); ``head`` gives ``vocab_size`` logits per token (the model's,
    softcap and FP8 included). The tokens go through the head and the loss a chunk at a time,
    and each chunk is checkpointed: backward recomputes its logits instead of keeping them, so at most
    one chunk's logits (``LOGITS_PER_CHUNK`` values) and their gradient are alive at once. The same sum,
    in a different order: equal to the unchunked loss up to rounding.
    """
    h, t = hidden.flatten(0, 1), targets.flatten()  # (N, C), (N,)
    tokens = max(1, LOGITS_PER_CHUNK // vocab_size)
    total = sum(
        checkpoint(head_and_loss, hc, tc, head, label_smoothing, z_loss, use_reentrant=False)
        for hc, tc in zip(h.split(tokens), t.split(tokens), strict=True)
    )
    return total / t.numel()


def head_and_loss(
    h: torch.Tensor, targets: torch.Tensor, head: Head, label_smoothing: float, z_loss: float
) -> torch.Tensor:
    return summed_loss(head(h), targets, label_smoothing, z_loss)  # (n, C) -> (n, V) logits -> () sum
