"""Sampling from a trained run: ``python -m tinygpt.generate run=DIR prompt="..."``, or from Python:

    import tinygpt
    from tinygpt.engine import generate_text

    model, tokenizer = tinygpt.load("out/my_model")
    print(generate_text(model, tokenizer, "ROMEO:", temperature=0.8, top_p=0.9)[0])

This module loads a run (``load``) and is the command line around ``tinygpt.engine``, which does the
sampling.

The run directory is untrusted input: weights load with ``weights_only=True``, must be finite, and the
model config is data (``tinygpt.untrusted``: no interpolation, only classes inside ``tinygpt.model``
or ``torch.nn``). Generated text goes to stdout, and nothing else does; log lines go to stderr; no
files are written.
"""

import gc
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, TextIO

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from tinygpt.checkpoint import load_checkpoint
from tinygpt.config import conf_dir
from tinygpt.data import load_tokenizer
from tinygpt.device import DEVICES, pick_device
from tinygpt.engine import past_block_size, slide_keep, stream_text
from tinygpt.errors import UserError, exit_on_user_error
from tinygpt.model import GPT
from tinygpt.sampling import check_sampling
from tinygpt.untrusted import instantiate_data

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
        model = instantiate_data(model_cfg, source, "model")(vocab_size=tokenizer.vocab_size)
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


def write_samples(stream: Iterator[list[str]], out: TextIO, live: bool, hold: int = 0) -> None:
    """Print the final samples, each ended by a newline and separated by a ``---`` line.

    ``live`` prints the first sample as it grows, keeping back its last ``hold`` characters (a stop
    string may be starting there) and a partial character; the rest of it comes at the end.
    """
    texts: list[str] = []
    printed = 0
    for texts in stream:
        if live:
            settled = texts[0][: len(texts[0]) - hold].rstrip("\ufffd")
            if len(settled) > printed:
                out.write(settled[printed:])
                out.flush()
                printed = len(settled)
    out.write(texts[0][printed:] + "\n")
    for text in texts[1:]:
        out.write("---\n" + text + "\n")
    out.flush()


def describe_context(model: GPT) -> str:
    """One line on how this model goes on past block_size (see ``tinygpt.engine.past_block_size``)."""
    if past_block_size(model) == "ring":
        return (
            f"context: the last sliding_window={model.sliding_window} tokens at any length "
            f"(ring-buffer KV cache; block_size={model.block_size} is no limit)"
        )
    return (
        f"context: at most block_size={model.block_size} tokens; past that it restarts from the "
        f"newest {slide_keep(model)} (KV cache recomputed over them)"
    )


def stdin_prompt(stdin: BinaryIO) -> str:
    """The prompt piped in, decoded strictly as UTF-8, less the newline ``echo`` ends its line with."""
    data = stdin.read()
    try:
        return data.decode("utf-8").removesuffix("\n")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"the prompt on stdin is not valid UTF-8 (byte offset {exc.start}); convert it first, "
            "e.g. iconv -f latin1 -t utf-8 FILE | python -m tinygpt.generate run=... prompt=-"
        ) from exc


def text_value(value: Any, key: str) -> str:
    """A text value from the command line; Hydra reads some bare words as numbers or booleans."""
    if not isinstance(value, str):
        raise UserError(
            f"{key}={value} was read as {type(value).__name__}, not text; quote it, e.g. '{key}=\"{value}\"'"
        )
    return value


def static_cache_value(value: Any) -> bool | None:
    """``static_cache``: auto (None: on CUDA only), true or false."""
    if value == "auto":
        return None
    if not isinstance(value, bool):
        raise UserError(f"static_cache must be auto, true or false, got {value!r}")
    return value


def compile_value(value: Any) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"compile must be true or false, got {value!r}")
    return value


def check_run_and_device(cfg: DictConfig) -> None:
    """The keys every command that reads a run shares (generate, eval): ``run`` given, ``device`` known."""
    if OmegaConf.is_missing(cfg, "run"):
        raise UserError("run is required: run=<the directory of a training run, its hydra.run.dir>")
    if cfg.device not in DEVICES:
        raise UserError(f"device must be one of {', '.join(DEVICES)}, got {cfg.device!r}")


def cli(cfg: DictConfig) -> None:
    """The command, given its composed config: check, load the run, sample, print."""
    check_run_and_device(cfg)
    check_sampling(cfg.temperature, cfg.top_k, cfg.top_p, cfg.repetition_penalty)
    prompt = text_value(cfg.prompt, "prompt")
    if prompt == "-":
        prompt = stdin_prompt(sys.stdin.buffer)
    stop = None if cfg.stop is None else text_value(cfg.stop, "stop")
    static_cache = static_cache_value(cfg.static_cache)
    model, tokenizer = load(cfg.run, cfg.ckpt, cfg.ema, cfg.device)
    log.info(describe_context(model))
    texts = stream_text(
        model,
        tokenizer,
        prompt,
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=cfg.top_p,
        repetition_penalty=cfg.repetition_penalty,
        num_samples=cfg.num_samples,
        seed=cfg.seed,
        stop=stop,
        kv_cache=cfg.kv_cache,
        static_cache=static_cache,
        compile_step=compile_value(cfg.compile),
    )
    live = sys.stdout.isatty() and cfg.num_samples == 1
    write_samples(texts, sys.stdout, live=live, hold=max(len(stop or "") - 1, 0))


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="generate")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    cli(cfg)


if __name__ == "__main__":
    main()
    # Exit without the interpreter's last garbage collection over all that torch and Hydra allocated
    # (~0.3 s of a ~1.4 s command): the OS frees those objects instead, and none needs finalizing.
    gc.freeze()
