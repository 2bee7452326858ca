"""Where a training command's start-up goes: a clock that marks its phases as they end.

``python -m tinygpt.train`` starts a ``StartupClock`` at the process's start and marks each phase as it
ends (launch, config, imports, setup, data, model, ...): a debug line per phase, and once the first
evaluation is done, one info line and one metrics record with every phase (docs/training.md says what
each covers). The phases up to the first step follow each other; the first evaluation and the first
sample are timed where they run, as they come later and between steps. No torch here: the command
starts the clock before torch is imported.
"""

import contextlib
import gc
import logging
import os
import time
from collections.abc import Iterator

log = logging.getLogger("tinygpt")

FIRST_STEP = "first step"  # the last of the phases that follow each other


def process_start() -> float | None:
    """``time.perf_counter()``'s reading when this process started, from /proc (Linux); None elsewhere,
    or where /proc's two clocks disagree (a container's virtual uptime): the caller starts later."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()  # after "(name)", which may hold spaces
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time, ticks after boot
    except (OSError, ValueError, IndexError):
        return None
    age = uptime - started  # seconds this process has been running
    return time.perf_counter() - age if 0 <= age < 600 else None


@contextlib.contextmanager
def collections_paused() -> Iterator[None]:
    """No garbage collection in the block: for imports whose objects live until exit (torch's), which
    the collector would otherwise scan again and again as they pile up (a second of torch's import and
    torch._dynamo's on 2 cores). The collector is as it was after the block."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class StartupClock:
    """The phases of a start-up, in the order they ended, each with its seconds."""

    def __init__(self, start: float | None = None):
        self.last = time.perf_counter() if start is None else start  # where the next phase begins
        self.phases: dict[str, float] = {}
        self.reported = False

    def mark(self, name: str, now: float | None = None) -> None:
        """Phase ``name`` ended now (or at ``now``, a perf_counter reading): it began where the last one
        ended. A phase marked again (a second job in the process) keeps its first time."""
        now = time.perf_counter() if now is None else now
        if name not in self.phases:
            self.phases[name] = max(now - self.last, 0.0)
            log.debug("start-up: %s took %.3f s", name, self.phases[name])
        self.last = now

    def add(self, name: str, seconds: float) -> None:
        """Phase ``name`` took ``seconds``, timed where it ran (the first evaluation, the first sample):
        not part of the chain of marks, and kept only the first time."""
        if name not in self.phases:
            self.phases[name] = max(seconds, 0.0)
            log.debug("start-up: %s took %.3f s", name, seconds)

    def split(self) -> tuple[list[str], list[str]]:
        """The phases' names: those chained up to the first step (all, before it), and those after."""
        names = list(self.phases)
        cut = names.index(FIRST_STEP) + 1 if FIRST_STEP in names else len(names)
        return names[:cut], names[cut:]

    def to_first_step(self) -> float:
        """The seconds from the start to the end of the first step: the chained phases together."""
        return sum(self.phases[name] for name in self.split()[0])

    def line(self) -> str:
        """``start-up: launch 0.41 s, ..., first step 2.80 s = 6.62 s to the first step; first evaluation
        9.40 s, first sample 1.10 s``."""
        listed = (", ".join(f"{name} {self.phases[name]:.2f} s" for name in part) for part in self.split())
        chained, later = listed
        return f"start-up: {chained} = {self.to_first_step():.2f} s to the first step" + (
            f"; {later}" if later else ""
        )

    def report_once(self) -> dict[str, float] | None:
        """Log the start-up line, the first time only; returns the phases (seconds by name) that time,
        None after."""
        if self.reported:
            return None
        self.reported = True
        log.info(self.line())
        return dict(self.phases)
