"""The run directory as a resource one process owns: an exclusive lock.

A run directory belongs to one training process at a time. The lock is ``fcntl.flock`` on
``<run_dir>/.lock``: the kernel releases it when the process ends in any way, kill -9 included, so a
killed run never blocks its own resume, and it works across processes on one machine (and on
network filesystems that support flock). The ``filelock`` package is not used here on purpose: it can
fall back to a lock *file* that survives a killed process.

``RunDirGuard`` is a Hydra callback that creates the directory and takes the lock before Hydra writes
anything into it (``.hydra/``, the log file), so a second run started into a busy directory, or a run
directory that cannot be written, is refused with one line and nothing overwritten. ``train`` takes
the same lock again (a no-op in the process that already holds it), so the API is guarded too.
"""

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, read_write

from tinygpt.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not guarded
    fcntl = None

LOCK_NAME = ".lock"
_held: dict[Path, int] = {}  # lock path -> open file descriptor, for the locks this process holds


def acquire_run_dir(run_dir: Path) -> Path | None:
    """Create ``run_dir`` and lock it for this process; returns the lock's path, or None if this process
    already held it. A directory that cannot be created or is locked by another process is refused."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock_path = (run_dir / LOCK_NAME).resolve()
        if lock_path in _held:
            return None
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserError(
            f"cannot write the run directory {run_dir} ({exc.strerror}); set hydra.run.dir to a folder "
            "you can write to"
        ) from exc
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise UserError(
                f"{run_dir} is in use by another TinyGPT run (it holds {lock_path}); wait for that run to "
                "end, or choose another hydra.run.dir"
            ) from exc
    _held[lock_path] = fd
    return lock_path


def release_run_dir(lock_path: Path | None) -> None:
    """Give up a lock taken by ``acquire_run_dir`` (None: it was not taken there, nothing to do)."""
    fd = _held.pop(lock_path, None) if lock_path is not None else None
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock


@contextlib.contextmanager
def locked_run_dir(run_dir: Path, enabled: bool = True) -> Iterator[None]:
    """Hold the run directory's lock for the block (``enabled=False``: DDP ranks other than 0)."""
    lock_path = acquire_run_dir(run_dir) if enabled else None
    try:
        yield
    finally:
        release_run_dir(lock_path)


class RunDirGuard(Callback):
    """Hydra callback (conf/train.yaml ``hydra.callbacks``): lock a single run's directory before Hydra
    writes into it, keep Hydra from rewriting the record (.hydra/) of a run that already holds a
    checkpoint, and refuse an unwritable sweep directory before any job starts."""

    def __init__(self) -> None:
        self._lock_path: Path | None = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.get("resume") is True:
            self._find_latest_run(config)
        run_dir = Path(config.hydra.run.dir)
        if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 owns the run directory
            self._lock_path = _or_exit(acquire_run_dir, run_dir)
        if (run_dir / "ckpt.pt").exists():  # a resume, or a refused new run: .hydra/ keeps the first record
            with read_write(config.hydra):
                config.hydra.output_subdir = None

    @staticmethod
    def _find_latest_run(config: DictConfig) -> None:
        """``resume=true`` without a run directory: continue the latest run. Imported here, as torch comes
        with them: a new run imports torch in the command's main, where its start-up phase shows it."""
        from tinygpt.training.resume import latest_run, typed_run_dir

        if not typed_run_dir(config):
            with read_write(config.hydra):
                config.hydra.run.dir = str(_or_exit(latest_run, Path(config.hydra.run.dir)))

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        release_run_dir(self._lock_path)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _or_exit(_check_writable, Path(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = config.hydra.sweep.dir
        print(
            f"sweep done: {sweep}; compare its runs with: python -m tinygpt.report {sweep}", file=sys.stderr
        )


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / LOCK_NAME, "a"):
            pass
    except OSError as exc:
        raise UserError(
            f"cannot write the sweep directory {folder} ({exc.strerror}); set hydra.sweep.dir to a folder "
            "you can write to"
        ) from exc


def _or_exit(check: Callable[[Path], Any], path: Path) -> Any:
    """Run a check before Hydra's job starts; Hydra would print a UserError raised here as a traceback."""
    try:
        return check(path)
    except UserError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
