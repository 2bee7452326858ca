"""The bench command on the CPU (a smoke test: no timing is asserted) and the FLOP count behind MFU."""

import json

import pytest
from conftest import TINY, build_model, run_cli

from tinygpt.bench import main
from tinygpt.training.flops import flops_per_token


def test_bench_times_the_training_path_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    result = main(["--steps", "2", "--warmup", "1", "--peak-tflops", "1", "--json", str(out), *TINY])
    assert json.loads(out.read_text()) == result
    assert result["ms_per_step"] > 0 and result["tokens_per_s"] > 0
    vocab = 74  # characters of the embedded corpus
    assert (
        result["flops_per_step"] == flops_per_token(build_model(vocab_size=vocab), 32) * 4 * 32
    )  # batch 4 x 32
    assert 0 < result["mfu"] < 1 and result["peak_source"] == "--peak-tflops"
    assert result["model"] == "2L-4H-32E, block 32" and result["precision"] == "fp32"
    table = capsys.readouterr().out.splitlines()
    padded = main(["--steps", "1", "--warmup", "0", "--peak-tflops", "1", "--vocab-size", "512", *TINY])
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


@pytest.mark.parametrize(
    ("args", "message"), [(["--stepz", "3"], "unknown option --stepz"), (["--steps", "0"], "--steps")]
)
def test_bench_mistakes_are_one_line(args, message):
    proc = run_cli(*args, *TINY, module="tinygpt.bench")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error:") and message in proc.stderr
