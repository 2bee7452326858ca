"""JSON run configs: ``python -m tinygpt.train config_json=FILE [overrides]``.

The file's keys become Hydra override strings, spliced into the command line where ``config_json=``
stood, before Hydra parses it: Hydra stays the only thing that builds a config. A file may use

- the product's flat keys (FLAT_VALUES, FLAT_GROUPS below, ``data_path``, ``amp``), e.g.
  ``{"n_layer": 6, "norm": "rmsnorm", "learning_rate": 1e-3, "data_path": "books/"}``;
- group names with an option, e.g. ``{"model": "llama", "data": "shakespeare_char"}``;
- the nested layout of a run's ``effective_config.json``, so feeding one back reproduces that run:
  a group's option is found from its ``_target_``, and every value is set explicitly.

The file is data (``tinygpt.untrusted``): an interpolation ``${...}`` anywhere in it is refused, as
is a ``_target_`` anywhere but on a config group's node (where it only picks the option). Unknown
keys are refused by name. Overrides on the command line win: a key set there drops the
JSON's value for it, and a group chosen there (``model/norm=rmsnorm``) drops the JSON's choice of
that group and everything the JSON sets inside it.
"""

import functools
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from tinygpt.config import conf_dir
from tinygpt.errors import UserError, exit_on_user_error
from tinygpt.untrusted import check_data, nodes

# Flat key -> the config key it sets.
FLAT_VALUES: dict[str, str] = {
    "out_dir": "hydra.run.dir",
    "bpe_vocab_size": "data.tokenizer.vocab_size",
    **{
        key: f"model.{key}"
        for key in (
            "n_layer",
            "n_head",
            "n_kv_head",
            "n_embd",
            "block_size",
            "dropout",
            "bias",
            "tie_weights",
            "sliding_window",
            "parallel_block",
            "qk_norm",
        )
    },
    "learning_rate": "optim.lr",
    "weight_decay": "optim.weight_decay",
    "warmup_steps": "schedule.warmup_steps",
    **{
        key: key
        for key in (
            "max_steps",
            "batch_size",
            "grad_accum_steps",
            "grad_clip",
            "eval_interval",
            "eval_iters",
            "log_interval",
            "sample_interval",
            "seed",
            "device",
            "compile",
            "ema_decay",
            "curriculum_start_block_size",
            "label_smoothing",
            "z_loss",
            "grad_checkpointing",
        )
    },
}
# Flat key -> the config group whose option it chooses.
FLAT_GROUPS: dict[str, str] = {
    "tokenizer": "data/tokenizer",
    "norm": "model/norm",
    "mlp": "model/mlp",
    "pos_encoding": "model/pos",
    "optimizer": "optim",
    "schedule": "schedule",
}


def json_overrides(path: str | Path) -> list[str]:
    """The Hydra overrides equivalent to the JSON config at ``path``, checked key by key."""
    config = _read_json(path)
    check_data(config, f"config_json={path}")
    _check_targets(config, path)
    pairs = translate(config, path)
    _check_keys(pairs, path)
    overrides = [override for _, override in pairs]
    check_data(overrides, f"config_json={path}", "overrides")  # what Hydra reads, checked again
    return overrides


def translate(config: dict[str, Any], path: str | Path) -> list[tuple[str, str]]:
    """(key as the JSON names it, Hydra override) pairs, in the JSON's order; keys not yet checked."""
    pairs: list[tuple[str, str]] = []
    for key, value in config.items():
        if isinstance(value, dict):
            pairs += _nested(value, key, path)
        else:
            pairs += [(key, o) for o in _flat(key, value, path)]
    return pairs


def splice_json_config(args: list[str]) -> list[str]:
    """Command-line ``args`` with ``config_json=FILE`` replaced by that file's overrides, less those
    the other command-line overrides replace."""
    found = [a for a in args if a.startswith("config_json=")]
    if not found:
        return args
    if len(found) > 1:
        raise UserError("config_json= is given more than once; merge the files into one")
    cli_keys = {_override_key(a) for a in args if "=" in a and not a.startswith("-") and a not in found}
    kept = [o for o in json_overrides(found[0].split("=", 1)[1]) if not _replaced(_override_key(o), cli_keys)]
    at = args.index(found[0])
    return [*args[:at], *kept, *args[at + 1 :]]


def with_json_config(hydra_main: Callable[[], Any]) -> Callable[[], Any]:
    """Let a ``@hydra.main`` entry point take ``config_json=FILE`` (spliced into sys.argv first)."""

    @exit_on_user_error
    @functools.wraps(hydra_main)
    def main() -> Any:
        sys.argv[1:] = splice_json_config(sys.argv[1:])
        return hydra_main()

    return main


def hydra_value(value: Any) -> str:
    """A JSON value written in Hydra's override grammar (strings always quoted, so '1e-3' stays text)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # inside '...' only a quote, and backslashes right before a quote or the end, need escaping
        escaped = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
        escaped = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped)
        return f"'{escaped}'"
    if isinstance(value, list):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"not a JSON value: {value!r}")


def _read_json(path: str | Path) -> dict[str, Any]:
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"config_json={path}: cannot read it ({exc.strerror})") from exc
    except ValueError as exc:
        raise UserError(f"config_json={path} is not valid JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise UserError(
            f"config_json={path} must hold a JSON object of config keys, not {type(config).__name__}"
        )
    return config


def _check_targets(config: dict[str, Any], path: str | Path) -> None:
    """A ``_target_`` may stand only on a config group's node, where it picks an option and is never
    spliced in; anywhere else (inside a list, say) Hydra would build whatever it names."""
    for key, node in nodes(config, ""):
        if isinstance(node, dict) and "_target_" in node and not (key and _options(key.replace(".", "/"))):
            raise UserError(
                f"config_json={path}: {key or 'the top level'} has a _target_, but only a config group's "
                "node may have one (it picks the group's option); remove it"
            )


def _flat(key: str, value: Any, path: str | Path) -> list[str]:
    if key == "data_path":
        return ["data=text", f"data.path={hydra_value(value)}"]
    if key == "amp":  # -> precision; true means bf16, which needs no loss scaling
        if isinstance(value, bool):
            return [f"precision={'bf16' if value else 'fp32'}"]
        if value in ("bf16", "fp16"):
            return [f"precision={value}"]
        raise UserError(f'config_json={path}: amp must be false, true, "bf16" or "fp16", got {value!r}')
    if key in FLAT_VALUES:
        return [f"{FLAT_VALUES[key]}={hydra_value(value)}"]
    group = FLAT_GROUPS.get(key, key)
    if _options(group):  # a group name with its option: "model": "llama"
        if value not in _options(group):
            raise UserError(
                f"config_json={path}: {key}={value!r} is not an option of {group}; "
                f"choose one of {', '.join(_options(group))}"
            )
        return [f"{group}={value}"]
    return [f"{key}={hydra_value(value)}"]  # a top-level key of the nested layout: checked later


def _nested(node: dict[str, Any], prefix: str, path: str | Path) -> list[tuple[str, str]]:
    """(key, override) pairs for a nested node: its group option (from ``_target_``), then its values."""
    pairs = []
    group = prefix.replace(".", "/")
    if "_target_" in node and _options(group):
        matches = [o for o in _options(group) if _option_target(group, o) == node["_target_"]]
        if not matches:
            raise UserError(
                f"config_json={path}: {prefix}._target_ {node['_target_']} matches no option of {group} "
                f"({', '.join(_options(group))})"
            )
        pairs.append((f"{prefix}._target_", f"{group}={matches[0]}"))
    for key, value in node.items():
        if key in ("_target_", "_partial_"):  # set by the option chosen above
            continue
        if isinstance(value, dict):
            pairs += _nested(value, f"{prefix}.{key}", path)
        else:
            pairs.append((f"{prefix}.{key}", f"{prefix}.{key}={hydra_value(value)}"))
    return pairs


def _check_keys(pairs: list[tuple[str, str]], path: str | Path) -> None:
    """Every value the JSON sets must exist in the config its group choices compose to."""
    groups = [o for _, o in pairs if _options(_override_key(o, keep_slash=True))]
    with initialize_config_dir(version_base="1.3", config_dir=conf_dir()):
        cfg = compose("train", overrides=groups)
    for json_key, override in pairs:
        key = _override_key(override)
        if override in groups or key.startswith("hydra."):
            continue
        if not _has_key(cfg, key):
            sets = "" if key == json_key else f" (it sets {key})"
            raise UserError(f"config_json={path}: unknown key {json_key!r}{sets}; this config has no {key}")


def _has_key(cfg: DictConfig, dotted: str) -> bool:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return False
        node = node._get_node(part)
    return True


@functools.cache
def _options(group: str) -> tuple[str, ...]:
    """Option names of a config group (conf/<group>/*.yaml); empty when ``group`` is not one."""
    folder = Path(conf_dir()) / group
    return tuple(sorted(p.stem for p in folder.glob("*.yaml"))) if group and folder.is_dir() else ()


def _option_target(group: str, option: str) -> str | None:
    return OmegaConf.load(Path(conf_dir()) / group / f"{option}.yaml").get("_target_")


def _override_key(override: str, keep_slash: bool = False) -> str:
    """``+model/norm=rmsnorm`` -> ``model.norm`` (``model/norm`` with keep_slash)."""
    key = override.split("=", 1)[0].lstrip("+~")
    return key if keep_slash else key.replace("/", ".")


def _replaced(key: str, cli_keys: set[str]) -> bool:
    return any(key == c or key.startswith(c + ".") for c in cli_keys)
