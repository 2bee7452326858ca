"""A typo on the command line answered with the nearest real key or group option, in the form to type
(``max_steps=1,2``, ``optim=adamw``), before Hydra would advise ``+max_step=1`` or list its search path.

Keys are checked by composing the overrides as the run will; a sweep's value (``-m max_step=1,2``) is
checked through its first value, and a group's every value (``-m optim=adam,lion``) by name. A training
command line that sets only the schema's own top-level keys (``max_steps=1 eval_interval=1``) is not
composed here: those keys are in every training config, and Hydra composes it next anyway.
"""

import difflib
from dataclasses import fields
from typing import Any

from hydra.errors import HydraException, MissingConfigException
from hydra.types import RunMode
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from tinygpt.config.jsonconfig import FLAT_GROUPS, FLAT_VALUES, config_loader, group_options
from tinygpt.config.overrides import flat_items, override_key, parse_override
from tinygpt.config.schema import TrainSchema
from tinygpt.errors import UserError

TRAINING = ("train", "bench")  # the commands with the training config, its groups and flat keys
# the training config's own top-level values (max_steps, seed, ...), its groups (model, data, ...) left out
SCHEMA_KEYS = {f.name for f in fields(TrainSchema) if f.type is not Any}


def check_keys(overrides: list[str], config: str = "train") -> None:
    """Compose the overrides as the run will; a key the config lacks, or a group option it lacks, is
    refused with the nearest ones."""
    plain = [o for o in overrides if "=" in o and not o.startswith("-")]
    check_group_options(plain)
    composable = [first for first in map(first_value, plain) if first is not None]
    if config == "train" and all(override.split("=", 1)[0] in SCHEMA_KEYS for override in composable):
        return  # keys every composed config holds (max_steps=1): composing could not find one unknown
    try:
        config_loader().load_configuration(config, composable, RunMode.RUN, from_shell=False)
    except MissingConfigException as exc:  # an option of a group inside another (model/norm=rms)
        group, _, option = str(exc.missing_cfg_file).rpartition("/")
        if group and exc.options:
            raise UserError(option_typo(group, option, exc.options)) from exc
    except HydraException as exc:
        cause = exc.__cause__
        if not isinstance(cause, ConfigKeyError | ConfigAttributeError) or not cause.full_key:
            return  # another problem: Hydra reports it itself, with its own words
        typed = next((o for o in plain if override_key(o).replace("/", ".") == cause.full_key), None)
        value = typed.split("=", 1)[1] if typed else None
        choices = [o for o in composable if "." not in override_key(o)]  # data=shards: suggest its keys
        hint = suggest(cause.full_key, config, choices, value)
        raise UserError(f"unknown key {cause.full_key}; {hint}") from exc


def first_value(override: str) -> str | None:
    """``key=1,2`` -> ``key=1`` (a sweep's first value composes as the sweep's jobs do); an override
    Hydra cannot parse, or a sweep it cannot list alone (``glob(*)``), as typed or None."""
    parsed = parse_override(override)
    if parsed is None or not parsed.is_sweep_override():
        return override
    try:
        first = next(iter(parsed.sweep_string_iterator()))
    except (HydraException, StopIteration, ValueError):
        return None
    return override.split("=", 1)[0] + "=" + first


def check_group_options(overrides: list[str]) -> None:
    """Refuse an option a group lacks (``optim=adam``, ``model.pos=rop``; each of ``optim=adam,lion``)."""
    for override in overrides:
        parsed = parse_override(override)
        if parsed is None or parsed.is_delete():
            continue
        group = parsed.key_or_group.replace(".", "/")  # model.pos=rop: a group typed with a dot
        options = group_options(group)
        try:
            values = list(parsed.sweep_string_iterator()) if parsed.is_sweep_override() else [parsed.value()]
        except HydraException:  # glob(*): Hydra lists the options itself
            continue
        for value in values:
            if options and isinstance(value, str) and value not in options:
                raise UserError(option_typo(group, value, options))


def option_typo(group: str, option: str, options: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(option, options, n=1, cutoff=0.5)
    hint = f"did you mean {group}={close[0]}? " if close else ""
    return f"{group}={option}: {group} has no option {option}; {hint}(options: {', '.join(options)})"


def plus_refused(key: str, value: str, config: str = "train") -> str:
    """The answer to ``+key=value``: TinyGPT reads only its config's keys, so the nearest real key."""
    flat = (*FLAT_VALUES, *FLAT_GROUPS) if config in TRAINING else ()
    known = key in flat or key in config_keys(config)
    hint = f"did you mean {key}={value}?" if known else suggest(key, config, value=value)
    return f"+{key}={value} adds a key, but TinyGPT reads only the keys its config defines; {hint}"


def config_keys(config: str, choices: list[str] | None = None) -> list[str]:
    """The dotted keys of ``config`` composed with the group ``choices`` (those of the default groups
    if the choices do not compose), less Hydra's and the ``_target_``s."""
    try:
        cfg = config_loader().load_configuration(config, choices or [], RunMode.RUN, from_shell=False)
    except HydraException:
        cfg = config_loader().load_configuration(config, [], RunMode.RUN, from_shell=False)
    return [
        k
        for k in flat_items(OmegaConf.to_container(cfg, resolve=False))
        if not k.startswith("hydra") and not k.endswith(("_target_", "_partial_"))
    ]


def suggest(
    key: str, config: str = "train", choices: list[str] | None = None, value: str | None = None
) -> str:
    """The nearest keys of the config (with the group ``choices`` typed, e.g. ``data=shards``), and for
    training the group options and flat keys, as the sentence to show; a key comes with ``value``."""
    keys = config_keys(config, choices)
    names = list(keys)
    if config in TRAINING:
        groups = ("model", "model/norm", "model/pos", "model/mlp", "optim", "schedule", "data")
        names += [f"{g}={o}" for g in groups for o in group_options(g)]
        names += list(FLAT_VALUES) + list(FLAT_GROUPS)
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
    tail = key.rsplit(".", 1)[-1]
    close += [k for k in keys if k.rsplit(".", 1)[-1] == tail and k not in close][:2]
    if not close:
        return f"python -m tinygpt.{config} --help lists every key"
    typed = [name if "=" in name or value is None else f"{name}={value}" for name in close]
    return "did you mean " + " or ".join(typed) + "?"
