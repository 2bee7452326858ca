"""benchmarks/gpu_issue11.sh runs on a GPU once, in a budget: what it reads and how it stops is tested here
(its DRY=1 mode runs the rest on a CPU, in minutes)."""

import os
import subprocess
import sys
import time

import pytest
from conftest import REPO, run_cli

NANO_EVALS = "step 250: train loss 1.60, val loss 1.7001\nstep 500: train loss 1.40, val loss 1.4650\n"


def read(*args: str) -> str:
    proc = run_cli(*args, module="benchmarks.issue11")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_the_script_parses():
    assert subprocess.run(["bash", "-n", str(REPO / "benchmarks" / "gpu_issue11.sh")]).returncode == 0


def test_until_val_times_the_first_evaluation_at_the_target_and_ends_the_run(tmp_path):
    """nanoGPT's eval lines, then a run that would go on for a minute: it is ended at the target."""
    printer = f"import sys, time; sys.stdout.write({NANO_EVALS!r}); sys.stdout.flush(); time.sleep(60)"
    start = time.perf_counter()
    line = read("until-val", "1.47", str(tmp_path / "log"), "--", sys.executable, "-c", printer)
    assert time.perf_counter() - start < 30
    assert line.startswith("val 1.4650 <= 1.47 at step 500 after ")
    assert "] step 500: train loss" in (tmp_path / "log").read_text()  # each line with its time


def test_until_val_reports_the_best_when_the_target_is_never_reached(tmp_path):
    ours = "print('step 250 | val_loss 1.9000'); print('step 500 | val_loss 1.5000'); print('done')"
    line = read("until-val", "1.47", str(tmp_path / "log"), "--", sys.executable, "-c", ours)
    assert line.startswith("never <= 1.47 (exit 0 after ") and "best val 1.5000 at step 500" in line


def test_figures_come_out_of_each_programs_log(tmp_path):
    train_log = tmp_path / "train.log"
    times = [50.0, 40.0, 30.0, 10.0, 12.0, 11.0]  # the first 3 logged iterations (compilation) left out
    lines = [f"iter {i}: loss 2.0, time {t:.2f}ms, mfu 1.0%\n" for i, t in enumerate(times)]
    train_log.write_text("".join(lines))
    assert read("nano-train", str(train_log)) == "11.00"
    bench_log = tmp_path / "bench.log"
    bench_log.write_text("0/20 loss: 10.9\ntime per iteration: 28.6012ms, MFU: 118.22%\n")
    assert read("nano-bench", str(bench_log)) == "28.60"
    assert read("nano-mfu", str(bench_log)) == "37.3%"  # 118.22% of an A100's 312 = 37.3% of 989
    assert read("ratio", "28.60", "14.30") == "2.00x"
    assert read("ratio", "n/a", "14.30") == "n/a"


def test_a_timeout_around_until_val_still_reports_the_best_and_ends_the_run(tmp_path):
    """The script caps every row with `timeout`: the best val so far is still printed, and the timed
    command is gone (never left running on the GPU)."""
    pid_file = tmp_path / "pid"
    sleeper = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
        "print('step 250 | val_loss 1.9000', flush=True); time.sleep(60)"
    )
    command = [sys.executable, "-m", "benchmarks.issue11", "until-val", "1.47", str(tmp_path / "log"), "--"]
    proc = subprocess.run(
        ["timeout", "-k", "5", "3", *command, sys.executable, "-c", sleeper],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.stdout.startswith("never <= 1.47 (timed out after "), proc.stdout + proc.stderr
    assert "best val 1.9000 at step 250" in proc.stdout
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)
