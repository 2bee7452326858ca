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
from tinygpt.model.build import non_finite_weight, shape_mismatch, weight_shapes
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
    weights = "EMA weights" if ema else "weights"
    model = rebuild(state, path, tokenizer, "ema" if ema else "model", f"the {weights} in {path}")
    check_finite(model, f"the {weights} in {path}")
    log.info("loaded the %s of %s (step %s) on %s", weights, path, state.get("step"), torch_device)
    return LoadedRun(model.to(torch_device).eval(), tokenizer, state, path)


def rebuild(state: dict[str, Any], path: Path, tokenizer: Any, key: str, weights: str) -> GPT:
    """The model the checkpoint's config describes, holding its ``state[key]`` weights. Their shapes
    are compared with the model's on the meta device first, so a config claiming a huge model is
    refused before anything is allocated for it."""
    model_cfg, source = model_config(state, path)
    try:
        factory = instantiate_data(model_cfg, source, "model")
        expected = weight_shapes(factory, tokenizer)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"cannot rebuild the model of {path} from {source}: {exc}") from exc
    found = tensor_shapes(state[key], weights)
    check_vocabulary(expected, found, path.parent / "tokenizer.json", tokenizer.vocab_size, weights)
    mismatch = shape_mismatch(expected, found)
    if mismatch:
        raise UserError(f"{weights} do not fit the model {source} describes: {mismatch}")
    try:
        model = build_gpt(factory, tokenizer)
        model.load_state_dict(state[key])
    except Exception as exc:
        raise UserError(f"cannot rebuild the model of {path} from {source}: {exc}") from exc
    return model


def tensor_shapes(state: Any, weights: str) -> dict[str, tuple[int, ...]]:
    if not isinstance(state, dict):
        raise UserError(f"{weights} are not a state dict ({type(state).__name__}); the checkpoint is damaged")
    return {name: tuple(t.shape) for name, t in state.items() if isinstance(t, torch.Tensor)}


def check_vocabulary(
    expected: dict[str, tuple[int, ...]],
    found: dict[str, tuple[int, ...]],
    tokenizer_path: Path,
    vocab_size: int,
    weights: str,
) -> None:
    """Refuse a tokenizer.json whose vocabulary is not the weights' (not the run's tokenizer), naming
    both sizes rather than the model config."""
    wte = "transformer.wte.weight"  # (vocab, n_embd)
    if wte in found and wte in expected and found[wte][:1] != expected[wte][:1]:
        raise UserError(
            f"{tokenizer_path} has {vocab_size} tokens but {weights} have {found[wte][0]} ({wte} is "
            f"{found[wte]}); put back the tokenizer.json the run was trained with"
        )


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
    name = non_finite_weight(model.state_dict())
    if name is not None:
        raise UserError(
            f"{weights} are not finite ({name} holds inf or nan); training diverged (e.g. optim.lr "
            "too high): use ckpt=best or an earlier run's checkpoint"
        )
