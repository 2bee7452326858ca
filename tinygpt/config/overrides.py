"""Hydra's override grammar in one place: what an override string (``+model/norm=rmsnorm``,
``~optim.lr``, ``optim.lr=1e-3,1e-2``) sets, read by Hydra's own parser, a value written in it, and the
dotted keys of a nested config as an override names them."""

import re
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException


def parse_override(text: str) -> Override | None:
    """``text`` as Hydra parses it (key or group, package, ``+``/``++``/``~``, value); None if it cannot."""
    try:
        return OverridesParser.create().parse_override(text)
    except HydraException:
        return None


def override_key(text: str) -> str:
    """The key or group an override sets: ``+model.x=1`` and ``~model.x`` -> ``model.x``,
    ``model/norm=rmsnorm`` -> ``model/norm``; text Hydra cannot parse is its own key."""
    parsed = parse_override(text)
    return parsed.key_or_group if parsed else text


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


def hydra_text(text: str) -> str:
    """``text`` as a quoted Hydra value that reads back as exactly ``text``: unlike ``hydra_value``, an
    interpolation's ``${`` is escaped too (a prompt is text, never a reference to a key)."""
    quoted = hydra_value(text)
    return re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", quoted)


def flat_items(node: Any, prefix: str = "") -> dict[str, Any]:
    """{"model.n_layer": 4, ...} for a nested config (dicts only; lists are values)."""
    if not isinstance(node, dict):
        return {prefix: node}
    items: dict[str, Any] = {}
    for key, value in node.items():
        items.update(flat_items(value, f"{prefix}.{key}" if prefix else str(key)))
    return items
