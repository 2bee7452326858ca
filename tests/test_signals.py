"""Ctrl-C (SIGINT) and SIGTERM during training, sent for real to a training process at a random step:
the step under way finishes, ckpt.pt is written, one line gives the command that resumes the run, the
exit status is 128 + the signal's number, and the resumed run ends bitwise where an uninterrupted one
does. (Under DDP: tests/test_ddp.py.)"""

import os
import random
import re
import shlex
import signal
import subprocess

import pytest
import torch
from conftest import REPO, TINY, logged_steps, run_cli, start_cli, step_logged

from tinygpt.training.checkpoint import load_checkpoint

# A constant schedule: the lr of a step does not depend on max_steps, so a run interrupted on its way to
# 100000 steps and resumed to FINAL follows the run that went to FINAL in one go.
RECIPE = [*TINY, "schedule=constant", "schedule.warmup_steps=10", "eval_interval=1000", "ckpt_interval=1000"]
FINAL = 60
INTERRUPTED_LINE = re.compile(r"^interrupted at step (\d+); resume with: (.+)$", re.M)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    proc = run_cli(*RECIPE, f"max_steps={FINAL}", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr
    return run_dir


def interrupt(child: subprocess.Popen, signum: int, storm: bool) -> str:
    """Send ``signum`` once, or (``storm``) again and again until the process ends, saving included;
    returns its stderr."""
    child.send_signal(signum)
    while storm:
        try:
            child.wait(timeout=0.002)
        except subprocess.TimeoutExpired:
            child.send_signal(signum)
        else:
            break
    _, stderr = child.communicate(timeout=300)
    return stderr


@pytest.mark.parametrize(
    "signum, storm",
    [pytest.param(signal.SIGINT, True, marks=pytest.mark.slow), (signal.SIGTERM, False)],
    ids=["ctrl-c storm", "sigterm"],
)
def test_a_signal_saves_the_step_under_way_and_the_printed_resume_ends_bitwise_equal(
    straight, tmp_path, signum, storm
):
    run_dir = tmp_path / "run"
    at = random.randint(1, 5)  # the signal lands somewhere in a step after this one was logged
    child = start_cli(
        *RECIPE,
        "max_steps=100000",
        f"hydra.run.dir={run_dir}",
        until=step_logged(run_dir, at),
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.poll() is None, "the run ended before it logged"
    stderr = interrupt(child, signum, storm)

    assert child.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr
    (line,) = INTERRUPTED_LINE.findall(stderr)
    step, command = int(line[0]), line[1]
    assert at <= step < FINAL, (at, step)
    assert load_checkpoint(run_dir / "ckpt.pt")["step"] == step  # the step under way, not an interval's
    assert logged_steps(run_dir)[-1] == step
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]  # no half-written file

    resumed = subprocess.run(  # the printed command, as printed, with the length of the straight run
        [*shlex.split(command), f"max_steps={FINAL}"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_checkpoint(straight / "ckpt.pt"), load_checkpoint(run_dir / "ckpt.pt")
    assert a["step"] == b["step"] == FINAL
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    assert logged_steps(run_dir) == list(range(1, FINAL + 1))  # the stop step is not logged twice
