"""Loading a training run to sample from or score: its tokenizer, its checkpoint, and the model rebuilt
from the checkpoint's config. The public ``tinygpt.load``:

    import tinygpt
    from tinygpt.inference.engine import generate_text

    model, tokenizer = tinygpt.load("out/my_model")
    print(generate_text(model, tokenizer, "ROMEO:", temperature=0.8, top_p=0.9)[0])

The run directory is untrusted input: weights load with ``weights_only=True``, must be finite, and the
model config is data (``tinygpt.config.untrusted``: no interpolation, only classes inside ``tinygpt.model``
or ``torch.nn``).
"""

import json
import logging
from pathlib import Path
from typing import Any, NamedTuple

import torch

from tinygpt.config.untrusted import instantiate_data
from tinygpt.data import load_tokenizer
from tinygpt.errors import UserError
from tinygpt.model import GPT, build_gpt
from tinygpt.runtime.device import pick_device
from tinygpt.training.checkpoint import load_checkpoint

log = logging.getLogger("tinygpt")

CHECKPOINTS = {"latest": "ckpt.pt", "best": "ckpt_best.pt"}


class Loaded(NamedTuple):
    model: GPT  # in eval mode, on the requested device
    tokenizer: Any  # the run's tokenizer: encode(str) -> ids, decode(ids) -> str


class LoadedRun(NamedTuple):
    """``Loaded``, and what else the checkpoint says (for tinygpt.eval)."""

    model: GPT
    tokenizer: Any
    state: dict[str, Any]  # the checkpoint as loaded: "step", "config", ...
    path: Path  # the checkpoint file


def load(run_dir: str | Path, ckpt: str = "latest", ema: bool = False, device: str = "auto") -> Loaded:
    """The model and tokenizer of a training run, ready to sample from.

    ``ckpt``: "latest" (ckpt.pt) or "best" (ckpt_best.pt, lowest val loss); ``ema``: the averaged
    weights the checkpoint holds under "ema" instead of the raw ones.
    """
    run = load_run(run_dir, ckpt, ema, device)
    return Loaded(run.model, run.tokenizer)


def load_run(run_dir: str | Path, ckpt: str = "latest", ema: bool = False, device: str = "auto") -> LoadedRun:
    """``load``, with the checkpoint it read."""
    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir():
        raise UserError(
            f"run directory {run_dir} does not exist; pass run=<the hydra.run.dir of a training run>"
        )
    if ckpt not in CHECKPOINTS:
        raise UserError(f"ckpt must be one of {', '.join(CHECKPOINTS)}, got {ckpt!r}")
    check_not_a_sweep(run_dir)
    torch_device = pick_device(device)
    tokenizer = load_tokenizer(run_dir / "tokenizer.json")
    path = run_dir / CHECKPOINTS[ckpt]
    state = load_checkpoint(path, map_location=torch_device)
    if ema and state.get("ema") is None:
        raise UserError(f"ema=true but {path} holds no EMA weights (train with EMA on); use ema=false")
    model_cfg, source = model_config(state, path)
    try:
        model = build_gpt(instantiate_data(model_cfg, source, "model"), tokenizer)
        model.load_state_dict(state["ema" if ema else "model"])
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"cannot rebuild the model of {path} from {source}: {exc}") from exc
    weights = "EMA weights" if ema else "weights"
    check_finite(model, f"the {weights} in {path}")
    log.info("loaded the %s of %s (step %s) on %s", weights, path, state.get("step"), torch_device)
    return LoadedRun(model.to(torch_device).eval(), tokenizer, state, path)


def check_not_a_sweep(run_dir: Path) -> None:
    """A sweep's directory holds runs, not a run: name them instead of failing on a missing tokenizer."""
    if (run_dir / "tokenizer.json").exists():
        return
    jobs = sorted(
        (p for p in run_dir.iterdir() if (p / "ckpt.pt").is_file()), key=lambda p: (len(p.name), p.name)
    )
    if jobs:
        shown = ", ".join(str(p) for p in jobs[:5]) + (", ..." if len(jobs) > 5 else "")
        raise UserError(
            f"{run_dir} is a sweep's directory, not a run; pass one of its {len(jobs)} runs: {shown}"
        )


def model_config(state: dict[str, Any], ckpt_path: Path) -> tuple[dict[str, Any], str]:
    """The resolved model config (a dict with ``_target_``s) and where it comes from."""
    return stored_config(state, ckpt_path, "model")


def stored_config(state: dict[str, Any], ckpt_path: Path, key: str) -> tuple[dict[str, Any], str]:
    """The resolved config node ``key`` (e.g. "model", "data") and where it comes from: the config of
    the checkpoint ``state`` read from ``ckpt_path``, else the run's effective_config.json."""
    config = state.get("config")
    if isinstance(config, dict) and isinstance(config.get(key), dict):
        return config[key], f"the config in {ckpt_path}"
    path = ckpt_path.parent / "effective_config.json"
    try:
        node = json.loads(path.read_text(encoding="utf-8"))[key]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"the checkpoint has no {key} config and {path} cannot supply one ({exc})") from exc
    if not isinstance(node, dict):
        raise UserError(f"{path} has no {key} config (its '{key}' is not a mapping)")
    return node, str(path)


def check_finite(model: GPT, weights: str) -> None:
    """Refuse inf or nan weights (a diverged training run): sampling from them fails or is noise."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise UserError(
                f"{weights} are not finite ({name} holds inf or nan); training diverged (e.g. optim.lr "
                "too high): use ckpt=best or an earlier run's checkpoint"
            )
