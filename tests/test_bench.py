"""The bench command on the CPU (a smoke test: no timing is asserted) and the FLOP count behind MFU."""

import json

import pytest
import torch
from conftest import TINY, build_model, run_cli
from hydra import compose, initialize_config_dir

from tinygpt.bench import bench_args, cli, parse_args
from tinygpt.config.schema import conf_dir
from tinygpt.runtime.device import choose_precision
from tinygpt.training.flops import flops_per_token


def main(args: list[str]) -> dict:
    """``python -m tinygpt.bench ARGS`` in this process, its command line read as the command reads it."""
    overrides = bench_args(args)  # checks the keys, with Hydra's own config loader
    with initialize_config_dir(version_base="1.3", config_dir=conf_dir()):
        cfg = compose("bench", overrides=overrides)
    return cli(cfg)


def test_bench_times_the_training_path_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    result = main(["steps=2", "warmup=1", "peak_tflops=1", f"json={out}", *TINY])
    assert json.loads(out.read_text()) == result
    assert result["ms_per_step"] > 0 and result["tokens_per_s"] > 0
    vocab = 74  # characters of the embedded corpus
    assert (
        result["flops_per_step"] == flops_per_token(build_model(vocab_size=vocab), 32) * 4 * 32
    )  # batch 4 x 32
    assert 0 < result["mfu"] < 1 and result["peak_source"] == "peak_tflops"
    assert result["model"] == "2L-4H-32E, block 32"
    assert result["precision"] == choose_precision("auto", torch.device("cpu"))[0]  # what auto chose
    table = capsys.readouterr().out.splitlines()
    padded = main(
        ["--steps", "1", "--warmup", "0", "--peak-tflops", "1", "--vocab-size", "512", *TINY]
    )  # as once typed
    assert padded["params"] - result["params"] == (512 - vocab) * 32  # a wider (tied) embedding and head
    assert table[0].startswith("| device |") and table[2].startswith("| cpu, ")


def test_flops_per_token_counts_every_matmul_and_attention():
    L, d, T, V = 2, 32, 32, 50
    # gpt preset, tied: per layer qkv 3d^2 + proj d^2 + mlp 8d^2; the head V*d; attention 12*L*d*T
    assert flops_per_token(build_model(vocab_size=V), T) == 6 * (12 * L * d * d + V * d) + 12 * L * d * T
    untied = build_model("model.tie_weights=false", vocab_size=V)
    assert flops_per_token(untied, T) == flops_per_token(
        build_model(vocab_size=V), T
    )  # the wte lookup is free
    windowed = build_model("model.sliding_window=8", vocab_size=V)
    assert flops_per_token(windowed, T) == 6 * (12 * L * d * d + V * d) + 12 * L * d * 8


def test_the_former_options_mean_the_keys_and_training_overrides_pass_beside_them():
    args = ["--steps", "50", "model=llama", "--json", "b.json", "--eager-update", "n_layer=3"]
    assert bench_args(args) == [
        "steps='50'",
        "model=llama",
        "json='b.json'",
        "eager_update=true",
        "model.n_layer=3",
    ]
    assert parse_args(args) == (
        ["steps='50'", "json='b.json'", "eager_update=true"],
        ["model=llama", "model.n_layer=3"],
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stepz", "3"], "unknown option --stepz"),
        (["--steps", "0"], "steps must be a positive integer, got 0"),
        (["stepz=3"], "unknown key stepz; did you mean steps=3?"),
        (["warmup=-1"], "warmup must be >= 0"),
        (["max_step=3"], "unknown key max_step; did you mean max_steps=3"),
        (["n_layers=1"], "unknown key n_layers; did you mean"),
        (["--peak-tflops", "-5"], "peak_tflops must be a number > 0"),
        (["peak_tflops=0"], "peak_tflops must be a number > 0"),
        (["--vocab-size", "0"], "vocab_size must be a positive integer"),
        (["json=no_such_folder/b.json"], "its folder no_such_folder does not exist; create it first"),
        (["json=."], "json=. is a folder; name a file in it"),
    ],
)
def test_bench_mistakes_are_one_line(args, message, tmp_path):
    proc = run_cli(*args, *TINY, module="tinygpt.bench", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error:") and message in proc.stderr
    assert "| device |" not in proc.stdout  # refused before the timing, not after it


def test_a_flat_model_key_is_the_model_key_in_bench():
    assert bench_args(["n_layer=1", "steps=1"]) == ["model.n_layer=1", "steps=1"]


def test_bench_says_each_phase_before_it_starts(caplog):
    """Building, warm-up (compilation included) and timing each take a while on a real model: each is
    announced as it begins, in order, so the command is never silent for minutes."""
    with caplog.at_level("INFO", logger="tinygpt"):
        main(["steps=1", "warmup=1", "peak_tflops=1", *TINY])
    phases = [r.getMessage() for r in caplog.records if r.getMessage().startswith("bench: ")]
    assert phases == [
        "bench: building the model and its data on cpu",
        "bench: warm-up, 1 step(s)",
        "bench: timing 1 step(s)",
    ]
