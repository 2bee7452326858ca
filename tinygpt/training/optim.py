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
LR_SCALES = {"embed": "embed_lr_scale", "head": "head_lr_scale", "scalars": "scalar_lr_scale"}
GROUPING_KEYS = ("decay_embeddings", *LR_SCALES.values())
GROUP_ORDER = ("hidden", "head", "embed", "scalars", "no_decay")


def param_groups(
    model: nn.Module,
    weight_decay: float,
    decay_embeddings: bool = False,
    lr_scales: dict[str, float] | None = None,
) -> ParamGroups:
    """Parameter groups, each named for what it holds:

    - ``hidden``: the 2-D weight matrices inside the blocks; decayed (and Muon's share);
    - ``head``: an untied lm_head, plus the embeddings when ``decay_embeddings``; decayed;
    - ``no_decay``: norms, biases, and the embeddings otherwise.

    ``lr_scales`` (``{"embed": s, "head": s, "scalars": s}``, each a multiplier of the schedule's lr, 1 when
    absent) splits groups out where a scale is not 1, each holding its ``lr_scale`` (``set_lr`` applies it):

    - ``embed``: every nn.Embedding's weight (token table, learned positions, value embeddings), when the
      embedding or the head scale is not 1; decayed only with ``decay_embeddings``;
    - ``head`` then holds the untied lm_head alone; a tied one is the token table, so a head scale other
      than 1 is refused for it;
    - ``scalars``: the model's ``scalar_parameters()`` (learned gains and mixing weights); never decayed.

    With every scale 1 the groups are the ones above, in that order, without ``lr_scale``: checkpoints of
    earlier versions load into them. Tied weights appear once (``named_parameters`` skips duplicates).
    """
    scales = {name: 1.0 for name in LR_SCALES} | (lr_scales or {})
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    split_out = split_out_groups(model, embedding_ids, scales)
    groups: dict[str, list[nn.Parameter]] = {name: [] for name in GROUP_ORDER}
    for name, p in model.named_parameters():
        if p.requires_grad:
            group = split_out.get(id(p)) or default_group(name, p, id(p) in embedding_ids, decay_embeddings)
            groups[group].append(p)
    if scales["head"] != 1 and not groups["head"]:
        raise UserError(
            f"optim.head_lr_scale={scales['head']:g} needs an untied lm_head (model.tie_weights=false): "
            "a tied head is the token embedding, scaled by optim.embed_lr_scale"
        )
    decays = {
        "hidden": weight_decay,
        "head": weight_decay,
        "embed": weight_decay if decay_embeddings else 0.0,
    }
    return [
        {"name": name, "params": params, "weight_decay": decays.get(name, 0.0)} | scale_of(name, scales)
        for name, params in groups.items()
        if params
    ]


def split_out_groups(model: nn.Module, embedding_ids: set[int], scales: dict[str, float]) -> dict[int, str]:
    """Parameter id -> the group its lr scale puts it in (``embed`` or ``scalars``); the others absent."""
    split = {}
    if scales["embed"] != 1 or scales["head"] != 1:  # the head's scale must not reach decayed embeddings
        split |= {i: "embed" for i in embedding_ids}
    if scales["scalars"] != 1:
        split |= {id(p): "scalars" for p in getattr(model, "scalar_parameters", lambda: [])()}
    return split


def scale_of(group: str, scales: dict[str, float]) -> dict[str, float]:
    """The ``lr_scale`` entry of a group dict: on the split-out groups, never on today's ones at scale 1."""
    if group in ("embed", "scalars") or (group == "head" and scales["head"] != 1):
        return {"lr_scale": float(scales[group])}
    return {}


def default_group(name: str, p: nn.Parameter, is_embedding: bool, decay_embeddings: bool) -> str:
    """The group of a parameter that no lr scale splits out: ``hidden``, ``head`` or ``no_decay``."""
    if p.dim() < 2 or (is_embedding and not decay_embeddings):
        return "no_decay"
    if is_embedding or name.startswith("lm_head"):
        return "head"
    return "hidden"


def lr_scales_of(optim_cfg: DictConfig) -> dict[str, float]:
    """The groups' lr multipliers an optimizer config sets (a config without them: all 1)."""
    return {group: float(optim_cfg.get(key, 1.0)) for group, key in LR_SCALES.items()}


def build_optimizer(model: nn.Module, optim_cfg: DictConfig) -> torch.optim.Optimizer:
    """The optimizer ``optim_cfg`` (the ``optim`` node of the config) names, over ``model``'s groups."""
    decay_embeddings = bool(optim_cfg.get("decay_embeddings", False))
    groups = param_groups(model, optim_cfg.weight_decay, decay_embeddings, lr_scales_of(optim_cfg))
    arguments = OmegaConf.to_container(optim_cfg, resolve=True)
    for key in GROUPING_KEYS:
        arguments.pop(key, None)
    # "all": plain lists, as a ListConfig in the optimizer's state would not load with weights_only=True.
    return instantiate(arguments, _convert_="all")(groups)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate: the schedule's value for this step times the group's ``lr_scale``
    (1 where a group has none, as in checkpoints of earlier versions)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


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
