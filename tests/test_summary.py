"""The line that ends a run: one step is "1 step", the wall time and the run dir are named, and the
command it prints to sample from the run works from where the user is, virtualenv active or not."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, TINY, run_cli

from tinygpt.training import summary
from tinygpt.training.summary import duration, python_command, summary_line

VENV_BIN = str(Path(sys.executable).parent)
PATH_WITHOUT_VENV = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != VENV_BIN)


def test_the_printed_command_samples_from_the_run_without_an_active_virtualenv(tmp_path):
    """As after ``make train``: the virtualenv's python ran training, a shell's ``python`` is another."""
    env = {"PATH": PATH_WITHOUT_VENV}
    proc = run_cli(*TINY, "max_steps=1", "hydra.run.dir=runs/first", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    [line] = [line for line in (proc.stdout + proc.stderr).splitlines() if " - done: " in line]
    assert " - done: 1 step in " in line and " s | val loss " in line and " | run dir runs/first | " in line
    command = line.split("sample from it: ", 1)[1]
    assert command.startswith(f"{shlex.quote(sys.executable)} -m tinygpt.generate run=runs/first")
    sampled = subprocess.run(
        [*shlex.split(command), "max_new_tokens=3"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), "PATH": PATH_WITHOUT_VENV},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert sampled.returncode == 0, sampled.stderr
    assert len(sampled.stdout) == len("\n") + 3 + len("\n")  # the default prompt, 3 characters, a newline


def test_with_the_virtualenv_active_it_is_plain_python(monkeypatch):
    monkeypatch.setenv("PATH", os.pathsep.join([VENV_BIN, PATH_WITHOUT_VENV]))
    if sys.prefix == sys.base_prefix:
        pytest.skip("the tests run outside a virtualenv")
    assert python_command() == "python"


def test_a_virtualenv_under_the_working_directory_is_named_relative_to_it(monkeypatch, tmp_path):
    venv_python = tmp_path / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.symlink_to(sys.executable)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(summary.sys, "executable", str(venv_python))
    monkeypatch.setattr(summary.sys, "prefix", str(tmp_path / ".venv"))
    monkeypatch.setenv("PATH", PATH_WITHOUT_VENV)
    line = summary_line(200, tmp_path / "runs" / "x y", 1.5, 1.25, 1000.0, 75.0)
    assert line == (
        "done: 200 steps in 1 min 15 s | val loss 1.5000 (best 1.2500) | 1000 tok/s | run dir runs/x y | "
        "sample from it: .venv/bin/python -m tinygpt.generate 'run=runs/x y'"
    )


def test_durations_read_as_durations():
    assert [duration(s) for s in (2.04, 59.94, 75, 3599, 7500)] == [
        "2.0 s",
        "59.9 s",
        "1 min 15 s",
        "59 min 59 s",
        "2 h 05 min",
    ]
