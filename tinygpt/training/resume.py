"""Resuming: which checkpoint a run continues from (``resume=true|false|auto``), the config it
continues with (the run's own recipe, plus what a resume may change), whether it may, and where a
diverged run's good weights are."""

import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from hydra import compose
from omegaconf import DictConfig, OmegaConf

from tinygpt.config.keys import changeable_on_resume
from tinygpt.config.overrides import flat_items, override_key
from tinygpt.config.schema import TrainSchema, resolved
from tinygpt.config.untrusted import check_data, check_override_targets
from tinygpt.errors import UserError
from tinygpt.training.checkpoint import load_checkpoint
from tinygpt.training.state import check_checkpoint

# What a resumed run must share with its checkpoint: the model, the optimizer's kind, the precision.
SAME_ON_RESUME = ("model.", "optim._target_", "precision")


def differences(old: dict[str, Any], new: dict[str, Any], relevant: Callable[[str], bool]) -> list[str]:
    """``key old -> new`` for every ``relevant`` key whose value differs between two configs."""
    old, new, unset = flat_items(old), flat_items(new), "(unset)"
    return [
        f"{key} {old.get(key, unset)} -> {new.get(key, unset)}"
        for key in sorted(old.keys() | new.keys())
        if relevant(key) and old.get(key, unset) != new.get(key, unset)
    ]


def check_same_experiment(saved: dict[str, Any], cfg: DictConfig, path: Path) -> None:
    """Refuse a resume that would change SAME_ON_RESUME, naming each key with its old and new value."""
    keep_own = cfg.precision == "auto"  # auto: the checkpoint's precision (training.job.settle_precision)
    changed = differences(
        saved,
        resolved(cfg),
        lambda key: key.startswith(SAME_ON_RESUME) and not (keep_own and key == "precision"),
    )
    if changed:
        raise UserError(
            f"cannot resume {path}: this run differs from the checkpoint's ({'; '.join(changed)}); resume "
            "with the checkpoint's model.*, optim= and precision, or start a new run directory"
        )


def checkpoint_to_resume(
    cfg: DictConfig, ckpt_path: Path, ckpt: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The checkpoint this run continues from, per ``resume``: true (it must exist), false (there must be
    none: a new run never overwrites one) or auto (continue if there is one, else start fresh). ``ckpt``:
    the one ``resumed_config`` already loaded from ``ckpt_path``, checked here like one loaded here."""
    exists = ckpt_path.exists()
    if cfg.resume is False and exists:
        raise UserError(
            f"{ckpt_path.parent} already holds a run (ckpt.pt); pass resume=true to continue it, "
            "or choose a new hydra.run.dir"
        )
    if cfg.resume is True and not exists:
        raise UserError(
            f"resume=true but there is no checkpoint at {ckpt_path} yet; use resume=auto to continue when "
            "there is one and start fresh when there is not"
        )
    if not exists or cfg.resume is False:
        return None
    if ckpt is None:
        ckpt = load_checkpoint(ckpt_path)
    check_checkpoint(ckpt, ckpt_path)
    check_same_experiment(ckpt["config"], cfg, ckpt_path)
    if cfg.ema_decay is not None and ckpt.get("ema") is None:
        raise UserError(f"cannot resume {ckpt_path} with ema_decay set: it was trained without EMA")
    return ckpt


def schedule_stretch(
    cfg: DictConfig, ckpt: dict[str, Any], lr_factor: Callable[[int, int], float]
) -> str | None:
    """One line when a resume's new ``max_steps`` moves the learning rate at the checkpoint's step (a
    cosine decay re-stretched over the new length): the lr there under the old and the new max_steps,
    and the schedule made for extending a run. None when the lr stays where it was."""
    saved = ckpt.get("config")
    old_max, step = saved.get("max_steps") if isinstance(saved, dict) else None, ckpt["step"]
    if not isinstance(old_max, int) or old_max == cfg.max_steps:
        return None
    before, after = (cfg.optim.lr * lr_factor(step, n) for n in (old_max, cfg.max_steps))
    if math.isclose(before, after, rel_tol=1e-9):
        return None
    name = str(cfg.schedule._target_).rsplit(".", 1)[-1]
    jump = f" ({after / before:.2f}x)" if before > 0 else ""
    hint = (
        "a wsd run extended before its decay began keeps its lr"
        if name == "wsd"
        else "schedule=wsd (flat until its final decay) is made for runs that may be extended"
    )
    return (
        f"max_steps {old_max} -> {cfg.max_steps} re-stretches the {name} schedule: the lr at step {step} "
        f"jumps from {before:.2e} to {after:.2e}{jump}; {hint}"
    )


def typed_run_dir(config: DictConfig) -> bool:
    """Whether the command line chose the run directory (``hydra.run.dir=...``); ``config``: with its
    ``hydra`` node, as a Hydra callback receives it."""
    typed = config.hydra.overrides.hydra
    return any(override_key(o).lstrip("+~") == "hydra.run.dir" for o in typed)


def latest_run(new_dir: Path) -> Path:
    """The run ``resume=true`` continues when no ``hydra.run.dir`` is given: of the run directories beside
    the one Hydra would make now (``runs/<date>/<time>/``), the one whose ckpt.pt was written last."""
    root = new_dir.parent.parent
    candidates = [p.parent for p in root.glob("*/*/ckpt.pt") if p.parent != new_dir]
    if not candidates:
        raise UserError(
            f"resume=true: no run under {root}/ has a checkpoint to continue; name the run with "
            "hydra.run.dir=DIR, or leave out resume=true to start a new one"
        )
    latest = max(candidates, key=lambda run: (run / "ckpt.pt").stat().st_mtime)
    others = (
        f" ({len(candidates) - 1} other run(s) there; name one with hydra.run.dir=DIR)"
        if candidates[1:]
        else ""
    )
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 says it for all
        print(
            f"resume=true without hydra.run.dir: resuming the latest run, {latest}{others}", file=sys.stderr
        )
    return latest


def stop_message(step: int, skipped: int, cfg: DictConfig, run_dir: Path, best_val: float) -> str:
    """Why a diverged run stopped, and which checkpoint is still good: ckpt.pt may already hold huge
    weights (the first bad update can be finite), but ckpt_best.pt was saved at the lowest val loss."""
    best = run_dir / "ckpt_best.pt"
    good = (
        f"the last good checkpoint is {best} (val loss {best_val:.4f}); {run_dir / 'ckpt.pt'} may hold "
        "diverged weights"
        if math.isfinite(best_val) and best.exists()
        else "no checkpoint of this run is known to be good"
    )
    return (
        f"stopped at step {step}: {skipped} non-finite losses or gradients in a row "
        f"(max_skipped_steps={cfg.max_skipped_steps}); {good}. "
        "Lower optim.lr, set grad_clip, or use precision=bf16/fp32"
    )


# What the command line may change when it resumes a run: the keys TrainSchema declares changeable on
# resume (how long it goes on, how often it reports, where it runs and how it logs), and Hydra's own
# node. Everything else is the run's recipe, kept from its checkpoint.
CHANGEABLE_ON_RESUME = (*changeable_on_resume(TrainSchema), "hydra")


def saved_overrides(ckpt: dict[str, Any], run_dir: Path) -> list[str]:
    """The command-line overrides the run was started with: the checkpoint's, or (for a checkpoint
    written before they were stored there) the run's .hydra/overrides.yaml."""
    source, overrides = f"{run_dir / 'ckpt.pt'}", ckpt.get("overrides")
    if overrides is None:
        path = run_dir / ".hydra" / "overrides.yaml"
        source = str(path)
        try:
            overrides = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else []
        except (OSError, yaml.YAMLError) as exc:
            raise UserError(f"cannot read {path} ({exc}); resume with the run's overrides typed out") from exc
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise UserError(f"{source}: the run's overrides are not a list of text; the file is damaged")
    check_data(overrides, source)  # stored data: an interpolation there is refused, never resolved
    check_override_targets(overrides, source)  # and it builds only TinyGPT's components (or trusted ones)
    per_command = ("hydra", "resume")  # where this command runs and how: never taken from the record
    return [o for o in overrides if override_key(o).split(".")[0] not in per_command]


def changeable(key: str) -> bool:
    """Whether a resume may change ``key``: one of CHANGEABLE_ON_RESUME, or a key inside one."""
    return any(key == name or key.startswith(f"{name}.") for name in CHANGEABLE_ON_RESUME)


def resumed_config(
    cfg: DictConfig, run_dir: Path, typed: list[str]
) -> tuple[DictConfig, list[str], dict[str, Any] | None]:
    """The config a resumed run continues with, the overrides that made it, and its checkpoint (read
    here once, for ``train`` to continue from).

    The config is the run's own recipe (its saved overrides composed again) with the overrides ``typed``
    on this command line on top; one that changes anything but CHANGEABLE_ON_RESUME from the config the
    checkpoint holds is refused, naming each key with its old and new value. Without a checkpoint to
    resume: ``cfg``, ``typed`` and None.
    """
    ckpt_path = run_dir / "ckpt.pt"
    if cfg.resume is False or not ckpt_path.exists():
        return cfg, typed, None
    ckpt = load_checkpoint(ckpt_path)
    check_checkpoint(ckpt, ckpt_path)
    saved = saved_overrides(ckpt, run_dir)
    after = compose("train", overrides=[*saved, *typed])
    changed = recipe_changes(ckpt["config"], after, typed)
    if changed:
        raise UserError(
            f"cannot resume {ckpt_path}: a resume continues the run's own recipe, and this command changes "
            f"it ({'; '.join(changed)}); drop those overrides, or start a new hydra.run.dir to change them"
        )
    retyped = {override_key(o) for o in typed}
    return after, [*(o for o in saved if override_key(o) not in retyped), *typed], ckpt


def recipe_changes(stored: dict[str, Any], cfg: DictConfig, typed: list[str]) -> list[str]:
    """``key old -> new`` for every key the ``typed`` overrides reach that a resume may not change and
    whose value in ``cfg`` is not the one in the checkpoint's config ``stored``. Not compared: a key the
    typed overrides do not reach (a default changed by a later version is not this command's doing), a
    key only one of them has, a value that is an interpolation (it follows the key it names, compared
    itself, or the environment: data.cache_dir from TINYGPT_CACHE), and with ``init_from``, the model
    and tokenizer keys, which come from the folder and are compared once it is read
    (check_same_experiment)."""
    old, new = flat_items(stored), flat_items(resolved(cfg))
    reached = typed_reach(typed, stored)
    from_folder = ("model.", "data.tokenizer.") if cfg.init_from is not None else ()
    return [
        f"{key} {old[key]} -> {new[key]}"
        for key in sorted(old.keys() & new.keys())
        if old[key] != new[key]
        and reached(key)
        and not changeable(key)
        and not key.startswith(from_folder)
        and not interpolated(cfg, key)
    ]


def typed_reach(typed: list[str], stored: dict[str, Any]) -> Callable[[str], bool]:
    """Which dotted keys the ``typed`` overrides can change: those under each one's key or group
    (``optim.lr``, ``model/norm`` -> ``model.norm.*``); every key when one is a group that writes at the
    top level (``experiment=...``: its name is no key of the config)."""
    prefixes = [override_key(o).lstrip("+~").replace("/", ".") for o in typed]
    prefixes = [p for p in prefixes if p.split(".")[0] != "hydra"]  # where this command runs: no record
    if any(prefix.split(".")[0] not in stored for prefix in prefixes):
        return lambda key: True
    return lambda key: any(key == p or key.startswith(f"{p}.") for p in prefixes)


def interpolated(cfg: DictConfig, key: str) -> bool:
    """Whether the dotted ``key`` of ``cfg`` holds an interpolation (``${...}``) rather than a value."""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return OmegaConf.is_config(node) and OmegaConf.is_interpolation(node, leaf)


def record_resume(run_dir: Path, step: int, typed: list[str]) -> None:
    """Append this resume to the run's history (``resumes.jsonl``): the run's record of how it was
    started (.hydra/) is never rewritten by a resume."""
    entry = {"time": time.time(), "from_step": step, "overrides": typed}
    with open(run_dir / "resumes.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
