"""Records written by earlier versions, read as today's: the one place that knows how they differ.

A run's config (in its checkpoints and ``effective_config.json``) names the classes and functions it was
built from by import path. Version 0.1 kept the training parts in modules at the package's top level
(``tinygpt.optim.Lion``); they now live in ``tinygpt.training``. ``upgrade`` renames those paths, so an
old run resumes (its optimizer compared by path), its ``effective_config.json`` feeds ``config_json=``
again, and a report puts old and new runs side by side. Model and data paths did not move.

A checkpoint's or a report's record also gets the model keys added since (``with_added_model_keys``),
at the value that computes what the old model computed: an old run then resumes against today's composed
config without a difference to refuse. A JSON config is left as written (composing it fills them in).
"""

from typing import Any

# old path prefix -> today's
MOVED = {
    f"tinygpt.{module}.": f"tinygpt.training.{module}."
    for module in ("optim", "schedule", "loggers", "rundir")
}

# model keys added later -> the value an older run's model had (it had no such option)
MODEL_ADDED = {
    "doc_mask": False,
    "zero_init_proj": False,
    "value_embeds": 0,
    "unet_skips": False,
    "window_pattern": None,
    "short_window": None,
    "logit_softcap": None,
    "fp8_head": False,
}
GPT_TARGET = "tinygpt.model.GPT"


def upgrade_target(target: Any) -> Any:
    """Today's import path for a ``_target_`` a record holds (anything else comes back unchanged)."""
    if isinstance(target, str):
        for old, new in MOVED.items():
            if target.startswith(old):
                return new + target[len(old) :]
    return target


def upgrade(config: Any) -> Any:
    """A copy of a stored config (nested dicts and lists) with every ``_target_`` under today's path."""
    return upgrade_paths(config)


def with_added_model_keys(config: Any) -> Any:
    """``config`` (a whole run's) with the ``MODEL_ADDED`` keys its GPT config lacks, at their old values."""
    model = config.get("model") if isinstance(config, dict) else None
    if isinstance(model, dict) and model.get("_target_") == GPT_TARGET:
        return {**config, "model": {**MODEL_ADDED, **model}}
    return config


def upgrade_paths(config: Any) -> Any:
    """A copy of config (nested dicts and lists) with every ``_target_`` under today's path."""
    if isinstance(config, dict):
        return {
            key: upgrade_target(value) if key == "_target_" else upgrade_paths(value)
            for key, value in config.items()
        }
    if isinstance(config, list):
        return [upgrade_paths(item) for item in config]
    return config
