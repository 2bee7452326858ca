"""The run directory belongs to one run: locked while it trains, its history never lost, its files
strict JSON, and a directory that cannot be written (or a full disk) reported in one line."""

import builtins
import errno
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY, compose_train, logged_steps, run_cli, set_keys, start_cli, step_logged

import tinygpt.training.checkpoint
from tinygpt.errors import UserError, exit_on_user_error
from tinygpt.training.checkpoint import load_checkpoint
from tinygpt.training.loggers import MetricsLogger
from tinygpt.training.loop import train
from tinygpt.training.metrics import truncate_records

LONG_RUN = [*TINY, "max_steps=100000", "eval_interval=100000", "ckpt_interval=100000"]


def start_training(run_dir, *args):
    """A training process in the background, returned once it has logged its first step."""
    child = start_cli(*args, f"hydra.run.dir={run_dir}", until=step_logged(run_dir))
    assert child.poll() is None, "the background run ended before it logged"
    return child


def kill(child):
    child.send_signal(signal.SIGKILL)
    child.wait()


def one_error_line(proc):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def test_a_second_run_into_a_busy_directory_is_refused_and_touches_nothing(tmp_path):
    run_dir = tmp_path / "run"
    first = start_training(run_dir, *LONG_RUN)
    try:
        before = {p.name: p.read_bytes() for p in (run_dir / ".hydra").iterdir()}
        proc = run_cli(*TINY, "max_steps=5", "seed=7", f"hydra.run.dir={run_dir}", "resume=auto")
        assert "in use by another TinyGPT run" in one_error_line(proc)
        assert {p.name: p.read_bytes() for p in (run_dir / ".hydra").iterdir()} == before
        with pytest.raises(UserError, match="in use"):  # the Python API is guarded by the same lock
            train(set_keys(compose_train("max_steps=2"), resume="auto"), run_dir)
    finally:
        kill(first)
    # the killed run's lock went with it: the directory is free again
    proc = run_cli(*TINY, "max_steps=3", f"hydra.run.dir={run_dir}", "resume=auto")
    assert proc.returncode == 0, proc.stderr


def test_resume_auto_starts_fresh_after_a_kill_before_the_first_checkpoint_then_continues(tmp_path):
    run_dir = tmp_path / "run"
    kill(start_training(run_dir, *LONG_RUN))
    assert not (run_dir / "ckpt.pt").exists() and logged_steps(run_dir)
    requeued = [*TINY, f"hydra.run.dir={run_dir}", "resume=auto", "eval_interval=3"]  # one command line

    proc = run_cli(*requeued, "max_steps=6")
    assert proc.returncode == 0, proc.stderr
    assert logged_steps(run_dir) == [1, 2, 3, 4, 5, 6]  # the killed run's records were replaced
    leftovers = [run_dir / ".ckpt.pt.k1lled_0.tmp", run_dir / ".effective_config.json.k1lled_1.tmp"]
    for path in leftovers:  # what a run killed while writing these would leave
        path.write_text("half")
    proc = run_cli(*requeued, "max_steps=9")
    assert proc.returncode == 0, proc.stderr
    assert "resumed" in proc.stdout
    assert not any(path.exists() for path in leftovers)
    assert logged_steps(run_dir) == list(range(1, 10))
    assert load_checkpoint(run_dir / "ckpt.pt")["step"] == 9


def test_resume_true_without_a_checkpoint_points_at_resume_auto(tmp_path):
    proc = run_cli(*TINY, "max_steps=2", f"hydra.run.dir={tmp_path / 'run'}", "resume=true")
    assert "resume=auto" in one_error_line(proc)


def test_resume_takes_only_true_false_or_auto(tmp_path):
    proc = run_cli(*TINY, "max_steps=2", f"hydra.run.dir={tmp_path / 'run'}", "resume=maybe")
    assert "resume must be true, false or auto" in one_error_line(proc)


class Killed(BaseException):
    """Stands for a kill -9 arriving while a file is being written."""


class DiesOnWrite:
    def __init__(self, f):
        self._f = f

    def write(self, text):
        raise Killed

    def writelines(self, lines):
        raise Killed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def __getattr__(self, name):
        return getattr(self._f, name)


def test_a_kill_while_metrics_are_truncated_loses_no_history(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    history = "".join(json.dumps({"step": s, "train_loss": 1.0}) + "\n" for s in range(1, 1001))
    path.write_text(history)
    real_open = io.open

    def open_that_dies_on_write(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return DiesOnWrite(f) if "w" in mode else f

    monkeypatch.setattr(builtins, "open", open_that_dies_on_write)
    monkeypatch.setattr(io, "open", open_that_dies_on_write)
    with pytest.raises(Killed):
        truncate_records(tmp_path, 500)
    monkeypatch.undo()
    assert path.read_text() == history
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # and its temporary file is gone


def test_truncating_metrics_keeps_records_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s}) + "\n" for s in range(1, 8)) + '{"step": 8, "tr')
    truncate_records(tmp_path, 5)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3, 4, 5]


def strict_json(line):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(line, parse_constant=refuse)


def test_metrics_are_strict_json_with_null_for_non_finite_values(tmp_path):
    MetricsLogger(tmp_path, {}).log({"step": 1, "val_loss": math.nan, "grad_norm": math.inf, "lr": 0.1})
    record = strict_json((tmp_path / "metrics.jsonl").read_text())
    assert record == {"step": 1, "val_loss": None, "grad_norm": None, "lr": 0.1}


def test_a_diverged_run_writes_strict_json_and_names_no_bad_checkpoint_as_good(tmp_path):
    run_dir = tmp_path / "run"
    diverge = ["optim.lr=1e8", "schedule.warmup_steps=0", "max_skipped_steps=2", "log_interval=1"]
    proc = run_cli(*TINY, "max_steps=50", "eval_interval=1000", f"hydra.run.dir={run_dir}", *diverge)
    message = one_error_line(proc)
    assert "non-finite" in message and "no checkpoint of this run is known to be good" in message
    records = [strict_json(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("train_loss" in r and r["train_loss"] is None for r in records)  # written null


@pytest.mark.slow
def test_a_directory_that_cannot_be_written_is_one_line(tmp_path):
    (tmp_path / "a_file").write_text("")
    for run_dir in (tmp_path / "a_file" / "run", "/proc/tinygpt-cannot-be-here/run"):
        proc = run_cli(*TINY, "max_steps=1", f"hydra.run.dir={run_dir}")
        assert "cannot write the run directory" in one_error_line(proc)
    proc = run_cli("-m", *TINY, "max_steps=1", f"hydra.sweep.dir={tmp_path / 'a_file' / 'sweep'}")
    assert "cannot write the sweep directory" in one_error_line(proc)


def disk_fills_up(monkeypatch):
    """torch.save writes a little, then the disk is full."""

    def save(state, f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tinygpt.training.checkpoint.torch, "save", save)


def test_a_full_disk_at_a_later_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    train(compose_train("max_steps=2"), tmp_path)
    before = (tmp_path / "ckpt.pt").read_bytes()
    disk_fills_up(monkeypatch)
    with pytest.raises(UserError, match=r"No space left on device.*previous ckpt(_best)?.pt is intact"):
        train(set_keys(compose_train("max_steps=4", "eval_interval=1000"), resume=True), tmp_path)
    assert (tmp_path / "ckpt.pt").read_bytes() == before
    assert not list(tmp_path.glob(".ckpt*.tmp"))


def test_a_full_disk_at_the_first_checkpoint_says_nothing_was_saved(tmp_path, monkeypatch):
    disk_fills_up(monkeypatch)
    with pytest.raises(UserError, match="No space left on device.*no checkpoint was saved yet"):
        train(compose_train("max_steps=2"), tmp_path)
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob(".ckpt*.tmp"))


def test_a_full_disk_anywhere_else_is_one_line(capsys):
    @exit_on_user_error
    def log_a_record():
        raise OSError(errno.ENOSPC, "No space left on device", "runs/x/metrics.jsonl")

    with pytest.raises(SystemExit) as exit_info:
        log_a_record()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write runs/x/metrics.jsonl: No space left on device")
    assert len(err.splitlines()) == 1


def test_a_bug_still_shows_its_traceback():
    @exit_on_user_error
    def buggy():
        raise OSError(errno.EBADF, "Bad file descriptor")

    with pytest.raises(OSError):
        buggy()


TAKE_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if another process still holds it
"""


def test_the_lock_is_held_only_while_training(tmp_path):
    train(compose_train("max_steps=2"), tmp_path)
    free = subprocess.run([sys.executable, "-c", TAKE_LOCK, str(tmp_path / ".lock")], capture_output=True)
    assert free.returncode == 0, free.stderr  # another process can take the directory once train returns
    train(set_keys(compose_train("max_steps=3"), resume=True), tmp_path)  # and so can this one, again
    assert torch.load(tmp_path / "ckpt.pt", weights_only=True)["step"] == 3


def test_resume_true_without_a_run_dir_continues_the_latest_run_and_makes_no_new_one(tmp_path):
    runs = tmp_path / "runs" / "2026-01-02"
    proc = run_cli(*TINY, "max_steps=3", "eval_interval=3", f"hydra.run.dir={runs / '10-00-00'}")
    assert proc.returncode == 0, proc.stderr
    shutil.copytree(runs / "10-00-00", runs / "09-00-00")
    os.utime(runs / "09-00-00" / "ckpt.pt", (1e9, 1e9))  # an older checkpoint
    before = sorted(p.name for p in runs.iterdir())

    proc = run_cli("resume=true", "max_steps=5", cwd=tmp_path)  # as after `make train`: no hydra.run.dir
    assert proc.returncode == 0, proc.stderr
    assert f"resuming the latest run, {Path('runs/2026-01-02/10-00-00')}" in proc.stderr
    assert load_checkpoint(runs / "10-00-00" / "ckpt.pt")["step"] == 5
    assert load_checkpoint(runs / "09-00-00" / "ckpt.pt")["step"] == 3
    assert sorted(p.name for p in runs.iterdir()) == before
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["2026-01-02"]  # no runs/<today>/<now>/


def test_resume_true_without_a_run_dir_and_no_run_to_continue_is_refused_making_nothing(tmp_path):
    proc = run_cli(*TINY, "resume=true", cwd=tmp_path)
    assert "no run under runs/ has a checkpoint to continue" in one_error_line(proc)
    assert not (tmp_path / "runs").exists()
