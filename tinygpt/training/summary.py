"""The line that ends a run: steps, wall time, losses, speed, the run directory, and the command that
samples from it, written so that it works from where the user is (after ``make train`` the virtualenv
is not active: the command names its python, ``.venv/bin/python``, instead of a ``python`` that lacks
the packages)."""

import os
import shlex
import shutil
import sys
from pathlib import Path


def duration(seconds: float, compact: bool = False) -> str:
    """``12.3 s``, ``14 min 03 s``, ``2 h 05 min``; ``compact`` (a report's table): ``14m 03s``,
    ``2h 05m``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    h, m, s = ("h", "m", "s") if compact else (" h", " min", " s")
    return f"{minutes}{m} {secs:02d}{s}" if not hours else f"{hours}{h} {minutes:02d}{m}"


def shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies inside it, else absolute."""
    path = Path(path).absolute()
    cwd = Path.cwd()
    return str(path.relative_to(cwd)) if path.is_relative_to(cwd) else str(path)


def _same_python(found: str) -> bool:
    """Whether the ``python`` found on PATH is this interpreter."""
    if sys.prefix != sys.base_prefix:  # a virtualenv's python links to the base one: compare its folder
        return Path(found).absolute().parent.resolve() == Path(sys.executable).absolute().parent.resolve()
    try:
        return os.path.samefile(found, sys.executable)
    except OSError:
        return False


def python_command() -> str:
    """How to start this interpreter from the user's shell: ``python`` (or ``python3``) when that is it
    on PATH, else its path (``.venv/bin/python`` under the working directory)."""
    for name in ("python", "python3"):
        found = shutil.which(name)
        if found and _same_python(found):
            return name
    return shlex.quote(shown_path(Path(sys.executable)))


def summary_line(
    steps: int, run_dir: Path, val_loss: float, best_val_loss: float, tokens_per_s: float, wall_s: float
) -> str:
    """``done: 200 steps in 1 min 05 s | val loss ... | run dir runs/... | sample from it: ...``."""
    where = shown_path(run_dir)
    return (
        f"done: {steps} step{'' if steps == 1 else 's'} in {duration(wall_s)} | val loss {val_loss:.4f} "
        f"(best {best_val_loss:.4f}) | {tokens_per_s:.0f} tok/s | run dir {where} | sample from it: "
        f"{python_command()} -m tinygpt.generate {shlex.quote('run=' + where)}"
    )
