"""The training command as a user runs it: learning, run-directory files, resume, clear errors."""

import json

import pytest
import torch
from conftest import TINY, assert_same_weights, compose_train, run_cli, set_keys, straight_and_resumed

from tinygpt.errors import UserError
from tinygpt.training.checkpoint import load_checkpoint
from tinygpt.training.loop import train


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_default_command_learns_and_writes_the_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(
        "max_steps=200",
        "batch_size=16",
        "model.block_size=64",
        "optim.lr=2e-3",
        "eval_interval=100",
        "eval_iters=10",
        "log_interval=50",
        "sample_interval=200",
        "sample_tokens=40",
        "schedule.warmup_steps=20",
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stderr
    for name in (
        "ckpt.pt",
        "ckpt_best.pt",
        "effective_config.json",
        "tokenizer.json",
        "metrics.jsonl",
        "train.log",
        ".hydra/config.yaml",
    ):
        assert (run_dir / name).is_file(), name
    metrics = read_metrics(run_dir)
    train_logs = [m for m in metrics if "train_loss" in m]
    assert [m["step"] for m in train_logs] == [1, 50, 100, 150, 200]  # step 1, then every log_interval
    assert all({"lr", "tokens_per_s"} <= m.keys() for m in train_logs)
    vals = [m["val_loss"] for m in metrics if "val_loss" in m]
    uniform = torch.log(
        torch.tensor(float(json.loads((run_dir / "tokenizer.json").read_text())["chars"].__len__()))
    )
    assert vals[-1] < uniform.item() - 1.5, vals  # far below the loss of guessing uniformly
    assert vals[-1] < vals[0]
    ckpt = load_checkpoint(run_dir / "ckpt.pt")
    assert ckpt["step"] == 200
    assert not any(k.startswith(("_orig_mod.", "module.")) for k in ckpt["model"])
    assert "sample at step 200" in (run_dir / "train.log").read_text()
    effective = json.loads((run_dir / "effective_config.json").read_text())
    assert effective["model"]["block_size"] == 64 and effective["ckpt_interval"] == 100


def test_resume_continues_from_the_saved_step(tmp_path):
    cfg = compose_train("max_steps=6", "eval_interval=3")
    train(cfg, tmp_path)
    first = load_checkpoint(tmp_path / "ckpt.pt")
    resumed = train(set_keys(compose_train("max_steps=10", "eval_interval=3"), resume=True), tmp_path)
    assert resumed["step"] == 10
    steps = [m["step"] for m in read_metrics(tmp_path) if "train_loss" in m]
    assert steps == list(range(1, 11))  # one record per step, no step done twice
    last = load_checkpoint(tmp_path / "ckpt.pt")
    assert last["step"] == 10
    assert not torch.equal(last["model"]["transformer.wte.weight"], first["model"]["transformer.wte.weight"])


def test_resume_drops_records_after_the_checkpoint_and_a_half_written_line(tmp_path):
    train(compose_train("max_steps=4", "ckpt_interval=2", "eval_interval=100"), tmp_path)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "train_lo')  # a kill in the middle of a write
    ckpt = load_checkpoint(tmp_path / "ckpt.pt")
    assert ckpt["step"] == 4
    train(
        set_keys(compose_train("max_steps=6", "ckpt_interval=2", "eval_interval=100"), resume=True), tmp_path
    )
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records if "train_loss" in r] == [1, 2, 3, 4, 5, 6]
    assert all(r["time"] > 0 for r in records)


def test_resume_matches_an_uninterrupted_run(tmp_path):
    assert_same_weights(*straight_and_resumed(["eval_interval=4"], tmp_path, total=8, stop=4))


def test_a_new_run_never_overwrites_an_existing_one(tmp_path):
    train(compose_train("max_steps=2"), tmp_path)
    before = (tmp_path / "ckpt.pt").read_bytes()
    with pytest.raises(UserError, match="resume=true"):
        train(compose_train("max_steps=2"), tmp_path)
    assert (tmp_path / "ckpt.pt").read_bytes() == before


def test_resume_refuses_a_different_model_shape_naming_the_key(tmp_path):
    train(compose_train("max_steps=2"), tmp_path)
    with pytest.raises(UserError, match="differs from the checkpoint's \\(model.n_layer 2 -> 3\\)"):
        train(set_keys(compose_train("max_steps=4", "model.n_layer=3"), resume=True), tmp_path)


def edit_checkpoint(path, change):
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


# A resume that cannot work: (what the command adds, how the checkpoint was damaged, the message).
BAD_RESUMES = {
    "another optimizer": (
        ["optim=lion"],
        None,
        "optim._target_ tinygpt.training.optim.adamw -> tinygpt.training.optim.Lion",
    ),
    "another precision": (["precision=fp16"], None, " -> fp16); drop those overrides"),  # from auto's choice
    "weights of another shape": (
        [],
        lambda s: s["model"].update({"transformer.wte.weight": torch.zeros(3, 3)}),
        "saved state does not fit this run (Error(s) in loading state_dict",
    ),
    "step is text": ([], lambda s: s.update(step="7"), "has a str as its 'step' entry"),
    "no optimizer state": ([], lambda s: s.pop("optimizer"), "has no 'optimizer' entry"),
    "optimizer state of another kind": (
        [],
        lambda s: s["optimizer"]["param_groups"].pop(),
        "saved state does not fit this run",
    ),
}


@pytest.mark.parametrize("case", BAD_RESUMES)
def test_a_resume_that_cannot_work_is_one_line_and_changes_nothing(case, tmp_path):
    extra, damage, message = BAD_RESUMES[case]
    run_dir = tmp_path / "run"
    assert run_cli(*TINY, "max_steps=2", f"hydra.run.dir={run_dir}").returncode == 0
    if damage:
        edit_checkpoint(run_dir / "ckpt.pt", damage)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    proc = run_cli(*TINY, "max_steps=4", f"hydra.run.dir={run_dir}", "resume=true", *extra)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert str(run_dir / "ckpt.pt") in errors[0]
    after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != "train.log"}
    assert after == {k: v for k, v in before.items() if k != "train.log"}


def test_resume_of_a_corrupt_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "ckpt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="corrupt"):
        train(set_keys(compose_train("max_steps=2"), resume=True), tmp_path)


ERRORS = {
    "unknown group option": (["model=gpt5"], "gpt5"),
    "unknown key": (["model.n_layr=3"], "n_layr"),
    "n_embd not divisible by n_head": (
        ["model.n_embd=30"],
        "model.n_embd (30) must be divisible by model.n_head",
    ),
    "n_head not divisible by n_kv_head": (["model.n_kv_head=3"], "divisible by model.n_kv_head (3)"),
    "block_size beyond the data": (
        ["model.block_size=5000000"],
        "too few for one window of model.block_size",
    ),
    "missing data file": (["data.path=/nonexistent/corpus.txt"], "does not exist"),
    "bad device": (["device=tpu"], "Invalid value 'tpu', expected one of [auto, cpu, cuda, mps]"),
    "batch not divisible by accumulation": (["grad_accum_steps=3"], "divisible by grad_accum_steps"),
}


@pytest.mark.parametrize("case", ERRORS)
def test_user_mistakes_get_one_clear_line(case, tmp_path):
    overrides, message = ERRORS[case]
    run_dir = tmp_path / "run"
    proc = run_cli(*TINY, "max_steps=1", f"hydra.run.dir={run_dir}", *overrides)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (run_dir / "ckpt.pt").exists()


def test_a_run_ends_with_a_summary_and_warns_when_warmup_outlasts_it(tmp_path):
    proc = run_cli(*TINY, "max_steps=6", "eval_interval=3", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    log = proc.stdout + proc.stderr
    assert "schedule.warmup_steps=100 >= max_steps=6" in log
    [summary] = [line for line in log.splitlines() if "done: 6 steps" in line]
    assert f"python -m tinygpt.generate run={tmp_path}" in summary and "val loss" in summary
    proc = run_cli(*TINY, "max_steps=6", "schedule.warmup_steps=2", f"hydra.run.dir={tmp_path / 'b'}")
    assert "warmup_steps" not in proc.stdout + proc.stderr


def test_stop_at_val_loss_ends_the_run_at_the_first_evaluation_that_reaches_it(tmp_path):
    reached = train(compose_train("max_steps=12", "eval_interval=4", "stop_at_val_loss=100"), tmp_path / "a")
    assert reached["step"] == 4 and reached["val_loss"] <= 100
    assert load_checkpoint(tmp_path / "a" / "ckpt.pt")["step"] == 4  # the stopped run is saved where it ended
    records = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in records) == 4
    never = train(compose_train("max_steps=8", "eval_interval=4", "stop_at_val_loss=0.0"), tmp_path / "b")
    assert never["step"] == 8
