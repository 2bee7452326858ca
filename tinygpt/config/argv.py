"""The training command line before Hydra reads it: what users type out of habit, made to work or
answered in one line.

- The product's flat keys (``n_layer=6``, ``optimizer=lion``, ``data_path=books/``,
  ``learning_rate=1e-3``) are translated to their config keys, as in a JSON config.
- ``--flag value`` (argparse style, the product's original flags) is refused with the key=value form
  to type instead; Hydra's own flags (``--cfg``, ``-m``, ``--help``, ...) pass.
- ``+key=value`` adds a key nothing reads: refused ("did you mean key=value?").
- A key the config does not have is refused with the nearest keys and group options, instead of
  Hydra's advice to add it with ``+`` (which would then train, silently, without it).
"""

import difflib
import functools
import sys
from collections.abc import Callable
from typing import Any

from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from tinygpt.config.jsonconfig import (
    FLAT_GROUPS,
    FLAT_VALUES,
    config_loader,
    group_options,
    splice_json_config,
)
from tinygpt.config.overrides import flat_items
from tinygpt.errors import UserError, exit_on_user_error

# Hydra's own command-line flags, and those that take a value.
HYDRA_FLAGS = {
    "--help", "-h", "--hydra-help", "--version", "--cfg", "-c", "--resolve", "--package", "-p",
    "--run", "-r", "--multirun", "-m", "--shell-completion", "-sc", "--config-path", "-cp",
    "--config-name", "-cn", "--config-dir", "-cd", "--info", "-i", "--experimental-rerun",
}  # fmt: skip
TAKES_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
               "--config-dir", "-cd", "--info", "-i", "--experimental-rerun"}  # fmt: skip


def with_command_line(hydra_main: Callable[[], Any]) -> Callable[[], Any]:
    """Wrap a ``@hydra.main`` entry point: translate and check sys.argv (and splice ``config_json=``)
    before Hydra reads it."""

    @exit_on_user_error
    @functools.wraps(hydra_main)
    def main() -> Any:
        args = splice_json_config(translate_argv(sys.argv[1:]))
        check_keys(args)
        sys.argv[1:] = args
        return hydra_main()

    return main


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


def refuse_flag(flag: str, following: str | None) -> None:
    name, _, value = flag.lstrip("-").partition("=")
    value = value or (following if following and not following.startswith("-") else "VALUE")
    typed = translate(f"{name}={value}")
    meaning = f" (that is {' '.join(typed)})" if typed != [f"{name}={value}"] else ""
    raise UserError(
        f"{flag} is an argparse-style option; TinyGPT takes key=value overrides (Hydra): type "
        f"{name}={value}{meaning}"
    )


def translate(arg: str) -> list[str]:
    """One override: a flat key becomes its config key(s); ``+key`` is refused; others pass."""
    if "=" not in arg:
        return [arg]
    key, value = arg.split("=", 1)
    if key.startswith("+") and not key.lstrip("+").startswith("hydra"):
        raise UserError(
            f"{arg} adds a key, but TinyGPT reads only the keys its config defines; did you mean "
            f"{key.lstrip('+')}={value}? (python -m tinygpt.train --cfg job lists them)"
        )
    if key == "data_path":
        return ["data=text", f"data.path={value}"]
    if key in FLAT_VALUES:
        return [f"{FLAT_VALUES[key]}={value}"]
    if key in FLAT_GROUPS:
        return [f"{FLAT_GROUPS[key]}={value}"]
    return [arg]


def check_keys(overrides: list[str]) -> None:
    """Compose the overrides as the run will; a key the config lacks is refused with suggestions."""
    plain = [o for o in overrides if "=" in o and not o.startswith("-")]
    try:
        config_loader().load_configuration("train", plain, RunMode.RUN, from_shell=False)
    except HydraException as exc:
        cause = exc.__cause__
        if not isinstance(cause, ConfigKeyError | ConfigAttributeError) or not cause.full_key:
            return  # another problem: Hydra reports it itself, with its own words
        raise UserError(f"unknown key {cause.full_key}; {suggest(cause.full_key)}") from exc


def suggest(key: str) -> str:
    """The nearest keys of the default config and group options, as the sentence to show."""
    cfg = config_loader().load_configuration("train", [], RunMode.RUN, from_shell=False)
    keys = [
        k
        for k in flat_items(OmegaConf.to_container(cfg, resolve=False))
        if not k.startswith("hydra") and not k.endswith(("_target_", "_partial_"))
    ]
    groups = ("model", "model/norm", "model/pos", "model/mlp", "optim", "schedule", "data")
    names = (
        keys + [f"{g}={o}" for g in groups for o in group_options(g)] + list(FLAT_VALUES) + list(FLAT_GROUPS)
    )
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
    tail = key.rsplit(".", 1)[-1]
    close += [k for k in keys if k.rsplit(".", 1)[-1] == tail and k not in close][:2]
    if not close:
        return "python -m tinygpt.train --cfg job lists every key"
    return "did you mean " + " or ".join(close) + "?"
