"""Atomic save and safe load of the whole training state.

A checkpoint is a plain dict of tensors and containers, so it loads with ``weights_only=True``.
It is written atomically (``tinygpt.runtime.files``): a crash mid-write leaves the previous checkpoint
intact.
"""

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tinygpt.config.records import upgrade, with_added_model_keys
from tinygpt.errors import UserError
from tinygpt.runtime.files import atomic_write


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically; a failed write (a full disk) leaves the old file as it was."""
    path = Path(path)
    try:
        with atomic_write(path) as f:
            torch.save(state, f)
    except OSError as exc:
        kept = f"the previous {path.name} is intact" if path.exists() else "no checkpoint was saved yet"
        raise UserError(
            f"cannot write checkpoint {path} ({exc.strerror or exc}); {kept}. Free some space or fix "
            "the folder's permissions, then continue with resume=auto"
        ) from exc


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint at ``path``, loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}: train first, or point to a run directory that has one")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise UserError(
            f"checkpoint {path} is corrupt or not a TinyGPT checkpoint ({type(exc).__name__}); "
            "delete it to start over, or resume from another run"
        ) from exc
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise UserError(f"checkpoint {path} is not a TinyGPT checkpoint (no model weights in it)")
    if "config" in state:
        # one written by an earlier version reads as today's
        state["config"] = with_added_model_keys(upgrade(state["config"]))
    return state


def capture_rng() -> dict[str, Any]:
    """Every RNG the loop may touch (python, numpy, torch CPU and CUDA), in weights_only-safe types."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "cached_gaussian": cached,
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
