"""How a Hydra job becomes a training run: a sweep's job (its failure recorded, the sweep going on)
and a torchrun rank (every rank in rank 0's run directory)."""

import contextlib
import logging
import math
import shutil
from pathlib import Path

from omegaconf import DictConfig

from tinygpt.errors import find_user_error
from tinygpt.runtime.distributed import (
    World,
    broadcast_from_main,
)
from tinygpt.training.loop import train

log = logging.getLogger("tinygpt")


class JobLabel(logging.Filter):
    """Puts ``[job N]`` before a sweep job's log lines: parallel jobs (joblib) interleave them."""

    def __init__(self, label: str):
        super().__init__()
        self.label = label

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = f"[{self.label}] {record.msg}"
        return True


def run_sweep_job(cfg: DictConfig, run_dir: Path, overrides: list[str], job: int | None = None) -> float:
    """One job of a multirun: a failure is written to ``error.txt`` and logged, and the sweep goes on;
    the returned NaN tells a sweeper (e.g. Optuna) that the trial failed."""
    label = JobLabel(f"job {job}")
    log.addFilter(label)
    try:
        return train(cfg, run_dir, overrides=overrides)["best_val_loss"]
    except Exception as exc:
        user_error = find_user_error(exc)
        message = str(user_error) if user_error else f"{type(exc).__name__}: {exc}"
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "error.txt").write_text(message + "\n", encoding="utf-8")
        log.error("job %s failed: %s", run_dir, message, exc_info=user_error is None)
        return math.nan
    finally:
        log.removeFilter(label)  # a joblib worker process runs several jobs


def shared_run_dir(own_dir: Path, world: World) -> Path:
    """Every rank's Hydra app made its own run dir (``${now:...}`` can differ by a second between
    ranks): all ranks use rank 0's, and a rank whose own dir differs removes what Hydra put there."""
    run_dir = Path(broadcast_from_main(str(own_dir), world))
    if run_dir != own_dir:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == own_dir:
                handler.close()
                logging.getLogger().removeHandler(handler)
        shutil.rmtree(own_dir / ".hydra", ignore_errors=True)
        for leftover in own_dir.glob("*.log"):
            leftover.unlink()
        with contextlib.suppress(OSError):
            own_dir.rmdir()  # only if nothing else is in it
    return run_dir
