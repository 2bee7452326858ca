"""Start a training run from a Hugging Face transformers folder: ``python -m tinygpt.train init_from=DIR``.

The folder gives the run its model config (config.json, mapped by ``tinygpt.hf.mapping.from_hf_config``),
its weights (model.safetensors, or the shards its index names) and its tokenizer (tokenizer.json:
``data=text data.path=FILE`` encodes with it). A model key typed on the command line that contradicts
config.json is refused, naming it; ``model.dropout``, ``model.doc_mask`` and ``model.fp8_head`` may be
set, and ``model.block_size`` lowered.

The folder is untrusted: config.json is read as JSON data and mapped onto TinyGPT's own classes (no
``trust_remote_code``, nothing of the folder is run), weights load through safetensors, never pickle.
Their shapes (the safetensors headers) are compared with those of the model config.json describes,
built on the meta device, before any memory goes to that model (``check_weight_shapes``); weights
holding inf or nan are refused.
transformers is imported only here, and only when ``init_from`` is set.
"""

import copy
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from tinygpt.config.overrides import flat_items, override_key
from tinygpt.config.untrusted import instantiate_data
from tinygpt.data import Tokenizer, load_tokenizer
from tinygpt.data.tokenizers import read_regular_file
from tinygpt.errors import UserError
from tinygpt.hf.mapping import ARCHITECTURES, from_hf_config, from_hf_state, require_transformers
from tinygpt.model import GPT
from tinygpt.model.build import non_finite_weight, shape_mismatch, weight_shapes

MAX_CONFIG_BYTES = 1 << 20
NEED_FOLDER = "init_from= must name a transformers model folder"
# model keys settable with init_from: how the model runs, not what it computes
SETTABLE = ("model.dropout", "model.block_size", "model.doc_mask", "model.fp8_head")
SETTABLE_TEXT = "model.dropout, model.block_size, model.doc_mask and model.fp8_head"


def read_json(path: Path) -> Any:
    try:
        return json.loads(read_regular_file(path, MAX_CONFIG_BYTES).decode("utf-8"))
    except FileNotFoundError as exc:
        raise UserError(f"{path} is missing; {NEED_FOLDER}") from exc
    except (OSError, ValueError, RecursionError) as exc:
        raise UserError(
            f"cannot read {path} ({exc}); init_from= must name a transformers model folder"
        ) from exc


def folder_model_config(folder: Path) -> tuple[dict[str, Any], int]:
    """Our model config for the folder's config.json, and the model's vocabulary size."""
    if not folder.is_dir():
        raise UserError(
            f"init_from={folder} is not a folder; give a transformers model folder (config.json, ...)"
        )
    path = folder / "config.json"
    raw = read_json(path)
    if not isinstance(raw, dict) or raw.get("model_type") not in ARCHITECTURES:
        kind = raw.get("model_type") if isinstance(raw, dict) else None
        raise UserError(
            f"{path}: model_type {kind!r} is not one TinyGPT imports; it imports {', '.join(ARCHITECTURES)}"
        )
    require_transformers()
    from transformers import CONFIG_MAPPING  # ~5 s: only with init_from

    try:  # a known model_type: its own config class fills in the defaults; no code of the folder runs
        config = CONFIG_MAPPING[raw["model_type"]].from_dict(raw).to_dict()
    except Exception as exc:
        raise UserError(f"{path} is not a valid {raw['model_type']} config ({exc})") from exc
    return from_hf_config(config, str(path)), int(config["vocab_size"])


def weight_files(folder: Path) -> list[Path]:
    """model.safetensors, or the shards model.safetensors.index.json names; never a pickle (*.bin)."""
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise UserError(f"{index} has no weight_map; the folder is damaged")
        shards = sorted({str(name) for name in weight_map.values()})
        if any(Path(name).name != name for name in shards):
            raise UserError(f"{index} names a shard outside the folder; the folder is not usable")
        return [folder / name for name in shards]
    if any(folder.glob("*.bin")):
        raise UserError(
            f"{folder} holds PyTorch pickles (*.bin) but no model.safetensors; TinyGPT loads only "
            "safetensors: convert it (load it in transformers, then save_pretrained(safe_serialization=True))"
        )
    raise UserError(f"{folder} has no model.safetensors; {NEED_FOLDER}")


def load_weights(model: GPT, folder: str | Path, model_cfg: dict[str, Any]) -> None:
    """Copy the folder's weights into ``model`` (built from ``model_cfg``); a learned position table
    longer than model.block_size keeps its first rows. Weights holding inf or nan are refused."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    state = {}
    for path in weight_files(folder):
        try:
            state.update(load_file(path))
        except (OSError, SafetensorError) as exc:
            raise UserError(f"cannot read {path} ({exc}); the folder is damaged") from exc
    ours = ours_to_load(state, model_cfg, folder)
    bad = non_finite_weight(ours)
    if bad is not None:
        raise UserError(
            f"{folder}: its weights are not finite ({bad} holds inf or nan); a run cannot learn from them: "
            "give init_from= a folder of finite weights"
        )
    try:
        model.load_state_dict(ours, strict=True)
    except RuntimeError as exc:
        problem = " ".join(str(exc).split())
        raise UserError(f"{folder}: its weights do not fit its config.json ({problem})") from exc


def ours_to_load(
    state: dict[str, torch.Tensor], model_cfg: dict[str, Any], folder: Path
) -> dict[str, torch.Tensor]:
    """The folder's tensors under our names, a learned position table cut to ``model_cfg``'s block_size."""
    ours = from_hf_state(state, model_cfg, str(folder))
    if "transformer.wpe.weight" in ours:
        ours["transformer.wpe.weight"] = ours["transformer.wpe.weight"][: model_cfg["block_size"]]
    return ours


def header_state(folder: Path) -> dict[str, torch.Tensor]:
    """The folder's weights as tensors on the meta device: their names and shapes from the safetensors
    headers, no data read (a header is at most 100 MB; safetensors checks it against the file's size)."""
    from safetensors import SafetensorError, safe_open

    state = {}
    for path in weight_files(folder):
        try:
            with safe_open(str(path), framework="pt") as weights:
                for name in weights.keys():  # noqa: SIM118 (safe_open is no mapping)
                    state[name] = torch.empty(weights.get_slice(name).get_shape(), device="meta")
        except (OSError, SafetensorError) as exc:
            raise UserError(f"cannot read {path} ({exc}); the folder is damaged") from exc
    return state


def check_weight_shapes(folder: str | Path, model_cfg: dict[str, Any], tokenizer: Tokenizer) -> None:
    """Refuse a folder whose weights' shapes (read from the safetensors headers) are not those of the
    model its config.json describes (``model_cfg``, from ``with_init_from``), before that model is
    built: three edited bytes of config.json must not make a run allocate a model of many gigabytes."""
    folder = Path(folder).expanduser()
    factory = instantiate_data(model_cfg, str(folder / "config.json"), "model")
    expected = weight_shapes(factory, tokenizer)
    ours = ours_to_load(header_state(folder), model_cfg, folder)
    mismatch = shape_mismatch(expected, {name: tuple(t.shape) for name, t in ours.items()})
    if mismatch:
        raise UserError(f"{folder}: its weights do not fit its config.json: {mismatch}")


def folder_tokenizer(texts: Iterable[str], path: str, sha256: str) -> Tokenizer:
    """The data config's tokenizer under init_from: the folder's tokenizer.json, not one trained on
    ``texts``. ``sha256`` (the tokenizer's ``fingerprint()``) is in the token cache's key, so a cache
    built with another tokenizer is never reused."""
    tokenizer = load_tokenizer(path)
    if tokenizer.fingerprint() != sha256:
        raise UserError(f"{path} changed while the run started; start it again")
    return tokenizer


def check_typed_model_keys(cfg: DictConfig, imported: dict[str, Any], typed: list[str], folder: Path) -> None:
    """Refuse model keys typed on the command line that contradict the folder's config.json."""
    flat = flat_items(imported, "model")
    for key in (override_key(o) for o in typed):
        if key == "model" or key.startswith("model/"):
            raise UserError(
                f"{key}= with init_from: the model's architecture comes from {folder / 'config.json'}; "
                f"drop {key}="
            )
        if key.startswith("model.") and key not in SETTABLE:
            value = OmegaConf.select(cfg, key)
            if key not in flat or flat[key] != value:
                raise UserError(
                    f"{key}={value} contradicts {folder / 'config.json'} ({flat.get(key, 'not set there')}); "
                    f"drop {key}= (with init_from only {SETTABLE_TEXT} may be set)"
                )


def with_init_from(cfg: DictConfig, typed: list[str]) -> DictConfig:
    """``cfg`` with the model config and tokenizer of the folder ``cfg.init_from``."""
    folder = Path(cfg.init_from).expanduser()
    imported, vocab_size = folder_model_config(folder)
    check_typed_model_keys(cfg, imported, typed, folder)
    typed_keys = {override_key(o) for o in typed}
    if "model.block_size" in typed_keys:
        limit = imported["block_size"]
        if imported["pos"]["_target_"].endswith("LearnedPositions") and cfg.model.block_size > limit:
            raise UserError(
                f"model.block_size={cfg.model.block_size} is longer than the {limit} learned positions of "
                f"{folder / 'config.json'}; use model.block_size<={limit}"
            )
        imported["block_size"] = cfg.model.block_size
    imported["dropout"] = cfg.model.dropout
    imported["doc_mask"] = cfg.model.get("doc_mask", False)  # how it attends, not what it has learned
    imported["fp8_head"] = cfg.model.get("fp8_head", False)  # the precision of the head's matmul
    tokenizer_path = folder / "tokenizer.json"
    tokenizer = load_tokenizer(tokenizer_path)
    if tokenizer.vocab_size != vocab_size:
        raise UserError(
            f"{tokenizer_path} has {tokenizer.vocab_size} tokens but {folder / 'config.json'} says "
            f"vocab_size={vocab_size}; TinyGPT needs them equal"
        )
    cfg = copy.deepcopy(cfg)  # the caller's config stays as it was composed
    with open_dict(cfg):
        cfg.model = imported
        cfg.data.tokenizer = dict(
            _target_=f"{__name__}.folder_tokenizer",
            _partial_=True,
            path=str(tokenizer_path),
            sha256=tokenizer.fingerprint(),
        )
    return cfg
