"""The training objective: next-token cross-entropy, optionally with label smoothing and z-loss."""

import torch
import torch.nn.functional as F


def lm_loss(
    logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0, z_loss: float = 0.0
) -> torch.Tensor:
    """Mean over tokens of CE(logits, targets) + z_loss * logsumexp(logits)^2, computed in fp32.

    logits (B, T, V), targets (B, T). The z-loss term (PaLM, Chowdhery et al. 2022) keeps the softmax
    normalizer near 1, which keeps low-precision logits well-conditioned.
    """
    logits = logits.flatten(0, 1).float()  # (B*T, V)
    loss = F.cross_entropy(logits, targets.flatten(), label_smoothing=label_smoothing)
    if z_loss:
        loss = loss + z_loss * torch.logsumexp(logits, dim=-1).square().mean()
    return loss
