"""The training state: the parts that learn (model, optimizer, loss scaler, EMA) and the counters of
the run. It is what a checkpoint holds and what a resume restores, and its fields are listed once.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from tinygpt.errors import UserError
from tinygpt.training.checkpoint import capture_rng, restore_rng

# The run's counters, each with the type a checkpoint stores it as.
COUNTERS: dict[str, type | tuple[type, ...]] = {
    "step": int,
    "tokens_seen": int,
    "best_val_loss": (float, int),
    "skipped_in_a_row": int,  # updates skipped (non-finite loss or gradient) since the last good one
    "skipped_total": int,
}
# What else a checkpoint must hold to be resumed.
STATES: dict[str, type] = {"model": dict, "optimizer": dict, "scaler": dict, "config": dict, "rng": dict}


def make_ema(model: nn.Module) -> AveragedModel:
    """torch's AveragedModel as the holder of an EMA of the weights (and buffers); the step updates it
    with ``tinygpt.training.step.update_ema``: the first update copies the weights, then
    ema <- decay * ema + (1 - decay) * weights after every applied optimizer step."""
    device = next(model.parameters()).device  # n_averaged too: AveragedModel makes it on the CPU otherwise
    return AveragedModel(model, device=device, use_buffers=True)


def _zero(device: torch.device) -> torch.Tensor:
    return torch.zeros((), dtype=torch.long, device=device)


@dataclass
class TrainState:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    ema: AveragedModel | None = None
    step: int = 0
    tokens_seen: int = 0
    best_val_loss: float = math.inf
    # The skip counters live on the device, so that counting a skipped update needs no host sync.
    skipped_in_a_row: torch.Tensor = field(default=None)  # type: ignore[assignment]
    skipped_total: torch.Tensor = field(default=None)  # type: ignore[assignment]
    worst_in_a_row: torch.Tensor = field(default=None)  # type: ignore[assignment]  # since the last check
    logger_run_id: str | None = None

    def __post_init__(self) -> None:
        device = next(self.model.parameters()).device
        for name in ("skipped_in_a_row", "skipped_total", "worst_in_a_row"):
            if getattr(self, name) is None:
                setattr(self, name, _zero(device))

    def counters(self) -> dict[str, int | float]:
        """The counters as plain numbers (a host sync: for checkpoints and logs only)."""
        values = {name: getattr(self, name) for name in COUNTERS}
        return {k: v.item() if torch.is_tensor(v) else v for k, v in values.items()}

    def to_checkpoint(self, config: dict[str, Any], overrides: list[str] | None = None) -> dict[str, Any]:
        """Everything a resume needs, in types ``torch.load(weights_only=True)`` reads back: the state,
        the resolved config, and the command-line overrides that composed it."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "ema_n_averaged": self.ema.n_averaged if self.ema is not None else None,
            **self.counters(),
            "config": config,
            "overrides": overrides,
            "logger_run_id": self.logger_run_id,
            "rng": capture_rng(),
        }

    def restore(self, ckpt: dict[str, Any], path: Path) -> None:
        """Load a checkpoint written by ``to_checkpoint``; one that does not fit is refused in one line."""
        check_checkpoint(ckpt, path)
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scaler.load_state_dict(ckpt["scaler"])
            if self.ema is not None:
                self.ema.module.load_state_dict(ckpt["ema"])
                self.ema.n_averaged.copy_(ckpt["ema_n_averaged"])
            restore_rng(ckpt["rng"])
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
            first_line = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            raise UserError(
                f"cannot resume {path}: its saved state does not fit this run ({first_line[:200]}); the file "
                "is damaged or was edited: resume from a good copy, or start a new hydra.run.dir"
            ) from exc
        for name in COUNTERS:
            value = ckpt[name]
            current = getattr(self, name)
            setattr(
                self, name, torch.tensor(value, device=current.device) if torch.is_tensor(current) else value
            )
        self.worst_in_a_row = self.skipped_in_a_row.clone()
        self.logger_run_id = ckpt.get("logger_run_id")


def check_checkpoint(ckpt: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint that lacks an entry a resume reads, or holds one of the wrong type."""
    for key, kind in {**STATES, **COUNTERS}.items():
        if key not in ckpt:
            problem = "has no"
        elif isinstance(ckpt[key], bool) or not isinstance(ckpt[key], kind):
            problem = f"has a {type(ckpt[key]).__name__} as its"
        else:
            continue
        raise UserError(
            f"checkpoint {path} {problem} {key!r} entry, so it cannot be resumed (damaged or not written "
            "by tinygpt.train); resume from a good copy, or start a new hydra.run.dir"
        )
