"""Optimizers: parameter groups with weight decay only where it belongs, and the builders that
``conf/optim/*.yaml`` point at (each called by the loop with the parameter groups)."""

import logging
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from tinygpt.errors import UserError

ParamGroups = list[dict[str, Any]]


def param_groups(model: nn.Module, weight_decay: float, decay_embeddings: bool = False) -> ParamGroups:
    """Parameter groups, each named for what it holds:

    - ``hidden``: the 2-D weight matrices inside the blocks; decayed (and Muon's share);
    - ``head``: an untied lm_head, plus the embeddings when ``decay_embeddings``; decayed;
    - ``no_decay``: norms, biases, and the embeddings otherwise.

    Tied weights appear once (``named_parameters`` skips duplicates), so a tied lm_head is the embedding.
    """
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    groups: dict[str, list[nn.Parameter]] = {"hidden": [], "head": [], "no_decay": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.dim() < 2 or (id(p) in embedding_ids and not decay_embeddings):
            groups["no_decay"].append(p)
        elif id(p) in embedding_ids or name.startswith("lm_head"):
            groups["head"].append(p)
        else:
            groups["hidden"].append(p)
    return [
        {"name": name, "params": params, "weight_decay": 0.0 if name == "no_decay" else weight_decay}
        for name, params in groups.items()
        if params
    ]


def build_optimizer(
    model: nn.Module,
    factory: Callable[..., torch.optim.Optimizer],
    weight_decay: float,
    decay_embeddings: bool,
) -> torch.optim.Optimizer:
    """``factory`` is the partial Hydra builds from ``conf/optim/*.yaml``; it still needs the params."""
    return factory(param_groups(model, weight_decay, decay_embeddings))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _on_cuda(groups: ParamGroups) -> bool:
    return all(p.is_cuda for g in groups for p in g["params"])


def adamw(
    params: ParamGroups,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    **_: Any,  # weight_decay: already set per parameter group
) -> torch.optim.Optimizer:
    """torch's AdamW; the fused kernel where every parameter is on a CUDA device, else foreach."""
    fused = _on_cuda(params)
    return torch.optim.AdamW(
        params, lr=lr, betas=tuple(betas), eps=eps, fused=fused, foreach=None if fused else True
    )


def adamw8bit(
    params: ParamGroups,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    **_: Any,  # weight_decay: already set per parameter group
) -> torch.optim.Optimizer:
    """bitsandbytes' 8-bit AdamW: optimizer state as uint8 blocks (tensors under 4096 elements stay fp32)."""
    bnb_log = logging.getLogger("bitsandbytes")
    level = bnb_log.level
    bnb_log.setLevel(
        logging.ERROR
    )  # its CPU backend warns about an optional 4-bit kernel AdamW8bit never uses
    try:
        import bitsandbytes as bnb  # imported only when chosen: it costs ~1.7 s
    except ImportError as exc:
        raise UserError("optim=adamw8bit needs bitsandbytes: pip install 'tinygpt[bnb]'") from exc
    finally:
        bnb_log.setLevel(level)
    return bnb.optim.AdamW8bit(params, lr=lr, betas=tuple(betas), eps=eps)


class Lion(torch.optim.Optimizer):
    """Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"):

        update = sign(beta1 * m + (1 - beta1) * g)
        p     <- p - lr * (update + weight_decay * p)
        m     <- beta2 * m + (1 - beta2) * g

    The sign makes every coordinate move by lr, so Lion wants an lr 3-10x smaller than AdamW's and a
    weight decay 3-10x larger (same lr * wd product).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
    ):
        if lr <= 0:
            raise ValueError(f"Lion needs lr > 0, got {lr}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                m = state["exp_avg"]
                update = (beta1 * m + (1 - beta1) * p.grad).sign_()
                p.mul_(1 - group["lr"] * group["weight_decay"]).add_(update, alpha=-group["lr"])
                m.lerp_(p.grad, 1 - beta2)
        return loss


def lion(
    params: ParamGroups,
    lr: float,
    betas: tuple[float, float],
    **_: Any,  # weight_decay: already set per parameter group
) -> torch.optim.Optimizer:
    return Lion(params, lr=lr, betas=betas)


class MuonWithAdamW:
    """One optimizer as far as the loop can tell: torch's Muon on the hidden 2-D weight matrices, AdamW
    on the rest (embeddings, lm_head, norms, biases).

    Muon runs with ``adjust_lr_fn="match_rms_adamw"``, which scales its orthogonalized update to AdamW's
    typical RMS, so one ``lr`` and one schedule drive both halves.
    """

    def __init__(
        self,
        params: ParamGroups,
        lr: float,
        betas: tuple[float, float],
        eps: float,
        momentum: float = 0.95,
        ns_steps: int = 5,
    ):
        groups = list(params)
        hidden = [g for g in groups if g["name"] == "hidden"]
        rest = [g for g in groups if g["name"] != "hidden"]
        self.muon = torch.optim.Muon(
            hidden, lr=lr, momentum=momentum, ns_steps=ns_steps, adjust_lr_fn="match_rms_adamw"
        )
        self.adamw = adamw(rest, lr=lr, betas=betas, eps=eps)
        self.param_groups = self.muon.param_groups + self.adamw.param_groups  # what set_lr and clipping see

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = self.muon.step(closure)
        self.adamw.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none)
        self.adamw.zero_grad(set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.muon.load_state_dict(state_dict["muon"])
        self.adamw.load_state_dict(state_dict["adamw"])


def muon(
    params: ParamGroups,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    momentum: float = 0.95,
    ns_steps: int = 5,
    **_: Any,  # weight_decay: already set per parameter group
) -> MuonWithAdamW:
    if not hasattr(torch.optim, "Muon"):
        raise UserError(
            f"optim=muon needs torch.optim.Muon (torch >= 2.9); this is torch {torch.__version__}"
        )
    return MuonWithAdamW(params, lr=lr, betas=betas, eps=eps, momentum=momentum, ns_steps=ns_steps)
