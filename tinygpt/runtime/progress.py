"""Progress display on one rich console (stderr): live bars on a terminal, plain log lines everywhere else.

Two kinds of bar share the console: ``progress_bar`` over training steps, and ``byte_bar`` over the
bytes of a corpus being checked or tokenized. While either is live, log lines bound for the terminal
are printed through the console, so they scroll above the bar instead of breaking it.
"""

import functools
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

STEP_LINE = "tinygpt_step_line"  # log-record flag: a per-step line the live bar already shows


@functools.cache
def console() -> "Console":
    """The one console of every bar and every routed log line: stderr, so stdout stays free for results."""
    # rich (~18 ms to import) is imported once a bar is shown, on a terminal only: a run logging into a
    # pipe or a file, and every `python -m tinygpt.generate`, never import it
    from rich.console import Console

    return Console(stderr=True)


def on_terminal() -> bool:
    """Whether bars are shown: only when stderr is a terminal, never into a pipe or a log file."""
    return sys.stderr.isatty()


class _ConsoleHandler(logging.Handler):
    """Prints log records through the console, so lines scroll above a live bar."""

    def __init__(self, formatter: logging.Formatter | None):
        super().__init__()
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, STEP_LINE, False):
            return
        console().print(self.format(record), markup=False, highlight=False, soft_wrap=True)


def _terminal_handlers() -> list[logging.StreamHandler]:
    return [
        h
        for h in logging.getLogger().handlers
        if type(h) is logging.StreamHandler and getattr(h.stream, "isatty", lambda: False)()
    ]


@contextmanager
def _live(progress: "Progress") -> Iterator[None]:
    """Show ``progress`` while the block runs, with terminal log lines routed through the console."""
    root = logging.getLogger()
    replaced = _terminal_handlers()
    routed = _ConsoleHandler(replaced[0].formatter if replaced else None)
    for h in replaced:
        root.removeHandler(h)
    root.addHandler(routed)
    try:
        with progress:
            yield
    finally:
        root.removeHandler(routed)
        for h in replaced:
            root.addHandler(h)


@contextmanager
def progress_bar(total: int, start: int, enabled: bool) -> Iterator[Callable[[int, str], None] | None]:
    """Yield ``update(step, stats)`` driving the training bar when stderr is a terminal, else None."""
    if not (enabled and on_terminal()):
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console(),
    )
    task = progress.add_task("train", total=total, completed=start, stats="")
    with _live(progress):
        yield lambda step, stats: progress.update(task, completed=step, stats=stats)


@contextmanager
def byte_bar(description: str, total_bytes: int) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n_bytes)`` driving a bar (bytes done, bytes/s, time left) that disappears when the
    block ends (on a terminal; elsewhere ``advance`` does nothing)."""
    if not on_terminal():
        yield lambda n_bytes: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn(description),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    progress = Progress(*columns, console=console(), transient=True)
    task = progress.add_task(description, total=total_bytes)
    with _live(progress):
        yield lambda n_bytes: progress.advance(task, n_bytes)
