"""The benchmarks' own logic that a wrong figure would hide: benchmarks/gpu.sh refuses to run where it
cannot measure, time_to_loss.py times and ends a run at its target, and nanoGPT's figures are read out of
its logs as it prints them."""

import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO, run_cli

NANO_EVALS = "step 250: train loss 1.60, val loss 1.7001\nstep 500: train loss 1.40, val loss 1.4650\n"


def read(module: str, *args: str) -> str:
    proc = run_cli(*args, module=f"benchmarks.{module}")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def gpu_script(*args: str, out) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(out), "RUNS": str(out.parent / "runs")}
    env.pop("CPU", None)
    script = REPO / "benchmarks" / "gpu.sh"
    return subprocess.run(["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_the_gpu_script_without_a_device_stops_with_one_line_before_anything_runs(tmp_path):
    proc = gpu_script(out=tmp_path / "out")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: no CUDA device here: gpu.sh measures GPU rows (CPU=1 checks the script on the CPU)"
    ]
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


def test_the_gpu_script_names_its_rows_when_given_another(tmp_path):
    proc = gpu_script("checks", "sample", out=tmp_path / "out")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: no row 'sample': choose among checks step speedrun decode sampling 124m cli recipe shards "
        "startup"
    )


def test_time_to_loss_times_the_first_evaluation_at_the_target_and_ends_the_run(tmp_path):
    """nanoGPT's eval lines, then a run that would go on for a minute: it is ended at the target."""
    printer = f"import sys, time; sys.stdout.write({NANO_EVALS!r}); sys.stdout.flush(); time.sleep(60)"
    line = read("time_to_loss", "1.47", str(tmp_path / "log"), "--", sys.executable, "-c", printer)
    assert line.startswith("val 1.4650 <= 1.47 at step 500 after ")
    assert float(line.split()[-2]) < 30
    assert "] step 500: train loss" in (tmp_path / "log").read_text()  # each line with its time


def test_time_to_loss_reports_the_best_when_the_target_is_never_reached(tmp_path):
    ours = "print('step 250 | val_loss 1.9000'); print('step 500 | val_loss 1.5000'); print('done')"
    line = read("time_to_loss", "1.47", str(tmp_path / "log"), "--", sys.executable, "-c", ours)
    assert line.startswith("never <= 1.47 (exit 0 after ") and "best val 1.5000 at step 500" in line


def test_a_timeout_around_time_to_loss_still_reports_the_best_and_ends_the_run(tmp_path):
    """gpu.sh caps every command with `timeout`: the best val so far is still printed, and the timed
    command is gone (never left running on the GPU)."""
    pid_file = tmp_path / "pid"
    sleeper = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
        "print('step 250 | val_loss 1.9000', flush=True); time.sleep(60)"
    )
    command = [sys.executable, "-m", "benchmarks.time_to_loss", "1.47", str(tmp_path / "log"), "--"]
    proc = subprocess.run(
        ["timeout", "-k", "5", "3", *command, sys.executable, "-c", sleeper],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.stdout.startswith("never <= 1.47 (timed out after "), proc.stdout + proc.stderr
    assert "best val 1.9000 at step 250" in proc.stdout
    with pytest.raises(ProcessLookupError):  # time_to_loss waited for it before it exited
        os.kill(int(pid_file.read_text()), 0)


def test_nanogpts_figures_come_out_of_its_own_logs(tmp_path):
    train_log = tmp_path / "train.log"
    times = [50.0, 40.0, 30.0, 10.0, 12.0, 11.0]  # the first 3 logged iterations (compilation) left out
    lines = [f"iter {i}: loss 2.0000, time {t:.2f}ms, mfu 1.00%\n" for i, t in enumerate(times)]
    train_log.write_text("".join(lines))
    assert read("vs_nanogpt", "nano-train", str(train_log)) == "11.00"
    bench_log = tmp_path / "bench.log"
    bench_log.write_text("0/20 loss: 10.9\ntime per iteration: 28.6012ms, MFU: 118.22%\n")
    assert read("vs_nanogpt", "nano-bench", str(bench_log)) == "28.60"
    assert read("vs_nanogpt", "nano-mfu", str(bench_log)) == "37.3%"  # 118.22% of 312 = 37.3% of 989
    assert read("vs_nanogpt", "ratio", "28.60", "14.30") == "2.00x"
    assert read("vs_nanogpt", "ratio", "n/a", "14.30") == "n/a"
    assert read("vs_nanogpt", "nano-train", str(tmp_path / "missing.log")) == "n/a"
