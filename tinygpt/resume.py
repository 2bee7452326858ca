"""Resuming: which checkpoint a run continues from (``resume=true|false|auto``), whether the run may
continue it, and where a diverged run's good weights are."""

import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from tinygpt.checkpoint import load_checkpoint
from tinygpt.config import resolved
from tinygpt.errors import UserError
from tinygpt.state import check_checkpoint


def flat_items(node: Any, prefix: str = "") -> dict[str, Any]:
    """{"model.n_layer": 4, ...} for a nested config (dicts only; lists are values)."""
    if not isinstance(node, dict):
        return {prefix: node}
    items: dict[str, Any] = {}
    for key, value in node.items():
        items.update(flat_items(value, f"{prefix}.{key}" if prefix else str(key)))
    return items


# What a resumed run must share with its checkpoint: the model, the optimizer's kind, the precision.
SAME_ON_RESUME = ("model.", "optim._target_", "precision")


def check_same_experiment(saved: dict[str, Any], cfg: DictConfig, path: Path) -> None:
    """Refuse a resume that would change SAME_ON_RESUME, naming each key with its old and new value."""
    old, new = flat_items(saved), flat_items(resolved(cfg))
    unset = "(unset)"
    changed = [
        f"{key} {old.get(key, unset)} -> {new.get(key, unset)}"
        for key in sorted(old.keys() | new.keys())
        if key.startswith(SAME_ON_RESUME) and old.get(key, unset) != new.get(key, unset)
    ]
    if changed:
        raise UserError(
            f"cannot resume {path}: this run differs from the checkpoint's ({'; '.join(changed)}); resume "
            "with the checkpoint's model.*, optim= and precision, or start a new run directory"
        )


def checkpoint_to_resume(cfg: DictConfig, ckpt_path: Path) -> dict[str, Any] | None:
    """The checkpoint this run continues from, per ``resume``: true (it must exist), false (there must be
    none: a new run never overwrites one) or auto (continue if there is one, else start fresh)."""
    exists = ckpt_path.exists()
    if cfg.resume is False and exists:
        raise UserError(
            f"{ckpt_path.parent} already holds a run (ckpt.pt); pass resume=true to continue it, "
            "or choose a new hydra.run.dir"
        )
    if cfg.resume is True and not exists:
        raise UserError(
            f"resume=true but there is no checkpoint at {ckpt_path} yet; use resume=auto to continue when "
            "there is one and start fresh when there is not"
        )
    if not exists or cfg.resume is False:
        return None
    ckpt = load_checkpoint(ckpt_path)
    check_checkpoint(ckpt, ckpt_path)
    check_same_experiment(ckpt["config"], cfg, ckpt_path)
    if cfg.ema_decay is not None and ckpt.get("ema") is None:
        raise UserError(f"cannot resume {ckpt_path} with ema_decay set: it was trained without EMA")
    return ckpt


def stop_message(step: int, skipped: int, cfg: DictConfig, run_dir: Path, best_val: float) -> str:
    """Why a diverged run stopped, and which checkpoint is still good: ckpt.pt may already hold huge
    weights (the first bad update can be finite), but ckpt_best.pt was saved at the lowest val loss."""
    best = run_dir / "ckpt_best.pt"
    good = (
        f"the last good checkpoint is {best} (val loss {best_val:.4f}); {run_dir / 'ckpt.pt'} may hold "
        "diverged weights"
        if math.isfinite(best_val) and best.exists()
        else "no checkpoint of this run is known to be good"
    )
    return (
        f"stopped at step {step}: {skipped} non-finite losses or gradients in a row "
        f"(max_skipped_steps={cfg.max_skipped_steps}); {good}. "
        "Lower optim.lr, set grad_clip, or use precision=bf16/fp32"
    )
