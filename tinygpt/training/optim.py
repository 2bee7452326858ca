"""Optimizers and their parameter groups.

A ``conf/optim/*.yaml`` names the optimizer itself (``_target_``, with ``_partial_: true``) and holds its
constructor arguments, plus the grouping policy in ``GROUPING_KEYS``, which ``build_optimizer`` reads to
make the parameter groups and keeps out of the constructor. ``weight_decay`` is both: a constructor
argument, and the decay of the groups that take one (each group's own value wins over the constructor's).
"""

import logging
from collections.abc import Callable, Iterable
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from tinygpt.errors import UserError

ParamGroups = list[dict[str, Any]]

# Keys of conf/optim/*.yaml that shape the parameter groups and are no argument of the optimizer.
GROUPING_KEYS = ("decay_embeddings",)


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


def build_optimizer(model: nn.Module, optim_cfg: DictConfig) -> torch.optim.Optimizer:
    """The optimizer ``optim_cfg`` (the ``optim`` node of the config) names, over ``model``'s groups."""
    groups = param_groups(model, optim_cfg.weight_decay, optim_cfg.decay_embeddings)
    arguments = OmegaConf.to_container(optim_cfg, resolve=True)
    for key in GROUPING_KEYS:
        del arguments[key]
    # "all": plain lists, as a ListConfig in the optimizer's state would not load with weights_only=True.
    return instantiate(arguments, _convert_="all")(groups)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate (the schedule's value for this step)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def _on_cuda(groups: ParamGroups) -> bool:
    return all(p.is_cuda for g in groups for p in g["params"])


def adamw(
    params: ParamGroups,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
) -> torch.optim.AdamW:
    """torch's AdamW with the fused kernel where every parameter is on a CUDA device, else foreach
    (left to itself, torch picks foreach on CUDA and the per-tensor loop on CPU)."""
    fused = _on_cuda(params)
    return torch.optim.AdamW(
        params,
        lr=lr,
        betas=tuple(betas),
        eps=eps,
        weight_decay=weight_decay,
        fused=fused,
        foreach=None if fused else True,
    )


def adamw8bit(
    params: ParamGroups,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
) -> torch.optim.Optimizer:
    """bitsandbytes' 8-bit AdamW: optimizer state as uint8 blocks (tensors under 4096 elements stay fp32).
    bitsandbytes is imported here, only when chosen: it costs ~1.7 s, and it is an optional extra."""
    bnb_log = logging.getLogger("bitsandbytes")
    level = bnb_log.level
    # Its CPU backend warns about an optional 4-bit kernel that AdamW8bit never uses.
    bnb_log.setLevel(logging.ERROR)
    try:
        import bitsandbytes as bnb
    except ImportError as exc:
        message = "optim=adamw8bit needs bitsandbytes: pip install -e '.[bnb]' in the checkout"
        raise UserError(message) from exc
    finally:
        bnb_log.setLevel(level)
    return bnb.optim.AdamW8bit(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)


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


class MuonWithAdamW(torch.optim.Optimizer):
    """torch's Muon on the ``hidden`` group (the 2-D weight matrices inside the blocks), torch's AdamW on
    the other groups (embeddings, lm_head, norms, biases), as one optimizer: ``param_groups`` and
    ``state`` hold both halves, so the schedule, grad clipping, GradScaler and checkpoints see one.

    Muon runs with ``adjust_lr_fn="match_rms_adamw"``, which scales its orthogonalized update to AdamW's
    typical RMS, so one ``lr`` and one schedule drive both halves. ``eps`` and ``betas`` are AdamW's;
    Muon keeps its own eps for the Newton-Schulz normalization.
    """

    def __init__(
        self,
        params: ParamGroups,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        ns_steps: int = 5,
    ):
        if not hasattr(torch.optim, "Muon"):
            raise UserError(
                f"optim=muon needs torch.optim.Muon (torch >= 2.9); this is torch {torch.__version__}"
            )
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))
        hidden, rest = self._halves()
        # Each half fills its defaults into the very group dicts of self.param_groups.
        self._muon = torch.optim.Muon(
            hidden,
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            ns_steps=ns_steps,
            adjust_lr_fn="match_rms_adamw",
        )
        self._adamw = adamw(rest, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        self._share_groups_and_state()

    def _halves(self) -> tuple[ParamGroups, ParamGroups]:
        hidden = [g for g in self.param_groups if g.get("name") == "hidden"]
        return hidden, [g for g in self.param_groups if g.get("name") != "hidden"]

    def _share_groups_and_state(self) -> None:
        """Point both halves at this optimizer's group dicts and state, which load_state_dict replaces."""
        self._muon.param_groups, self._adamw.param_groups = self._halves()
        self._muon.state = self._adamw.state = self.state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._share_groups_and_state()

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = self._muon.step(closure)  # the closure (if any) runs once, in Muon's step
        self._adamw.step()
        return loss
