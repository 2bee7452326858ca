"""Progress display: a rich progress bar on a terminal, plain log lines everywhere else."""

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

STEP_LINE = "tinygpt_step_line"  # log-record flag: a per-step line the live bar already shows


class _ConsoleHandler(logging.Handler):
    """Prints log records through the progress bar's console, so lines scroll above the live bar."""

    def __init__(self, console: Console, formatter: logging.Formatter | None):
        super().__init__()
        self.console = console
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, STEP_LINE, False):
            return
        self.console.print(self.format(record), markup=False, highlight=False, soft_wrap=True)


def _terminal_handlers() -> list[logging.StreamHandler]:
    return [
        h
        for h in logging.getLogger().handlers
        if type(h) is logging.StreamHandler and getattr(h.stream, "isatty", lambda: False)()
    ]


@contextmanager
def progress_bar(total: int, start: int, enabled: bool) -> Iterator[Callable[[int, str], None] | None]:
    """Yield ``update(step, stats)`` driving a live bar when stderr is a terminal, else None.

    While the bar is live, log lines that would go to the terminal are routed above it.
    """
    if not (enabled and sys.stderr.isatty()):
        yield None
        return
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )
    task = progress.add_task("train", total=total, completed=start, stats="")
    root = logging.getLogger()
    replaced = _terminal_handlers()
    routed = _ConsoleHandler(console, replaced[0].formatter if replaced else None)
    for h in replaced:
        root.removeHandler(h)
    root.addHandler(routed)

    def update(step: int, stats: str) -> None:
        progress.update(task, completed=step, stats=stats)

    try:
        with progress:
            yield update
    finally:
        root.removeHandler(routed)
        for h in replaced:
            root.addHandler(h)
