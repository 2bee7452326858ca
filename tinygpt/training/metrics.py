"""``metrics.jsonl``, a run's record of what it measured: one strict JSON object per log or eval event,
each with its ``step``. The loggers append to it, a resume cuts it back to its checkpoint, and the report
reads it; this module is the one that knows its format. No torch here: the report imports it.
"""

import contextlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tinygpt.runtime.files import atomic_write

FILE = "metrics.jsonl"


def metrics_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / FILE


def append_record(run_dir: str | Path, record: dict[str, Any]) -> None:
    """Add one record; a non-finite number (a diverged loss) is written null, so the line is strict JSON."""
    clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
    with open(metrics_path(run_dir), "a", encoding="utf-8") as f:
        f.write(json.dumps(clean, allow_nan=False) + "\n")


def parse_record(line: str) -> dict[str, Any] | None:
    """The record a line holds, or None if it is not a JSON object with an integer step (a line a kill
    cut short, or one written by something else)."""
    with contextlib.suppress(ValueError):
        record = json.loads(line)
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            return record
    return None


def truncate_records(run_dir: str | Path, last_step: int) -> None:
    """On resume, drop records a killed run logged after its last checkpoint (they are redone), and lines
    that are not records. The kept lines go to a new file that replaces the old one, so a kill during
    this never loses the history."""
    path = metrics_path(run_dir)
    if not path.exists():
        return
    with open(path, encoding="utf-8", errors="replace") as old, atomic_write(path, "w", "utf-8") as new:
        for line in old:
            record = parse_record(line)
            if record is not None and record["step"] <= last_step:
                new.write(line.rstrip("\n") + "\n")


def read_records(run_dir: str | Path, warn: Callable[[str], None]) -> list[dict[str, Any]]:
    """The records, in order; a line that is not one is skipped and ``warn``-ed about. A value written
    null (non-finite) is read back as NaN."""
    path = metrics_path(run_dir)
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        record = parse_record(line)
        if record is None:
            warn(f"{path}:{number} is not a metrics record; line skipped")
            continue
        records.append({k: math.nan if v is None else v for k, v in record.items()})
    return records
