"""Declaring a command's keys once: ``key(default, "meaning", check=..., on_resume=...)`` builds a
dataclass field whose metadata the range checks, the resume rules, ``--help`` and docs/keys.md read.

A schema is a dataclass of such fields. Hydra composes it (it checks each value's type); what a type
cannot say (a range, a set of words, "text, not a number") is the field's ``check``.
"""

import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, make_dataclass
from enum import Enum
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

from tinygpt.errors import UserError

MEANING, CHECK, ON_RESUME = "help", "check", "on_resume"
CHANGEABLE = "changeable"  # on_resume: a resume may change the key; any other key is the run's recipe


@dataclass(frozen=True)
class Check:
    """A test a value must pass, and what it must be (``{key} must be {expected}, got {value!r}``)."""

    test: Callable[[Any], bool]
    expected: str

    def explain(self, key: str, value: Any) -> str:
        return f"{key} must be {self.expected}, got {value!r}"


@dataclass(frozen=True)
class TextCheck(Check):
    """Text from the command line, where Hydra reads bare numbers and booleans as such."""

    test: Callable[[Any], bool] = lambda v: isinstance(v, str)
    expected: str = "text"

    def explain(self, key: str, value: Any) -> str:
        return (
            f"{key}={value} was read as {type(value).__name__}, not text; quote it, e.g. '{key}=\"{value}\"'"
        )


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def one_of(choices: Iterable[str]) -> Check:
    names = tuple(str(c) for c in choices)
    return Check(lambda v: isinstance(v, str) and v in names, f"one of {', '.join(names)}")


POSITIVE = Check(lambda v: is_int(v) and v >= 1, "a positive integer")
BOOLEAN = Check(lambda v: isinstance(v, bool), "true or false")
TEXT = TextCheck()
OPTIONAL_TEXT = TextCheck(lambda v: v is None or isinstance(v, str))


def key(default: Any, meaning: str, check: Check | None = None, on_resume: str = "kept") -> Any:
    """A schema field: its default, its one-line meaning, what a value must be beyond its type, and
    whether a resume may change it (``on_resume="changeable"``) or keeps the run's own value."""
    metadata = {MEANING: meaning, CHECK: check, ON_RESUME: on_resume}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def default_of(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def checks_of(schema: type) -> dict[str, Check]:
    """key -> its check, for every field of ``schema`` that declares one."""
    return {f.name: f.metadata[CHECK] for f in fields(schema) if f.metadata.get(CHECK) is not None}


def changeable_on_resume(schema: type) -> tuple[str, ...]:
    """The keys a resume may change (declared ``on_resume="changeable"``)."""
    return tuple(f.name for f in fields(schema) if f.metadata.get(ON_RESUME) == CHANGEABLE)


def check_values(cfg: DictConfig, checks: dict[str, Check]) -> None:
    """Refuse the first value that fails its check (keys may be dotted: ``optim.lr``), in one line
    naming the key and what it must be."""
    for name, check in checks.items():
        value = OmegaConf.select(cfg, name)
        if not check.test(value):
            raise UserError(check.explain(name, value))


def check_given(cfg: DictConfig, schema: type, usage: str) -> None:
    """Refuse a key with no default (``???``) that the command line left unset."""
    for f in fields(schema):
        if default_of(f) is MISSING and f.metadata.get(MEANING) and OmegaConf.is_missing(cfg, f.name):
            raise UserError(f"{f.name} is required: {usage}")


def subset(schema: type, name: str, names: Iterable[str], doc: str) -> type:
    """A frozen dataclass of some of ``schema``'s fields, with their types and defaults."""
    chosen = [f for f in fields(schema) if f.name in set(names)]
    cls = make_dataclass(name, [(f.name, f.type, field(default=default_of(f))) for f in chosen], frozen=True)
    cls.__doc__ = doc
    return cls


def shown(value: Any) -> str:
    """A default as a user types it: null, true, 1e-3, text (quoted when YAML would misread it)."""
    if value is MISSING:
        return "???"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, str) and (value == "" or value.strip() != value or "\n" in value or ": " in value):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(shown(v) for v in value) + "]"
    return str(value)


def rows(schema: type) -> list[tuple[str, str, str]]:
    """(key, default, meaning) for every key of ``schema`` that has a meaning."""
    return [
        (f.name, shown(default_of(f)), f.metadata[MEANING]) for f in fields(schema) if f.metadata.get(MEANING)
    ]
