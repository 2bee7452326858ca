"""Configs read back from files (a checkpoint, a run's effective_config.json, ``config_json=``) are data.

They were written resolved, so nothing in them is ever interpolated again: an ``${...}`` there would
call a resolver when the config is resolved, and ``oc.create`` turns a string into a new node, with
its own ``_target_``, after every check of the file. So:

- ``check_data``: plain JSON values only, and no key or string, at any depth, holding ``${``;
- ``check_targets``: every ``_target_`` is, by its exact name, a component of the config groups the
  config is for (``tinygpt.config.components``: the model's parts for a model config, the data loaders
  for a data config), or lives in a module the user trusts explicitly (TINYGPT_TRUSTED_MODULES);
- ``instantiate_data``: both checks, then both again on exactly what ``instantiate`` receives, which
  then has nothing left to resolve.
"""

from collections.abc import Iterator
from typing import Any

from hydra.utils import instantiate
from omegaconf import OmegaConf

from tinygpt.config.components import TRUST_VARIABLE, group_targets, is_trusted, known_components
from tinygpt.config.overrides import parse_override
from tinygpt.errors import UserError

SCALARS = (str, int, float, bool, type(None))
INTERPOLATION = "${"  # how OmegaConf tells an interpolation from a plain string


def nodes(node: Any, key: str) -> Iterator[tuple[str, Any]]:
    """Every node of a nested dict/list, the root first, with its dotted key (``model.betas[1]``)."""
    yield key, node
    if isinstance(node, dict):
        for name, child in node.items():
            yield from nodes(child, f"{key}.{name}" if key else str(name))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from nodes(child, f"{key}[{i}]")


def check_data(config: Any, source: str, key: str = "") -> None:
    """Refuse what a stored config cannot hold: non-JSON values, and an interpolation in a key or string."""
    for dotted, node in nodes(config, key):
        where = dotted or "the top level"
        if isinstance(node, dict):
            for name in node:
                if not isinstance(name, str):
                    raise UserError(f"{source}: {where} has a key that is not text ({name!r})")
                if INTERPOLATION in name:
                    refuse_interpolation(source, f"a key of {where}")
        elif isinstance(node, str) and INTERPOLATION in node:
            refuse_interpolation(source, where)
        elif not isinstance(node, (list, *SCALARS)):
            raise UserError(f"{source}: {where} is a {type(node).__name__}, not a JSON value")


def refuse_interpolation(source: str, where: str) -> None:
    raise UserError(
        f"{source}: {where} holds an interpolation ('${{'); a stored config is data, written resolved, "
        "and is never resolved again: do not use this file, or replace the value by a plain one"
    )


def check_targets(config: Any, source: str, key: str = "", group: str = "model") -> None:
    """Refuse any ``_target_``, at any depth, that is not a component of ``group`` (the model: its groups
    model and model/*; data: the loaders of conf/data/ alone, never a tokenizer's trainer) nor in a
    trusted module: instantiating runs it."""
    allowed = group_targets(group) if group == "model" else group_targets(group, nested=False)
    for dotted, node in nodes(config, key):
        if not isinstance(node, dict) or "_target_" not in node:
            continue
        target = node["_target_"]
        if target in allowed or (isinstance(target, str) and is_trusted(target)):
            continue
        raise UserError(
            f"{source}: {dotted}._target_ asks to build {target!r}, which is not one of TinyGPT's {group} "
            f"components (conf/{group}/); a stored config builds nothing else. If it is your own class "
            f"and you trust this run, list its module in {TRUST_VARIABLE}"
        )


def check_override_targets(overrides: list[str], source: str) -> None:
    """Refuse a stored override (a resume composes the run's saved command line again) that sets a
    ``_target_`` TinyGPT's config tree does not name, as a value or inside a dict value, unless the
    user trusts its module: composing and building it would import and call it."""
    for text in overrides:
        parsed = parse_override(text)
        if parsed is None:
            continue  # Hydra refuses it when it composes the overrides
        key, value = parsed.key_or_group, parsed.value()
        value = {"_target_": value} if key.split(".")[-1] == "_target_" else value
        for dotted, node in nodes(value, key.removesuffix("._target_")):
            target = node.get("_target_") if isinstance(node, dict) else None
            if target is not None and not (target in known_components() or is_trusted(str(target))):
                raise UserError(
                    f"{source}: the saved override {text!r} sets {dotted}._target_ to {target!r}, which is "
                    f"not one of TinyGPT's components; a resume builds nothing else. If it is your own "
                    f"class and you trust this run, list its module in {TRUST_VARIABLE}"
                )


def instantiate_data(config: dict[str, Any], source: str, key: str, group: str = "model") -> Any:
    """``instantiate`` a stored config (``key``: where it sits in the file) that passes both checks;
    ``group``: whose components it may build ("model", or "data" for a data loader)."""
    check_data(config, source, key)
    check_targets(config, source, key, group)
    node = OmegaConf.create(config)
    received = OmegaConf.to_container(node, resolve=False)  # what instantiate gets, read without resolving
    check_data(received, source, key)
    check_targets(received, source, key, group)
    return instantiate(node)  # it resolves its input: with no interpolation left, that changes nothing
