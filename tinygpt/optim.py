"""Optimizer wiring: parameter groups with weight decay only where it belongs."""

from collections.abc import Callable

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: >=2-D weight matrices get ``weight_decay``; norms, biases and embeddings get none.

    Tied weights appear once (``named_parameters`` skips duplicates), so a tied lm_head counts as the
    embedding and is not decayed.
    """
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and id(p) not in embedding_ids else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(
    model: nn.Module, factory: Callable[..., torch.optim.Optimizer], weight_decay: float
) -> torch.optim.Optimizer:
    """``factory`` is the partial Hydra builds from ``conf/optim/*.yaml``; it still needs the params."""
    return factory(param_groups(model, weight_decay))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
