"""A resume continues the same run: the run's own recipe, changed only where a resume may change it,
and the run's record of how it was started never rewritten."""

import json
import logging
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO, TINY, compose_train, run_cli, set_keys

from tinygpt.training.loop import train
from tinygpt.training.schedule import cosine, wsd

RECIPE = ["schedule=wsd", "optim=lion", "batch_size=8", "model.n_layer=3"]


def start_run(run_dir, *extra):
    proc = run_cli(*TINY, *RECIPE, "max_steps=4", "eval_interval=2", f"hydra.run.dir={run_dir}", *extra)
    assert proc.returncode == 0, proc.stderr
    return {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


def record(run_dir):
    """What a refused command must leave as it was (the log file aside: it logs the refusal)."""
    files = (p for p in run_dir.rglob("*") if p.is_file() and p.name != "train.log")
    return {p.relative_to(run_dir): p.read_bytes() for p in files}


# python -m tinygpt.train, counting what it reads: ckpt.pt loads and compositions of the config.
COUNTING_TRAIN = """
import sys, torch
import tinygpt.training.resume as resume
loads, composes = [], []
real_load, real_compose = torch.load, resume.compose
torch.load = lambda path, *a, **k: loads.append(str(path)) or real_load(path, *a, **k)
resume.compose = lambda *a, **k: composes.append(a) or real_compose(*a, **k)
from tinygpt.train import main
sys.argv = ["train.py", *sys.argv[1:]]
main()
print("ckpt.pt loads:", sum(path.endswith("ckpt.pt") for path in loads), "compositions:", len(composes))
"""


def test_a_resume_keeps_the_runs_recipe_without_retyping_it(tmp_path):
    run_dir = tmp_path / "run"
    start_run(run_dir)
    hydra_record = (run_dir / ".hydra" / "overrides.yaml").read_text()
    proc = subprocess.run(  # nothing else retyped
        [sys.executable, "-c", COUNTING_TRAIN, f"hydra.run.dir={run_dir}", "resume=true", "max_steps=6"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "ckpt.pt loads: 1 compositions: 1" in proc.stdout
    )  # the checkpoint read once, the recipe composed once
    config = json.loads((run_dir / "effective_config.json").read_text())
    assert config["schedule"]["_target_"] == "tinygpt.training.schedule.wsd"
    assert config["optim"]["_target_"] == "tinygpt.training.optim.Lion"
    assert (config["batch_size"], config["model"]["n_layer"], config["max_steps"]) == (8, 3, 6)
    assert config["model"]["n_embd"] == 32  # TINY's shape, not the default's
    assert torch.load(run_dir / "ckpt.pt", weights_only=True)["step"] == 6
    assert (run_dir / ".hydra" / "overrides.yaml").read_text() == hydra_record
    history = [json.loads(line) for line in (run_dir / "resumes.jsonl").read_text().splitlines()]
    assert len(history) == 1 and history[0]["from_step"] == 4 and "max_steps=6" in history[0]["overrides"]


def test_a_resume_that_changes_the_recipe_is_refused_naming_each_key(tmp_path):
    run_dir = tmp_path / "run"
    start_run(run_dir)
    before = record(run_dir)
    proc = run_cli(
        f"hydra.run.dir={run_dir}", "resume=true", "max_steps=6", "batch_size=16", "model.n_layer=2"
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    [error] = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert "batch_size 8 -> 16" in error and "model.n_layer 3 -> 2" in error
    assert "max_steps" not in error  # extending a run is what a resume is for
    assert record(run_dir) == before


@pytest.mark.slow
def test_a_default_that_differs_from_the_runs_is_kept_not_refused_unless_typed(tmp_path):
    """A run written when a default was another value (here grad_clip, edited into its checkpoint)
    resumes with a command that does not type it; typing it is a change of recipe, refused."""
    run_dir = tmp_path / "run"
    start_run(run_dir)
    state = torch.load(run_dir / "ckpt.pt", weights_only=True)
    state["config"]["grad_clip"] = 0.5  # the default of that imagined version
    torch.save(state, run_dir / "ckpt.pt")
    typed = run_cli(f"hydra.run.dir={run_dir}", "resume=true", "max_steps=6", "grad_clip=2.0")
    assert typed.returncode == 2 and "grad_clip 0.5 -> 2.0" in typed.stderr, typed.stderr
    untyped = run_cli(f"hydra.run.dir={run_dir}", "resume=true", "max_steps=6")
    assert untyped.returncode == 0, untyped.stderr


def test_a_refused_new_run_into_a_used_directory_leaves_its_record(tmp_path):
    run_dir = tmp_path / "run"
    start_run(run_dir)
    before = record(run_dir)
    proc = run_cli(*TINY, "max_steps=2", "seed=5", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 2 and "already holds a run" in proc.stderr
    assert record(run_dir) == before


def test_a_checkpoint_from_before_overrides_were_stored_resumes_from_the_hydra_record(tmp_path):
    run_dir = tmp_path / "run"
    start_run(run_dir)
    state = torch.load(run_dir / "ckpt.pt", weights_only=True)
    del state["overrides"]
    torch.save(state, run_dir / "ckpt.pt")
    proc = run_cli(f"hydra.run.dir={run_dir}", "resume=true", "max_steps=6")
    assert proc.returncode == 0, proc.stderr
    assert (
        json.loads((run_dir / "effective_config.json").read_text())["optim"]["_target_"]
        == "tinygpt.training.optim.Lion"
    )


def test_stored_overrides_are_data_an_interpolation_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    start_run(run_dir)
    state = torch.load(run_dir / "ckpt.pt", weights_only=True)
    state["overrides"].append("seed=${oc.create:{_target_: builtins.open, _args_: [pwned.txt, w]}}")
    torch.save(state, run_dir / "ckpt.pt")
    proc = run_cli(f"hydra.run.dir={run_dir}", "resume=true", "max_steps=6", cwd=tmp_path)
    assert proc.returncode == 2 and "interpolation" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "pwned.txt").exists()


@pytest.mark.parametrize("schedule", ["cosine", "wsd"])
def test_a_resume_that_moves_the_lr_by_raising_max_steps_says_so_with_the_jump(schedule, tmp_path, caplog):
    shape = ["schedule.warmup_steps=2", "eval_interval=100", "log_interval=100"]
    train(compose_train(f"schedule={schedule}", *shape, "max_steps=10"), tmp_path)
    cfg = set_keys(compose_train(f"schedule={schedule}", *shape, "max_steps=30"), resume=True)
    with caplog.at_level(logging.WARNING, logger="tinygpt"):
        train(cfg, tmp_path)
    factor = cosine if schedule == "cosine" else wsd
    before, after = (cfg.optim.lr * factor(10, n, warmup_steps=2) for n in (10, 30))
    (line,) = [r.getMessage() for r in caplog.records if "re-stretches" in r.getMessage()]
    assert f"max_steps 10 -> 30 re-stretches the {schedule} schedule" in line
    assert f"the lr at step 10 jumps from {before:.2e} to {after:.2e}" in line
    assert "schedule=wsd" in line if schedule == "cosine" else "before its decay began" in line


def test_a_resume_whose_lr_stays_put_says_nothing_about_the_schedule(tmp_path, caplog):
    shape = ["schedule=constant", "schedule.warmup_steps=2", "eval_interval=100", "log_interval=100"]
    train(compose_train(*shape, "max_steps=4"), tmp_path)
    with caplog.at_level(logging.WARNING, logger="tinygpt"):
        train(set_keys(compose_train(*shape, "max_steps=6"), resume=True), tmp_path)
    assert "re-stretches" not in caplog.text
