"""Atomic save and safe load of the whole training state.

A checkpoint is a plain dict of tensors and containers, so it loads with ``weights_only=True``.
It is written to a temporary file in the same directory, flushed to disk, then renamed over the old
one: a crash mid-write leaves the previous checkpoint intact.
"""

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from tinygpt.errors import UserError


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes the file private; a checkpoint is an ordinary output file
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
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
    if not isinstance(state, dict) or "model" not in state:
        raise UserError(f"checkpoint {path} is not a TinyGPT checkpoint (no model weights in it)")
    return state
