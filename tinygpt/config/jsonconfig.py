"""JSON run configs: ``python -m tinygpt.train config_json=FILE [overrides]``.

The file's keys become Hydra override strings, spliced into the command line where ``config_json=``
stood, before Hydra parses it. A file may use the product's flat keys (FLAT_VALUES, FLAT_GROUPS,
``data_path``, ``amp``; any other top-level key sets itself), group names with an option
(``{"model": "llama"}``), and the nested layout of a run's ``effective_config.json``, so feeding one
back reproduces that run: a group's option is found from its ``_target_``, every value set explicitly.

Hydra answers every question about the config: its config loader lists a group's options and composes
each to tell its ``_target_``s; composing the translated overrides checks every key (Hydra names the
key it cannot set, we name the JSON key that set it); its override parser (``tinygpt.config.overrides``)
says which key an override sets, so a key or group set on the command line drops the JSON's value
for it, or the JSON's choice of that group and everything the JSON sets inside it.

The file is data (``tinygpt.config.untrusted``): an interpolation ``${...}`` anywhere in it is refused, as
is a ``_target_`` anywhere but on a config group's node (where it only picks the option).
"""

import difflib
import functools
import json
from pathlib import Path
from typing import Any

from hydra import initialize_config_dir
from hydra.core.config_loader import ConfigLoader
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.types import OverrideType
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from tinygpt.config.overrides import flat_items, hydra_value, override_key, parse_override
from tinygpt.config.records import upgrade
from tinygpt.config.schema import conf_dir
from tinygpt.config.untrusted import check_data, nodes
from tinygpt.errors import UserError

# Flat key -> the config key it sets. Any other top-level key (max_steps, seed, ...) sets itself.
FLAT_VALUES: dict[str, str] = {
    "out_dir": "hydra.run.dir",
    "bpe_vocab_size": "data.tokenizer.vocab_size",
    "n_layer": "model.n_layer",
    "n_head": "model.n_head",
    "n_kv_head": "model.n_kv_head",
    "n_embd": "model.n_embd",
    "block_size": "model.block_size",
    "dropout": "model.dropout",
    "bias": "model.bias",
    "tie_weights": "model.tie_weights",
    "sliding_window": "model.sliding_window",
    "parallel_block": "model.parallel_block",
    "qk_norm": "model.qk_norm",
    "learning_rate": "optim.lr",
    "weight_decay": "optim.weight_decay",
    "warmup_steps": "schedule.warmup_steps",
}
# Flat key -> the config group whose option it chooses. Any group's name chooses that group's option.
FLAT_GROUPS: dict[str, str] = {
    "tokenizer": "data/tokenizer",
    "norm": "model/norm",
    "mlp": "model/mlp",
    "pos_encoding": "model/pos",
    "optimizer": "optim",
}


def json_overrides(path: str | Path) -> list[str]:
    """The Hydra overrides equivalent to the JSON config at ``path``, checked by composing them."""
    config = _read_json(path)
    check_data(config, f"config_json={path}")
    _check_targets(config, path)
    pairs = translate(config, path)
    overrides = [override for _, override in pairs]
    check_data(overrides, f"config_json={path}", "overrides")  # what Hydra reads, checked again
    _compose(pairs, path)
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
    the other command-line overrides replace (keys compared as Hydra's parser reads them)."""
    found = [a for a in args if a.startswith("config_json=")]
    if not found:
        return args
    if len(found) > 1:
        raise UserError("config_json= is given more than once; merge the files into one")
    cli_keys = {_dotted_key(a) for a in args if "=" in a and not a.startswith("-") and a not in found}
    kept = [o for o in json_overrides(found[0].split("=", 1)[1]) if not _within(_dotted_key(o), cli_keys)]
    at = args.index(found[0])
    return [*args[:at], *kept, *args[at + 1 :]]


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
    return upgrade(config)  # a run's effective_config.json written by an earlier version reads as today's


def _check_targets(config: dict[str, Any], path: str | Path) -> None:
    """A ``_target_`` may stand only on a config group's node, where it picks an option and is never
    spliced in; anywhere else (inside a list, say) Hydra would build whatever it names."""
    for key in _targets(config):
        if not (key and group_options(key.replace(".", "/"))):
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
    if group_options(group):  # a group name with its option: "model": "llama"
        if value not in group_options(group):
            raise UserError(
                f"config_json={path}: {key}={value!r} is not an option of {group}; "
                f"choose one of {', '.join(group_options(group))}"
            )
        return [f"{group}={value}"]
    return [f"{key}={hydra_value(value)}"]  # a top-level key of the nested layout: checked later


def _nested(node: dict[str, Any], prefix: str, path: str | Path) -> list[tuple[str, str]]:
    """(key, override) pairs for a nested node: its group option (from ``_target_``), then its values."""
    pairs = []
    group = prefix.replace(".", "/")
    if "_target_" in node and group_options(group):
        pairs.append((f"{prefix}._target_", f"{group}={_option_for(node, group, path)}"))
    for key, value in node.items():
        if key in ("_target_", "_partial_"):  # set by the option chosen above
            continue
        if isinstance(value, dict):
            pairs += _nested(value, f"{prefix}.{key}", path)
        else:
            pairs.append((f"{prefix}.{key}", f"{prefix}.{key}={hydra_value(value)}"))
    return pairs


def _option_for(node: dict[str, Any], group: str, path: str | Path) -> str:
    """The option of ``group`` whose node, as Hydra composes it, has the ``_target_`` of ``node`` and
    agrees with it on the most nested ``_target_``s (``llama`` over ``gpt`` for RMSNorm, RoPE and
    SwiGLU); the first in Hydra's order on a tie, the nested layout setting the rest anyway."""
    wanted = _targets(node)
    matches = [o for o in group_options(group) if _option_targets(group, o).get("") == wanted[""]]
    if not matches:
        raise UserError(
            f"config_json={path}: {group.replace('/', '.')}._target_ {wanted['']} matches no option of "
            f"{group} ({', '.join(group_options(group))})"
        )
    return max(matches, key=lambda o: sum(wanted.get(k) == t for k, t in _option_targets(group, o).items()))


def _targets(node: Any) -> dict[str, Any]:
    """The ``_target_`` of every dict in ``node``, by dotted key ("" for ``node`` itself)."""
    return {key: n["_target_"] for key, n in nodes(node, "") if isinstance(n, dict) and "_target_" in n}


@functools.cache
def _option_targets(group: str, option: str) -> dict[str, Any]:
    """The ``_target_``s of one option, composed by Hydra (so ``llama`` has the ones its defaults give it);
    none for an option that composes only inside the whole config (Hydra's own) or is ``_global_``."""
    try:
        cfg = config_loader().load_configuration(f"{group}/{option}", [], RunMode.RUN, from_shell=False)
    except HydraException:
        return {}
    node = OmegaConf.select(cfg, group.replace("/", "."))
    return _targets(OmegaConf.to_container(node, resolve=False)) if isinstance(node, DictConfig) else {}


def _compose(pairs: list[tuple[str, str]], path: str | Path) -> None:
    """Compose the overrides as the run will, so Hydra checks every key; its error names the config
    key it cannot set, reported here under the JSON's name for it. A JSON key is a plain key: Hydra's
    ``+``, ``++``, ``~`` or ``@package`` would add, delete or move config nodes."""
    for json_key, override in pairs:
        parsed = parse_override(override)
        if not parsed or parsed.type != OverrideType.CHANGE or parsed.package is not None:
            raise UserError(f"config_json={path}: unknown key {json_key!r}; a key has no Hydra +, ~ or @")
    try:
        config_loader().load_configuration("train", [o for _, o in pairs], RunMode.RUN, from_shell=False)
    except HydraException as exc:
        cause = exc.__cause__
        if isinstance(cause, ConfigKeyError | ConfigAttributeError):  # a key the config does not have
            for json_key, override in pairs:
                key = _dotted_key(override)
                if _within(key, {cause.full_key}):
                    sets = "" if key == json_key else f" (it sets {key})"
                    message = f"unknown key {json_key!r}{sets}; this config has no {cause.full_key}"
                    message += _nearest(json_key)
                    raise UserError(f"config_json={path}: {message}") from exc
        detail = f"{exc}: {cause}" if cause else str(exc)
        raise UserError(f"config_json={path}: {' '.join(detail.split())}") from exc


def _nearest(json_key: str) -> str:
    """``; did you mean n_layer?`` for a key beside the JSON's (same node: a flat key or top-level
    key for a top-level one, ``model.n_layer`` for ``model.n_layers``); empty if none is close."""
    parent, _, name = json_key.rpartition(".")
    cfg = config_loader().load_configuration("train", [], RunMode.RUN, from_shell=False)
    keys = [k for k in flat_items(OmegaConf.to_container(cfg, resolve=False)) if not k.startswith("hydra")]
    siblings = {k.rpartition(".")[2] for k in keys if k.rpartition(".")[0] == parent and k[-1] != "_"}
    if not parent:
        siblings |= {*FLAT_VALUES, *FLAT_GROUPS, "data_path", "amp", *(k.split(".")[0] for k in keys)}
    close = difflib.get_close_matches(name, sorted(siblings), n=1, cutoff=0.75)
    return f"; did you mean {parent + '.' if parent else ''}{close[0]}?" if close else ""


@functools.cache
def config_loader() -> ConfigLoader:
    """Hydra's config loader for conf/: the search path ``@hydra.main`` composes from, Hydra's own
    groups (hydra/launcher, ...) included."""
    with initialize_config_dir(version_base="1.3", config_dir=conf_dir()):
        return GlobalHydra.instance().config_loader()


@functools.cache
def group_options(group: str) -> tuple[str, ...]:
    """Option names of a config group, from Hydra's config repository; empty when ``group`` is not one."""
    return tuple(config_loader().get_group_options(group)) if group else ()


def _dotted_key(override: str) -> str:
    """``+model/norm=rmsnorm`` -> ``model.norm``: groups and keys compared in one notation."""
    return override_key(override).replace("/", ".")


def _within(key: str, roots: set[str]) -> bool:
    """Whether ``key`` is one of ``roots`` or inside one."""
    return any(key == root or key.startswith(f"{root}.") for root in roots)
