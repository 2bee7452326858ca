"""Stopping a training run on Ctrl-C (SIGINT) or SIGTERM, the signal SLURM and Kubernetes preempt a job
with: the step under way finishes, the checkpoint is written, and one line says how to resume.

``exit_on_interrupt`` (around the ``train`` command) installs the handlers. Before the loop starts
there is nothing to save, and a signal stops the command at once. Once the loop runs (``STOP.arm()``),
a signal is only recorded: at the next step boundary every rank learns it (``STOP.agreed``, the largest
signal number over the ranks, so all of them stop at the same step), the loop saves ``ckpt.pt`` and
raises ``Interrupted``. From the first signal on, any further one (a second Ctrl-C, torchrun passing
the signal on to its workers) is recorded and changes nothing: it cannot cut the checkpoint's write
short. The command then exits with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).
"""

import functools
import os
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from tinygpt.training.summary import python_command, shown_path

if TYPE_CHECKING:  # torch is imported when training starts, not for --help
    from tinygpt.runtime.distributed import World

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
STOPPING_LINE = b"stopping after this step, once ckpt.pt is written (a second signal changes nothing)\n"


class Interrupted(BaseException):
    """The command stops on a signal. ``step``: the step whose checkpoint was just written (None: the
    signal came before training started, nothing was saved). A BaseException, like KeyboardInterrupt,
    so that no ``except Exception`` (a sweep job's, Hydra's) takes it for a failure."""

    def __init__(self, signum: int, step: int | None = None, run_dir: Path | None = None):
        super().__init__(signum, step, run_dir)
        self.signum, self.step, self.run_dir = signum, step, run_dir

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def message(self) -> str:
        if self.step is None or self.run_dir is None:
            name = signal.Signals(self.signum).name
            return f"interrupted ({name}) before training started; nothing was saved"
        return f"interrupted at step {self.step}; resume with: {resume_command(self.run_dir)}"


class StopSignals:
    """The process's record of SIGINT and SIGTERM (signal handlers are per process: one instance, STOP)."""

    def __init__(self) -> None:
        self.signum = 0  # the first signal received, 0 while none came
        self.armed = False  # the loop runs: a signal is recorded, and the loop stops at its step boundary
        self.installed = False

    def install(self) -> None:
        """Handle SIGINT and SIGTERM from now on (only the main thread can; elsewhere nothing changes)."""
        try:
            for signum in STOP_SIGNALS:
                signal.signal(signum, self._on_signal)
        except ValueError:  # not the main thread: signals keep their handlers
            return
        self.installed = True

    def arm(self) -> None:
        """The training loop starts: from now on a signal stops it at a step boundary, after a save."""
        self.armed = True

    def agreed(self, world: "World") -> int:
        """The signal to stop on at this step boundary, the same on every rank (0: go on). Under DDP
        every rank calls this at every step: a CPU all-reduce of one number."""
        if not self.installed:
            return 0
        from tinygpt.runtime.distributed import max_over_ranks

        return max_over_ranks(self.signum, world)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        first = not self.signum
        if first:
            self.signum = signum
        if not self.armed and first:
            raise Interrupted(signum)  # nothing to save yet: stop where the command is
        if first and os.environ.get("RANK", "0") == "0":
            os.write(2, STOPPING_LINE)


STOP = StopSignals()


def exit_on_interrupt(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn`` (a command's entry point) with SIGINT and SIGTERM handled as the module says; when it
    is interrupted, print the one line (rank 0) and exit with 128 + the signal's number, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        STOP.install()
        try:
            return fn(*args, **kwargs)
        except Interrupted as stop:
            for signum in STOP_SIGNALS:  # the interpreter's exit would put back the default handlers,
                signal.signal(signum, signal.SIG_IGN)  # and a signal arriving then would kill it mid-exit
            if os.environ.get("RANK", "0") == "0":
                print(stop.message(), file=sys.stderr, flush=True)
            sys.exit(stop.exit_code)

    return wrapper


def resume_command(run_dir: Path) -> str:
    """The command that resumes the run in ``run_dir`` from where the user is: this interpreter (by the
    name ``python`` when that is the one on PATH), under torchrun with this job's ranks if it ran there.
    The run's recipe is stored in its checkpoint, so nothing else needs retyping."""
    python = python_command()
    launch = f"{python} -m tinygpt.train"
    world, local = os.environ.get("WORLD_SIZE", "1"), os.environ.get("LOCAL_WORLD_SIZE")
    if int(world) > 1:  # one machine: its ranks again; several: the same torchrun options as this job's
        options = f"--standalone --nproc_per_node={local}" if world == local else "<your torchrun options>"
        launch = f"{python} -m torch.distributed.run {options} -m tinygpt.train"
    return f"{launch} {shlex.join([f'hydra.run.dir={shown_path(run_dir)}', 'resume=true'])}"
