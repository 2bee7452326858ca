"""The components TinyGPT's config tree names, and the modules a user trusts beside them.

Every option file of a config group (``conf/model/norm/rmsnorm.yaml``, ``conf/optim/lion.yaml``, ...)
that names a ``_target_`` on its node defines one component. A config read back from a run directory
(a checkpoint, ``effective_config.json``, the overrides a resume composes again) is data: it may build
only these components, found by their exact name, or what lives in a module the user trusts explicitly
by listing it in the environment variable TINYGPT_TRUSTED_MODULES (comma-separated: ``mypkg,lab.norms``)
— for their own classes plugged in by ``_target_``. Nothing else it names is ever imported or called.
"""

import os
from functools import cache
from pathlib import Path

import yaml

from tinygpt.config.schema import conf_dir

TRUST_VARIABLE = "TINYGPT_TRUSTED_MODULES"
NOT_GROUPS = ("hydra", "experiment")  # folders of conf/ whose files are not components


def config_groups() -> list[str]:
    """The config groups of conf/, sorted (``data``, ``data/tokenizer``, ``logger``, ``model``, ...):
    every folder of option files but those of NOT_GROUPS."""
    root = Path(conf_dir())
    folders = {path.parent.relative_to(root).as_posix() for path in root.rglob("*.yaml")}
    return sorted(f for f in folders if f != "." and f.split("/")[0] not in NOT_GROUPS)


@cache
def known_components() -> dict[str, str]:
    """``_target_`` -> the config group that names it (``"tinygpt.model.RoPE"`` -> ``"model/pos"``)."""
    root = Path(conf_dir())
    found: dict[str, str] = {}
    for group in config_groups():
        for path in sorted((root / group).glob("*.yaml")):
            node = yaml.safe_load(path.read_text(encoding="utf-8"))
            target = node.get("_target_") if isinstance(node, dict) else None
            if isinstance(target, str):
                found.setdefault(target, group)
    return found


def group_targets(name: str, nested: bool = True) -> frozenset[str]:
    """The components of the group ``name`` and (``nested``) of the groups inside it: ``"model"`` gives
    the GPT and its norms, positions and MLPs."""
    return frozenset(
        target
        for target, group in known_components().items()
        if group == name or (nested and group.startswith(f"{name}/"))
    )


def trusted_modules() -> tuple[str, ...]:
    """The modules listed in TINYGPT_TRUSTED_MODULES (none when unset)."""
    listed = os.environ.get(TRUST_VARIABLE, "")
    return tuple(name.strip() for name in listed.split(",") if name.strip())


def is_trusted(target: str) -> bool:
    """Whether ``target`` lives in a module the user listed (the module itself or one inside it)."""
    return any(target.startswith(f"{module}.") for module in trusted_modules())
