"""No litter from failed commands: a run (or sweep) directory that this command made, and in which
training never started, is removed when the command fails.

``NewRunDirs`` is a Hydra callback (conf/train.yaml, before the run directory's lock) that notes, before
Hydra or TinyGPT writes anything, which run or sweep directory does not exist yet (or is empty), and
which of its parents this command will create (``runs/<date>/``). ``removes_unstarted_runs`` wraps the
training command: when it fails (a refused config, data that cannot be read, any error or Ctrl-C), each
noted directory in which no training step was recorded is removed with the parents made for it.

Training started once a directory holds a checkpoint, a line of ``metrics.jsonl``, or a sweep job's
``error.txt``; such a directory is kept whatever happens. A directory that held anything before this
command (a resume, say) is never noted, so never touched.
"""

import contextlib
import functools
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

STARTED = ("ckpt.pt", "ckpt_best.pt", "error.txt")  # a file any of these names means training began


@dataclass(frozen=True)
class NewDir:
    """A run or sweep directory this command makes: ``path``, and ``top``, the outermost folder of it
    that did not exist (``runs/``, ``runs/<date>``, or ``path`` itself); None if ``path`` existed empty."""

    path: Path
    top: Path | None


_noted: list[NewDir] = []


def note_new(path: Path) -> None:
    """Remember ``path`` if it does not exist yet, or is an empty folder, with the parents it needs."""
    path = path.absolute()
    if path.is_dir():
        if not any(path.iterdir()):
            _noted.append(NewDir(path, None))
        return
    if path.exists():
        return
    top = path
    while not top.parent.exists():
        top = top.parent
    _noted.append(NewDir(path, top))


class NewRunDirs(Callback):
    """Hydra callback: note the run directory (a single run) or the sweep directory before either is made."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        note_new(Path(config.hydra.run.dir))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        note_new(Path(config.hydra.sweep.dir))


def started(folder: Path) -> bool:
    """Whether training began in ``folder`` or any folder in it (a sweep's jobs)."""
    for path in folder.rglob("*"):
        if path.name in STARTED:
            return True
        if path.name == "metrics.jsonl" and path.is_file() and path.stat().st_size > 0:
            return True
    return False


def remove_unstarted() -> None:
    """Remove each noted directory in which training never started, and the parents made for it."""
    while _noted:
        new = _noted.pop()
        if not new.path.is_dir() or started(new.path):
            continue
        if new.top is None:  # the folder was there, empty: leave it as it was
            for entry in new.path.iterdir():
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            continue
        shutil.rmtree(new.path, ignore_errors=True)
        folder = new.path.parent
        while new.top in (folder, *folder.parents):  # runs/<date>/, runs/: only if nothing else is there
            with contextlib.suppress(OSError):
                folder.rmdir()
            folder = folder.parent


def removes_unstarted_runs(command: Callable[[], Any]) -> Callable[[], Any]:
    """Wrap a command's entry point: if it fails in any way (an exception, a non-zero exit, Ctrl-C),
    remove the directories it made in which training never started."""

    @functools.wraps(command)
    def wrapper() -> Any:
        try:
            return command()
        except SystemExit as exc:
            if exc.code not in (0, None):
                remove_unstarted()
            raise
        except BaseException:
            remove_unstarted()
            raise

    return wrapper
