"""The recipe inside the real loop: every optimizer and precision learns, nothing is lost on a kill,
and a non-finite step never reaches the weights."""

import contextlib
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from conftest import REPO, TINY, build_model, checkpoint_written, compose_train, run_cli, set_keys, start_cli

from tinygpt.errors import UserError
from tinygpt.model import GPT
from tinygpt.training.checkpoint import load_checkpoint, save_checkpoint
from tinygpt.training.flops import flops_per_token
from tinygpt.training.loop import train


def metrics(run_dir, key):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if key in r]


LEARNING_RATES = {"adamw": 3e-3, "adamw8bit": 3e-3, "lion": 1e-3, "muon": 3e-3, "sgd": 0.3}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("optim", list(LEARNING_RATES))
def test_every_optimizer_learns_in_20_steps(optim, precision, tmp_path):
    cfg = compose_train(
        f"optim={optim}",
        f"optim.lr={LEARNING_RATES[optim]}",
        f"precision={precision}",
        "max_steps=20",
        "eval_interval=20",
        "schedule.warmup_steps=2",
        "batch_size=16",
    )
    train(cfg, tmp_path)
    losses = [r["train_loss"] for r in metrics(tmp_path, "train_loss")]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3, losses


def test_fp16_uses_a_grad_scaler_whose_state_is_checkpointed(tmp_path):
    train(compose_train("precision=fp16", "max_steps=3"), tmp_path)
    scaler = load_checkpoint(tmp_path / "ckpt.pt")["scaler"]
    assert scaler["scale"] == 2.0**16 and scaler["_growth_tracker"] == 3  # three finite steps counted
    train(set_keys(compose_train("precision=fp16", "max_steps=5"), resume=True), tmp_path)
    assert load_checkpoint(tmp_path / "ckpt.pt")["scaler"]["_growth_tracker"] == 5  # resumed, not restarted


def test_metrics_carry_grad_norm_tokens_and_ema_val_loss(tmp_path):
    train(compose_train("max_steps=4", "eval_interval=2", "ema_decay=0.9"), tmp_path)
    logs = metrics(tmp_path, "train_loss")
    assert all(r["grad_norm"] > 0 for r in logs)
    assert [r["tokens_seen"] for r in logs] == [4 * 32 * s for s in (1, 2, 3, 4)]  # batch 4 x block 32
    per_token = flops_per_token(build_model(vocab_size=74), 32)  # the embedded corpus has 74 characters
    assert all(r["tflops"] == pytest.approx(r["tokens_per_s"] * per_token / 1e12) for r in logs)
    assert all("mfu" not in r for r in logs)  # no peak is known for a CPU without measuring it
    evals = metrics(tmp_path, "val_loss")
    assert [r["step"] for r in evals] == [2, 4] and all("ema_val_loss" in r for r in evals)
    ckpt = load_checkpoint(tmp_path / "ckpt.pt")
    assert ckpt["ema"].keys() == ckpt["model"].keys()
    assert not torch.equal(ckpt["ema"]["transformer.wte.weight"], ckpt["model"]["transformer.wte.weight"])


@contextlib.contextmanager
def forward_hook(hook):
    """Run ``hook(module, inputs, output)`` after every GPT forward in the block (torch's global hook)."""
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda module, inputs, output: hook(module, inputs, output) if isinstance(module, GPT) else None
    )
    try:
        yield
    finally:
        handle.remove()


def test_curriculum_block_size_seen_by_the_model(tmp_path):
    seen = []
    cfg = compose_train(
        "max_steps=8",
        "eval_interval=100",
        "eval_iters=1",
        "curriculum_start_block_size=8",
        "curriculum_steps=6",
    )
    with forward_hook(
        lambda module, inputs, output: seen.append(inputs[0].shape[1]) if module.training else None
    ):
        train(cfg, tmp_path)
    # target 8 + 24 * step / 6 rounded down to multiples of 8: steps 0-1 -> 8, 2-3 -> 16, 4-5 -> 24, 6+ -> 32
    assert seen == [8, 8, 16, 16, 24, 24, 32, 32]
    assert [r["block_size"] for r in metrics(tmp_path, "block_size")] == [8, 8, 16, 16, 24, 24, 32, 32]


def diverging(module, inputs, output):
    return output * float("nan")


def test_a_non_finite_step_never_reaches_the_weights(tmp_path):
    train(compose_train("max_steps=2"), tmp_path)
    before = load_checkpoint(tmp_path / "ckpt.pt")
    with forward_hook(diverging):
        train(set_keys(compose_train("max_steps=3"), resume=True), tmp_path)
    after = load_checkpoint(tmp_path / "ckpt.pt")
    assert after["step"] == 3 and after["skipped_total"] == 1
    for name, w in before["model"].items():
        assert torch.equal(w, after["model"][name]), name
    train(set_keys(compose_train("max_steps=4"), resume=True), tmp_path)  # and the run carries on
    resumed = load_checkpoint(tmp_path / "ckpt.pt")
    assert resumed["skipped_in_a_row"] == 0
    assert not torch.equal(
        resumed["model"]["transformer.wte.weight"], before["model"]["transformer.wte.weight"]
    )


def test_persistent_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    train(compose_train("max_steps=2"), tmp_path)
    good = (tmp_path / "ckpt.pt").read_bytes()
    with (
        forward_hook(diverging),
        pytest.raises(UserError, match="3 non-finite losses or gradients in a row") as stop,
    ):
        train(set_keys(compose_train("max_steps=10", "max_skipped_steps=3"), resume=True), tmp_path)
    assert (tmp_path / "ckpt.pt").read_bytes() == good
    assert f"the last good checkpoint is {tmp_path / 'ckpt_best.pt'} (val loss" in str(stop.value)


def test_the_skip_limit_holds_between_log_lines(tmp_path):
    """The loop checks for divergence only when it syncs anyway (log, eval, checkpoint); skips in a
    row between two log lines still count."""
    cfg = compose_train("max_steps=10", "max_skipped_steps=3", "log_interval=5", "eval_interval=100")
    with forward_hook(diverging), pytest.raises(UserError, match="stopped at step 5: 5 non-finite"):
        train(cfg, tmp_path)


KILL_ARGS = [a for a in TINY if not a.startswith("log_interval")] + [
    "model.n_embd=64",
    "batch_size=16",
    "max_steps=300",
    "ckpt_interval=25",
    "eval_interval=1000",
    "log_interval=25",
]


def _final_weights(run_dir):
    return load_checkpoint(run_dir / "ckpt.pt")["model"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",
    [[], ["ema_decay=0.95", "grad_accum_steps=2", "model.dropout=0.1"]],
    ids=["plain", "ema+accum+dropout"],
)
def test_sigkill_then_resume_ends_bitwise_equal_to_an_uninterrupted_run(extra, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    proc = run_cli(*KILL_ARGS, *extra, f"hydra.run.dir={straight}")
    assert proc.returncode == 0, proc.stderr
    child = start_cli(*KILL_ARGS, *extra, f"hydra.run.dir={killed}", until=checkpoint_written(killed))
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert load_checkpoint(killed / "ckpt.pt")["step"] < 300
    proc = run_cli(*KILL_ARGS, *extra, f"hydra.run.dir={killed}", "resume=true")
    assert proc.returncode == 0, proc.stderr
    a, b = _final_weights(straight), _final_weights(killed)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    if extra:
        ea, eb = load_checkpoint(straight / "ckpt.pt")["ema"], load_checkpoint(killed / "ckpt.pt")["ema"]
        assert all(torch.equal(ea[n], eb[n]) for n in ea)
    steps = [r["step"] for r in metrics(killed, "train_loss")]
    assert steps == sorted(set(steps)) and steps[-1] == 300  # no step logged twice after the resume


CRASH_WRITER = """
import os, sys, torch
from tinygpt.training.checkpoint import save_checkpoint
path = sys.argv[1]
save_checkpoint({"model": {"w": torch.ones(3)}, "step": 1}, path)
real_save = torch.save
def crash_midway(obj, f, *a, **k):
    f.write(b"PK\\x03\\x04 half a checkpoint")
    f.flush()
    os._exit(9)  # the process dies while the new checkpoint is half written
torch.save = crash_midway
save_checkpoint({"model": {"w": torch.zeros(3)}, "step": 2}, path)
"""


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_one_loadable(tmp_path):
    path = tmp_path / "ckpt.pt"
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_WRITER, str(path)], env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    assert proc.returncode == 9
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["model"]["w"], torch.ones(3))
    save_checkpoint({"model": {}, "step": 3}, path)
    assert load_checkpoint(path)["step"] == 3


@pytest.mark.slow
def test_compile_and_grad_checkpointing_train_and_save_plain_weights(tmp_path):
    train(compose_train("compile=true", "grad_checkpointing=true", "max_steps=3"), tmp_path)
    state = load_checkpoint(tmp_path / "ckpt.pt")["model"]
    assert not any(k.startswith(("_orig_mod.", "module.")) for k in state)


def test_recipe_errors_are_clear(tmp_path):
    proc = run_cli(*TINY, "precision=fp8", f"hydra.run.dir={tmp_path}")
    assert (
        proc.returncode != 0
        and "Invalid value 'fp8', expected one of [auto, fp32, bf16, fp16]" in proc.stderr
    )
    assert "Traceback" not in proc.stderr
    with pytest.raises(UserError, match="curriculum_start_block_size"):
        train(compose_train("curriculum_start_block_size=64"), tmp_path)
    with pytest.raises(UserError, match="decay_shape"):
        train(compose_train("schedule=wsd", "schedule.decay_shape=cubic"), tmp_path)


def test_a_terminal_gets_a_progress_bar_and_the_log_file_keeps_every_line(tmp_path):
    import pty

    leader, follower = pty.openpty()
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tinygpt.train",
            *TINY,
            "max_steps=6",
            "log_interval=2",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    assert proc.wait() == 0
    text = screen.decode(errors="replace")
    assert "6/6" in text and "ETA" in text and "tok/s" in text
    assert "step 2/6 |" not in text  # the bar replaces per-step lines on a terminal ...
    assert "step 2/6 |" in (run_dir / "train.log").read_text()  # ... but the log file keeps them


CUDA_GRAPH_REFUSALS = {
    "on a CPU": ([], "a CUDA graph needs a CUDA device, and this run is on cpu; set cuda_graph=false"),
    "inside reduce-overhead's graphs": (
        ["compile=true", "compile_mode=reduce-overhead"],
        "with cuda_graph=true use compile_mode=default, or compile=false",
    ),
    "with grad_checkpointing": (
        ["grad_checkpointing=true"],
        "cuda_graph=true cannot record grad_checkpointing",
    ),
}


@pytest.mark.parametrize("case", CUDA_GRAPH_REFUSALS)
def test_cuda_graph_where_it_cannot_record_the_step_is_one_line_before_any_file(case, tmp_path):
    """cuda_graph=true records the step on one CUDA device (training/graphs.py GraphedStep, checked on a
    GPU by benchmarks/cuda_graph_check.py step): elsewhere it says why, and writes no run files."""
    extra, message = CUDA_GRAPH_REFUSALS[case]
    proc = run_cli(*TINY, "cuda_graph=true", *extra, f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert not (tmp_path / "run" / "effective_config.json").exists()


def test_compile_mode_reaches_torch_compile_and_the_wait_is_announced(tmp_path, monkeypatch, caplog):
    modes = []
    monkeypatch.setattr(torch, "compile", lambda module, mode=None: modes.append(mode) or module)
    with caplog.at_level("INFO", logger="tinygpt"):
        train(compose_train("compile=true", "compile_mode=reduce-overhead", "max_steps=1"), tmp_path)
    assert modes == ["reduce-overhead"]
    assert "compiling the model (mode reduce-overhead)" in caplog.text


def test_the_first_step_and_the_final_evaluation_are_announced(tmp_path, caplog):
    """Off a terminal: the first step's loss is logged at once (not after log_interval steps), and the
    final evaluation says what it is doing before it runs, as does the first (its time is unknown)."""
    args = ("max_steps=6", "log_interval=5", "eval_interval=2", "eval_iters=3")
    with caplog.at_level("INFO", logger="tinygpt"):
        train(compose_train(*args), tmp_path)
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(" |")[0] for line in lines if " | loss " in line] == [
        "step 1/6",
        "step 5/6",
        "step 6/6",
    ]
    announced = [line for line in lines if "evaluating" in line]
    assert (
        announced[0] == "step 2: evaluating (3 batches)" and announced[-1] == "step 6: evaluating (3 batches)"
    )
    assert lines.index(announced[-1]) < next(
        i for i, line in enumerate(lines) if line.startswith("step 6 | val_loss")
    )
    assert [r["step"] for r in metrics(tmp_path, "train_loss")] == [1, 5, 6]
