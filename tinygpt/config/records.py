"""Records written by earlier versions, read as today's: the one place that knows how they differ.

A run's config (in its checkpoints and ``effective_config.json``) names the classes and functions it was
built from by import path. Version 0.1 kept the training parts in modules at the package's top level
(``tinygpt.optim.Lion``); they now live in ``tinygpt.training``. ``upgrade`` renames those paths, so an
old run resumes (its optimizer compared by path), its ``effective_config.json`` feeds ``config_json=``
again, and a report puts old and new runs side by side. Model and data paths did not move.
"""

from typing import Any

# old path prefix -> today's
MOVED = {
    f"tinygpt.{module}.": f"tinygpt.training.{module}."
    for module in ("optim", "schedule", "loggers", "rundir")
}


def upgrade_target(target: Any) -> Any:
    """Today's import path for a ``_target_`` a record holds (anything else comes back unchanged)."""
    if isinstance(target, str):
        for old, new in MOVED.items():
            if target.startswith(old):
                return new + target[len(old) :]
    return target


def upgrade(config: Any) -> Any:
    """A copy of a stored config (nested dicts and lists) with every ``_target_`` under today's path."""
    if isinstance(config, dict):
        return {
            key: upgrade_target(value) if key == "_target_" else upgrade(value)
            for key, value in config.items()
        }
    if isinstance(config, list):
        return [upgrade(item) for item in config]
    return config
