"""Sweeps on every launcher that runs on one machine, and W&B tracking offline."""

import json
import struct
from pathlib import Path

import pytest
from conftest import TINY, compose_train, run_cli, set_keys

from tinygpt.training.loop import train

SWEEP = [*TINY, "max_steps=3", "eval_interval=3"]


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit())


def test_basic_launcher_runs_a_2x2_grid_one_directory_per_job(tmp_path):
    proc = run_cli(
        "-m", "model/norm=layernorm,rmsnorm", "optim=adamw,lion", *SWEEP, f"hydra.sweep.dir={tmp_path}"
    )
    assert proc.returncode == 0, proc.stderr
    jobs = job_dirs(tmp_path)
    assert len(jobs) == 4
    combos = set()
    for job in jobs:
        assert (job / "ckpt.pt").is_file()
        cfg = json.loads((job / "effective_config.json").read_text())
        combos.add((cfg["model"]["norm"]["_target_"], cfg["optim"]["_target_"]))
    assert len(combos) == 4


def test_a_failed_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    proc = run_cli("-m", *SWEEP, "model.n_embd=30,32", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    bad, good = job_dirs(tmp_path)
    assert "must be divisible by model.n_head" in (bad / "error.txt").read_text()
    assert (good / "ckpt.pt").is_file() and not (good / "error.txt").exists()


def test_joblib_launcher_runs_jobs_in_parallel_processes(tmp_path):
    proc = run_cli(
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "optim=adamw,lion",
        *SWEEP,
        f"hydra.sweep.dir={tmp_path}",
        env={"OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert [(j / "ckpt.pt").is_file() for j in job_dirs(tmp_path)] == [True, True]
    for job in job_dirs(tmp_path):  # each job's log lines say which job they come from
        log = (job / "train.log").read_text()
        assert f"[job {job.name}] model:" in log and f"[job {1 - int(job.name)}]" not in log


@pytest.mark.slow
def test_submitit_local_launcher_runs_a_job(tmp_path):
    proc = run_cli(
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=5",
        "optim=adamw",
        *SWEEP,
        f"hydra.sweep.dir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr
    (job,) = job_dirs(tmp_path)
    assert (job / "ckpt.pt").is_file()


def read_wandb_history(run_file: Path) -> list[dict]:
    """History rows of an offline W&B run, read from its .wandb file (a LevelDB-style record log of
    protobuf ``Record`` messages after a 7-byte header)."""
    from wandb.proto import wandb_internal_pb2

    data, rows, pos, pending = run_file.read_bytes(), [], 7, b""
    block = 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "history":
                rows.append(
                    {
                        item.key or "/".join(item.nested_key): json.loads(item.value_json)
                        for item in record.history.item
                    }
                )
    return rows


def test_wandb_offline_logs_the_metrics_and_resume_continues_the_same_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    train(
        compose_train(
            "logger=wandb", "max_steps=2", "eval_interval=2", "sample_interval=2", "sample_tokens=5"
        ),
        tmp_path,
    )
    (first,) = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    history = read_wandb_history(first)
    assert [row["train_loss"] for row in history if "train_loss" in row] == pytest.approx(
        [
            json.loads(line)["train_loss"]
            for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
            if "train_loss" in line
        ]
    )
    assert any("val_loss" in row for row in history) and any(
        k.startswith("samples/") for row in history for k in row
    )
    train(set_keys(compose_train("logger=wandb", "max_steps=4"), resume=True), tmp_path)
    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 2 and len({p.stem for p in runs}) == 1  # the same run id, continued


@pytest.mark.slow
def test_wandb_without_a_login_says_how_to_log_in_or_go_offline(tmp_path, monkeypatch):
    for name in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    env = {"HOME": str(tmp_path), "WANDB_DIR": str(tmp_path)}  # no ~/.netrc: no login
    proc = run_cli(*TINY, "max_steps=1", "logger=wandb", f"hydra.run.dir={tmp_path / 'run'}", env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "wandb login" in proc.stderr and "WANDB_MODE=offline" in proc.stderr
