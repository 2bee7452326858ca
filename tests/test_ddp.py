"""DDP through torchrun on CPU (gloo): same trajectory as one process with the same global batch,
one run directory, exact resume after a kill."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import (
    REPO,
    TINY,
    checkpoint_written,
    corpus_documents,
    fineweb_folder,
    run_cli,
    start_cli,
    step_logged,
)

from tinygpt.data.tokenizers import BPETokenizer
from tinygpt.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

ARGS = [a for a in TINY if not a.startswith(("batch_size", "log_interval"))] + [
    "batch_size=16",
    "grad_accum_steps=2",
    "max_steps=40",
    "log_interval=5",
    "eval_interval=20",
    "ckpt_interval=10",
]
TORCHRUN = [
    sys.executable,
    "-m",
    "torch.distributed.run",
    "--standalone",
    "--nproc_per_node=2",
    "-m",
    "tinygpt.train",
]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def torchrun(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*TORCHRUN, *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300, **kwargs
    )


def losses(run_dir, key):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r[key]) for r in records if key in r]


def two_ranks_follow_one(args: list[str], tmp_path: Path, steps: list[int]) -> None:
    """torchrun with 2 ranks and one process, both on ``args``: the same train losses at ``steps``."""
    proc = torchrun(*args, f"hydra.run.dir={tmp_path / 'ddp'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_cli(*args, f"hydra.run.dir={tmp_path / 'single'}")
    assert proc.returncode == 0, proc.stderr
    ddp, single = losses(tmp_path / "ddp", "train_loss"), losses(tmp_path / "single", "train_loss")
    assert [s for s, _ in ddp] == [s for s, _ in single] == steps
    for (_, a), (_, b) in zip(ddp, single, strict=True):
        assert a == pytest.approx(b, rel=1e-4)  # same data, same global batch: only summation order differs


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ddp") / "run"
    proc = torchrun(*ARGS, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_two_ranks_follow_the_single_process_trajectory(ddp_run, tmp_path):
    single = tmp_path / "single"
    proc = run_cli(*ARGS, f"hydra.run.dir={single}")
    assert proc.returncode == 0, proc.stderr
    ddp_train, one_train = losses(ddp_run, "train_loss"), losses(single, "train_loss")
    assert [s for s, _ in ddp_train] == [s for s, _ in one_train] == [1, 5, 10, 15, 20, 25, 30, 35, 40]
    for (_, a), (_, b) in zip(ddp_train, one_train, strict=True):
        assert a == pytest.approx(b, rel=1e-4)  # same data, same global batch: only summation order differs
    for (_, a), (_, b) in zip(losses(ddp_run, "val_loss"), losses(single, "val_loss"), strict=True):
        assert a == pytest.approx(b, rel=1e-4)


def test_rank_zero_alone_writes_one_run_directory(ddp_run):
    names = {p.name for p in ddp_run.iterdir()}
    assert {"ckpt.pt", "ckpt_best.pt", "effective_config.json", "metrics.jsonl", "tokenizer.json"} <= names
    steps = [s for s, _ in losses(ddp_run, "train_loss")]
    assert steps == sorted(set(steps))  # one writer: no line twice
    log = (ddp_run / "train.log").read_text()
    assert log.count("step 40/40") == 1


def test_killed_and_resumed_under_ddp_ends_where_the_uninterrupted_run_does(ddp_run, tmp_path):
    run_dir = tmp_path / "killed"
    child = start_cli(
        *ARGS,
        f"hydra.run.dir={run_dir}",
        until=checkpoint_written(run_dir),
        command=TORCHRUN,
        env=ENV,
        start_new_session=True,
    )
    os.killpg(child.pid, signal.SIGKILL)  # torchrun and both ranks at once
    child.wait()
    assert load_checkpoint(run_dir / "ckpt.pt")["step"] < 40
    proc = torchrun(*ARGS, f"hydra.run.dir={run_dir}", "resume=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = load_checkpoint(ddp_run / "ckpt.pt")["model"], load_checkpoint(run_dir / "ckpt.pt")["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)


def test_a_rank_error_fails_the_whole_job_instead_of_hanging(tmp_path):
    proc = torchrun(*ARGS, "batch_size=6", f"hydra.run.dir={tmp_path / 'bad'}")  # 6 is not divisible by 2 x 2
    assert proc.returncode != 0
    assert "must be divisible by world size x grad_accum_steps" in proc.stderr


def test_two_ranks_on_aligned_shards_follow_the_single_process_trajectory(tmp_path):
    """data=shards with data.align=bos: each rank takes its slice of the same document-aligned batch."""
    docs = corpus_documents()
    shards = fineweb_folder(tmp_path / "shards", BPETokenizer.train(docs, vocab_size=300), docs)
    args = [*ARGS, *shards, "data.align=bos", "max_steps=10", "eval_interval=10", "ckpt_interval=10"]
    two_ranks_follow_one(args, tmp_path, steps=[1, 5, 10])


def rank_pids(torchrun_pid: int) -> dict[int, int]:
    """rank -> pid of torchrun's worker processes (read from /proc: their RANK variable)."""
    proc = Path("/proc")
    children = (proc / str(torchrun_pid) / "task" / str(torchrun_pid) / "children").read_text().split()
    ranks = {}
    for pid in map(int, children):
        variables = (proc / str(pid) / "environ").read_bytes().decode().split("\0")
        rank = next(v.split("=", 1)[1] for v in variables if v.startswith("RANK="))
        ranks[int(rank)] = pid
    return ranks


def interrupted_under_torchrun(run_dir, send) -> tuple[int, str]:
    """Start the DDP run, and once it logged step 5, ``send(torchrun's pid)`` a signal; returns the step
    of the one 'interrupted at step N' line and torchrun's stderr, having checked the checkpoint."""
    child = start_cli(
        *ARGS,
        f"hydra.run.dir={run_dir}",
        until=step_logged(run_dir, 5),
        command=TORCHRUN,
        env=ENV,
        start_new_session=True,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.poll() is None, "the run ended before it logged"
    send(child.pid)
    _, stderr = child.communicate(timeout=300)
    (step,) = map(int, re.findall(r"^interrupted at step (\d+); resume with: ", stderr, re.M))
    assert load_checkpoint(run_dir / "ckpt.pt")["step"] == step < 40
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    return step, stderr


def test_one_signal_to_the_torchrun_group_stops_every_rank_at_one_step_with_one_checkpoint(tmp_path):
    step, stderr = interrupted_under_torchrun(tmp_path / "run", lambda pid: os.killpg(pid, signal.SIGINT))
    assert step >= 5  # the step awaited (after step 1, the first logged at log_interval=5) was taken
    assert f'File "{REPO / "tinygpt"}' not in stderr  # no rank's traceback (torchrun reports its own signal)


def test_a_signal_to_one_rank_stops_them_all_at_its_step_and_the_resume_is_exact(ddp_run, tmp_path):
    run_dir = tmp_path / "run"
    interrupted_under_torchrun(run_dir, lambda pid: os.kill(rank_pids(pid)[1], signal.SIGTERM))
    proc = torchrun(*ARGS, f"hydra.run.dir={run_dir}", "resume=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = load_checkpoint(ddp_run / "ckpt.pt")["model"], load_checkpoint(run_dir / "ckpt.pt")["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)


def test_two_ranks_with_every_speedrun_option_follow_the_single_process_trajectory(tmp_path):
    """speedrun=schedules (every stage of the ladder: Muon, the group learning rates, value embeddings,
    U-net skips, windows, the document mask, the batch and block schedules) under two ranks."""
    docs = corpus_documents()
    shards = fineweb_folder(tmp_path / "shards", BPETokenizer.train(docs, vocab_size=300), docs)
    stage = ["speedrun=schedules", "batch_size_start=4", "batch_size_steps=6", "curriculum_steps=6"]
    args = [*ARGS, *shards, *stage, "max_steps=10", "eval_interval=10", "ckpt_interval=10"]
    two_ranks_follow_one(args, tmp_path, steps=[1, 5, 10])
