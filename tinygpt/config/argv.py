"""Every command's line before Hydra reads it: ``--help`` from the command's schema, and what users type
out of habit, made to work or answered in one line.

- The product's flat keys (``n_layer=6``, ``optimizer=lion``, ``data_path=books/``,
  ``learning_rate=1e-3``) are translated to their config keys, as in a JSON config.
- ``--flag value`` (argparse style, the product's original flags) is refused with the key=value form
  to type instead; Hydra's own flags (``--cfg``, ``-m``, ``--help``, ...) pass.
- ``+key=value`` adds a key nothing reads: refused ("did you mean key=value?").
- A key the config does not have is refused with the nearest keys and group options, instead of
  Hydra's advice to add it with ``+`` (which would then train, silently, without it): typos.py.
- generate, eval and export: free text (``prompt=It's me``, ``prompt=The `` with its trailing space,
  a path with a comma) reaches the command exactly as typed, quoted for Hydra here; a value typed
  bare (``generate runs/...``) is answered with the key to give it.
"""

import functools
import shlex
import sys
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from tinygpt.config.commands import SCHEMAS
from tinygpt.config.help import help_text
from tinygpt.config.jsonconfig import (
    FLAT_GROUPS,
    FLAT_VALUES,
    group_options,
    splice_json_config,
)
from tinygpt.config.overrides import hydra_text, hydra_value, override_key, parse_override
from tinygpt.config.typos import check_keys, plus_refused
from tinygpt.errors import UserError, exit_on_user_error

# Hydra's own command-line flags, and those that take a value.
HYDRA_FLAGS = {
    "--help", "-h", "--hydra-help", "--version", "--cfg", "-c", "--resolve", "--package", "-p",
    "--run", "-r", "--multirun", "-m", "--shell-completion", "-sc", "--config-path", "-cp",
    "--config-name", "-cn", "--config-dir", "-cd", "--info", "-i", "--experimental-rerun",
}  # fmt: skip
TAKES_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
               "--config-dir", "-cd", "--info", "-i", "--experimental-rerun"}  # fmt: skip


def command_line(command: str, prepare: Callable[[list[str]], list[str]] = list) -> Callable:
    """Wrap a ``@hydra.main`` entry point of ``command``: ``--help`` prints the keys from its schema;
    otherwise ``prepare`` translates and checks sys.argv before Hydra reads it."""

    def wrap(hydra_main: Callable[[], Any]) -> Callable[[], Any]:
        @exit_on_user_error
        @functools.wraps(hydra_main)
        def main() -> Any:
            if {"--help", "-h"} & set(sys.argv[1:]):
                sys.stdout.write(help_text(command))
                return None
            sys.argv[1:] = prepare(sys.argv[1:])
            return hydra_main()

        return main

    return wrap


def training_args(args: list[str]) -> list[str]:
    """The training command line: flat keys translated, ``config_json=`` spliced in, keys checked."""
    args = splice_json_config(translate_argv(args))
    check_keys(args)
    return args


# The argparse options report and bench once had: option -> (its key, whether it takes a value).
REPORT_FLAGS = {"--out": ("out", True), "--logy": ("logy", False), "--seeds": ("seeds", False)}
BENCH_FLAGS = {
    "--steps": ("steps", True),
    "--warmup": ("warmup", True),
    "--json": ("json", True),
    "--peak-tflops": ("peak_tflops", True),
    "--vocab-size": ("vocab_size", True),
    "--eager-update": ("eager_update", False),
}


def flags_translated(args: list[str], command: str, flags: dict[str, tuple[str, bool]]) -> list[str]:
    """``args`` with a command's former argparse options as key=value (``--steps 50`` -> ``steps=50``,
    ``--logy`` -> ``logy=true``); Hydra's flags pass; any other option is refused in one line."""
    out, i = [], 0
    while i < len(args):
        name, eq, value = args[i].partition("=")
        if name in flags:
            key, takes_value = flags[name]
            if takes_value and not eq:
                if i + 1 == len(args):
                    raise UserError(f"{name} needs a value: type {key}=VALUE")
                i, value = i + 1, args[i + 1]
            out.append(f"{key}={hydra_value(value)}" if takes_value else f"{key}=true")
        elif args[i] in TAKES_VALUE:
            out += args[i : i + 2]
            i += 1
        elif name.startswith("-") and name not in HYDRA_FLAGS:
            raise UserError(
                f"unknown option {args[i]}; {command}'s settings, like training's, go as key=value overrides "
                f"(python -m tinygpt.{command} --help lists them)"
            )
        else:
            out.append(args[i])
        i += 1
    return out


def report_args(args: list[str]) -> list[str]:
    """The report's command line as Hydra reads it: the directories typed bare (``SWEEP_DIR``,
    ``RUN_DIR ...``) become ``paths=[...]``, its former options key=value."""
    keys = {"paths", "out", "logy", "seeds", "hydra"}
    args = flags_translated(args, "report", REPORT_FLAGS)
    paths, rest, i = [], [], 0
    while i < len(args):
        if args[i] in TAKES_VALUE:  # --cfg job: the value is not a directory
            rest += args[i : i + 2]
            i += 2
            continue
        known = args[i].startswith("-") or override_key(args[i]).lstrip("+~").split(".")[0] in keys
        (rest if known else paths).append(args[i])
        i += 1
    return [f"paths={hydra_value(paths)}", *rest] if paths else rest


def translate_argv(args: list[str]) -> list[str]:
    """``args`` with flat keys translated; argparse flags and ``+`` additions refused."""
    out, i = [], 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-") and arg.split("=", 1)[0] not in HYDRA_FLAGS:
            refuse_flag(arg, args[i + 1] if i + 1 < len(args) else None)
        if arg in TAKES_VALUE:
            out += args[i : i + 2]
            i += 2
            continue
        out += [arg] if arg.startswith("-") else translate(arg)
        i += 1
    return out


def refuse_flag(flag: str, following: str | None, translated: bool = True) -> None:
    """Refuse ``--key value`` with the ``key=value`` to type (quoted for the shell where it must be;
    ``translated``: with what a training flat key sets)."""
    name, _, value = flag.lstrip("-").partition("=")
    value = value or (following if following and not following.startswith("-") else "VALUE")
    typed = translate(f"{name}={value}") if translated else [f"{name}={value}"]
    meaning = f" (that is {' '.join(typed)})" if typed != [f"{name}={value}"] else ""
    raise UserError(
        f"{flag} is an argparse-style option; TinyGPT takes key=value overrides (Hydra): type "
        f"{shlex.quote(f'{name}={value}')}{meaning}"
    )


def translate(arg: str) -> list[str]:
    """One override: a flat key becomes its config key(s); ``+key`` is refused; others pass."""
    if "=" not in arg:
        return [arg]
    key, value = arg.split("=", 1)
    if key.startswith("+") and not key.lstrip("+").startswith("hydra"):
        raise UserError(plus_refused(key.lstrip("+"), value))
    if key == "data_path":
        return ["data=text", f"data.path={value}"]
    if key in FLAT_VALUES:
        return [f"{FLAT_VALUES[key]}={value}"]
    if key in FLAT_GROUPS:
        return [f"{FLAT_GROUPS[key]}={value}"]
    if "." in key and value in group_options(key.replace(".", "/")):  # data.tokenizer=bpe: the group's option
        return [f"{key.replace('.', '/')}={value}"]
    return [arg]


def command_args(command: str, literal: tuple[str, ...]) -> Callable[[list[str]], list[str]]:
    """The command line of a command with no training config (generate, eval, export): argparse habits
    and positional values refused with the key=value form, the free-text keys ``literal`` (a prompt, a
    path) passed to Hydra exactly as typed, ``+key`` and unknown keys refused with the nearest ones."""

    def prepare(args: list[str]) -> list[str]:
        out, i = [], 0
        while i < len(args):
            if args[i] in TAKES_VALUE:  # --cfg job
                out += args[i : i + 2]
                i += 2
                continue
            out.append(one_arg(args[i], args[i + 1] if i + 1 < len(args) else None, command, literal))
            i += 1
        check_keys(out, command)
        return out

    return prepare


def one_arg(arg: str, following: str | None, command: str, literal: tuple[str, ...]) -> str:
    """One word of the command line as Hydra should read it, or refused in one line."""
    habit = arg in ("--run", "-r") and "run" in literal and following and "=" not in following  # --run DIR
    if arg.startswith("-") and (habit or arg.split("=", 1)[0] not in HYDRA_FLAGS):
        refuse_flag(arg, following, translated=False)
    if arg.startswith("-"):
        return arg
    key, eq, value = arg.partition("=")
    if not eq:
        hint = f"did you mean {shlex.quote('run=' + arg)}? " if "run" in literal else ""
        raise UserError(
            f"{arg!r} has no key: {command} takes key=value settings; {hint}"
            f"(python -m tinygpt.{command} --help lists them)"
        )
    if key.startswith("+") and not key.lstrip("+").startswith("hydra"):
        raise UserError(plus_refused(key.lstrip("+"), value, command))
    if key in literal:
        return f"{key}={literal_value(value, nullable=key in optional_keys(command))}"
    return arg


def optional_keys(command: str) -> set[str]:
    """The keys of ``command`` whose default is null (``stop``, ``out``): ``key=null`` keeps meaning none."""
    return {f.name for f in fields(SCHEMAS[command]) if f.default is None}


def literal_value(typed: str, nullable: bool = False) -> str:
    """Text typed after ``key=`` as a Hydra value that reads back exactly that text: commas, quotes,
    ``!``, non-ASCII letters, a trailing space, ``${``, ``42``; ``null`` stays null where ``nullable``,
    and a value wholly in quotes (``'prompt="Hello, world!"'``, the form Hydra needed) is the text inside
    them."""
    if typed == "null" and nullable:
        return typed
    if len(typed) >= 2 and typed[0] == typed[-1] and typed[0] in "'\"":
        parsed = parse_override(f"k={typed}")
        if parsed is not None and isinstance(parsed.value(), str):
            typed = parsed.value()
    return hydra_text(typed)
