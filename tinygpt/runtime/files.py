"""Replacing a file or a folder so that a reader finds the old one or the new one, never half of one;
and removing what a writer killed mid-way left behind.

A writer fills a temporary ``.<name>.<random>.tmp`` beside its target, flushes it to disk and renames
it over the target: a rename within one folder is atomic, so a crash, a kill or a full disk leaves the
previous file as it was. A writer that fails removes its temporary itself; one that is killed cannot,
and ``remove_leftovers`` deletes those later.
"""

import contextlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)

SUFFIX = ".tmp"
LEFTOVER = re.compile(r"\.(?P<name>.+)\.\w+\.tmp")  # .<target's name>.<random>.tmp


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """A new file to write ``path``'s content into (``mode`` "wb" or "w"); when the block ends it is
    flushed to disk and renamed over ``path``. If the block raises, ``path`` is left as it was."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; this is an ordinary output file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """``path.write_text(text)`` (UTF-8), atomically."""
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)


@contextlib.contextmanager
def atomic_folder(path: Path) -> Iterator[Path]:
    """A new folder to fill; when the block ends it is renamed to ``path``, which must not exist then.
    If the block raises, the folder is removed and ``path`` left as it was."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=SUFFIX, dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes the folder private; its content is shared like any output
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_leftovers(folder: Path, lock: Callable[[str], Path] | None = None) -> None:
    """Delete the temporary files and folders of writers in ``folder`` that died (killed, out of memory,
    power cut) before they could rename or remove them.

    Without ``lock``, the caller owns the folder (a run directory its run has locked): every temporary
    in it is a leftover. With ``lock`` (a target's name -> the lock file its writers hold from creating
    their temporary until it is renamed or removed), a temporary whose lock can be taken at once is a
    leftover, since the OS releases the lock of a process that dies; it is removed while holding the lock,
    so no new writer of that target starts meanwhile. The temporaries of a writer that is still going
    are left alone.
    """
    for path in folder.iterdir():
        match = LEFTOVER.fullmatch(path.name)
        if match is None:
            continue
        try:
            with FileLock(lock(match["name"]), timeout=0) if lock else contextlib.nullcontext():
                log.info("removing %s, left by a writer that did not finish", path)
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        except Timeout:
            continue
