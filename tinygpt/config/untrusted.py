"""Configs read back from files (a checkpoint, a run's effective_config.json, ``config_json=``) are data.

They were written resolved, so nothing in them is ever interpolated again: an ``${...}`` there would
call a resolver when the config is resolved, and ``oc.create`` turns a string into a new node, with
its own ``_target_``, after every check of the file. So:

- ``check_data``: plain JSON values only, and no key or string, at any depth, holding ``${``;
- ``check_targets``: every ``_target_`` is defined inside SAFE_TARGETS (for configs that build a model),
  or is one of DATA_TARGETS, by name, for a data config;
- ``instantiate_data``: both checks, then both again on exactly what ``instantiate`` receives, which
  then has nothing left to resolve.
"""

from collections.abc import Callable, Iterator
from typing import Any

from hydra.utils import get_object, instantiate
from omegaconf import OmegaConf

from tinygpt.errors import UserError

# Where everything a stored model config instantiates must be defined. Narrower than "tinygpt." /
# "torch.": those also hold functions that write files (tinygpt.training.checkpoint.save_checkpoint) or fetch
# and run code (torch.hub.load).
SAFE_TARGETS = ("tinygpt.model.", "torch.nn.")
# The only targets a stored data config may name (tinygpt.eval reloads a run's data): the loaders of
# the ``data`` groups, exactly (tinygpt.data also holds functions that write). Its tokenizer node is
# never built: the run's saved tokenizer encodes the text.
DATA_TARGETS = frozenset(
    {"tinygpt.data.load_text_data", "tinygpt.data.load_embedded", "tinygpt.data.load_downloaded"}
)
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


def check_targets(config: Any, source: str, key: str = "", loaders: bool = False) -> None:
    """Refuse any ``_target_``, at any depth, not defined inside SAFE_TARGETS (or, with ``loaders``,
    not one of DATA_TARGETS): instantiating runs it."""
    allowed: Callable[[Any], bool] = DATA_TARGETS.__contains__ if loaders else is_safe_target
    what = (
        f"one of tinygpt.data's loaders ({', '.join(sorted(DATA_TARGETS))})"
        if loaders
        else f"what is defined inside {' or '.join(t.rstrip('.') for t in SAFE_TARGETS)}"
    )
    for dotted, node in nodes(config, key):
        if isinstance(node, dict) and "_target_" in node and not allowed(node["_target_"]):
            raise UserError(
                f"{source}: {dotted}._target_ asks to build {node['_target_']!r}; only {what} "
                "is built from a stored config"
            )


def is_safe_target(target: Any) -> bool:
    """The path must start inside SAFE_TARGETS (so looking it up imports nothing else) and what it
    names must be defined there: "tinygpt.model.gpt.torch.hub.load" reaches torch.hub through an import."""
    if not (isinstance(target, str) and target.startswith(SAFE_TARGETS)):
        return False
    try:
        module = getattr(get_object(target), "__module__", None) or ""
    except Exception:
        return False  # names nothing; refused rather than reported, it came from an untrusted file
    return f"{module}.".startswith(SAFE_TARGETS)


def instantiate_data(config: dict[str, Any], source: str, key: str, loaders: bool = False) -> Any:
    """``instantiate`` a stored config (``key``: where it sits in the file) that passes both checks;
    ``loaders``: a data config, whose targets must be DATA_TARGETS."""
    check_data(config, source, key)
    check_targets(config, source, key, loaders)
    node = OmegaConf.create(config)
    received = OmegaConf.to_container(node, resolve=False)  # what instantiate gets, read without resolving
    check_data(received, source, key)
    check_targets(received, source, key, loaders)
    return instantiate(node)  # it resolves its input: with no interpolation left, that changes nothing
