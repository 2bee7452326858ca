"""The bookkeeping of a folder that prepare writes: whether it is new, being prepared or prepared, and
the progress record that lets a killed run continue.

While a folder is being prepared it holds ``progress.json``, rewritten atomically after each shard:
the settings, the source files (path, size, modification time), the tokenizer's sha256, the shards
written and where in the input the next one starts. ``meta.json`` (data/shards.py), written last,
marks the folder prepared; the progress record is then removed. One prepare at a time writes a
folder (``.prepare.lock``, released by the OS if the process dies).
"""

import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from tinygpt.data.shards import META, ShardInfo, read_meta
from tinygpt.errors import UserError
from tinygpt.runtime.files import write_text

PROGRESS = "progress.json"
LOCK = ".prepare.lock"
FOLDER_FIX = "use another out, or delete it to prepare it again"


def file_stats(files: list[Path]) -> list[dict[str, Any]]:
    """What says that an input file is still the one a run started on."""
    return [
        {"path": str(f.resolve()), "bytes": f.stat().st_size, "mtime_ns": f.stat().st_mtime_ns} for f in files
    ]


def is_prepared(out: Path, settings: dict, stats: list[dict]) -> bool:
    """Whether ``out`` is already prepared; a UserError if it was, with other settings or files."""
    if not (out / META).exists():
        return False
    meta = read_meta(out)
    had = [{k: s.get(k) for k in ("path", "bytes")} for s in meta.sources]
    check_same(out, meta.settings, settings, had, [{k: s[k] for k in ("path", "bytes")} for s in stats])
    return True


def check_same(out: Path, had: dict, wanted: dict, had_sources: list, sources: list) -> None:
    """Refuse to continue or reuse ``out`` for other settings or other input files."""
    changed = [f"{k}={had.get(k)!r} (now {wanted[k]!r})" for k in wanted if had.get(k) != wanted[k]]
    if changed:
        raise UserError(f"out {out} was prepared with other settings: {', '.join(changed)}; {FOLDER_FIX}")
    if had_sources != sources:
        raise UserError(
            f"out {out} was prepared from other input files (or they changed since); {FOLDER_FIX}"
        )


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold ``out``'s lock; a folder of someone else's files is refused before the lock file is made."""
    if read_progress(out) is None and any(not p.name.startswith(".") for p in out.iterdir()):
        raise UserError(f"out {out} is a folder that holds files but no prepare progress; {FOLDER_FIX}")
    try:
        with FileLock(out / LOCK, timeout=0):
            yield
    except Timeout as exc:
        raise UserError(f"another prepare is writing {out}; wait for it, or use another out") from exc


def start_or_continue(out: Path, settings: dict, stats: list[dict]) -> dict:
    """The progress record of ``out``: the one an earlier run left (same settings and files), or a new
    one if the folder holds nothing yet (hidden files aside: the lock, a killed writer's temporaries)."""
    progress = read_progress(out)
    if progress is None:
        if any(not p.name.startswith(".") for p in out.iterdir()):
            raise UserError(f"out {out} is a folder that holds files but no prepare progress; {FOLDER_FIX}")
        progress = {"settings": settings, "sources": stats, "tokenizer_sha256": None}
        write_progress(out, progress)
    check_same(out, progress["settings"], settings, progress["sources"], stats)
    return progress


def read_progress(out: Path) -> dict | None:
    path = out / PROGRESS
    if not path.exists():
        return None
    try:
        progress = json.loads(path.read_text(encoding="utf-8"))
        progress["shards"] = [ShardInfo(**s) for s in progress.get("shards", [])]
        return progress
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise UserError(f"cannot read {path} ({exc}); delete {out} to prepare it again") from exc


def write_progress(out: Path, progress: dict) -> None:
    shards = [asdict(s) for s in progress.get("shards", [])]
    write_text(out / PROGRESS, json.dumps({**progress, "shards": shards}, indent=1) + "\n")
