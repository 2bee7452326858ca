"""Evaluation: ``python -m tinygpt.eval`` scores every token once, bits per byte counts the bytes of
the text (char and BPE, multi-byte characters included), training logs val_bpb, and mistakes get one
clear line."""

import json
import math

import numpy as np
import pytest
import torch
from conftest import compose_eval, compose_train, edited_copy, run_cli
from hydra.utils import instantiate

from tinygpt.data import BPETokenizer
from tinygpt.errors import exit_on_user_error
from tinygpt.eval import cli
from tinygpt.evaluation.evaluate import split_tokens
from tinygpt.inference.run import load_run
from tinygpt.training.loop import train

BLOCK = 32  # TINY's model.block_size
# Accented letters in the training text; "🙂", "日本" and "ß" appear only in text evaluated later,
# so BPE spells them in single bytes: a token holds part of a character.
LINE = "{i}: the café on rue {j} serves crème brûlée to Zoë and Jürgen, naïve as ever.\n"
UNSEEN = "Hello from the café: 🙂 日本 Grüße and crème brûlée for Zoë.\n" * 3


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("eval_corpus") / "corpus.txt"
    path.write_text("".join(LINE.format(i=i, j=i % 7) for i in range(45)), encoding="utf-8")
    return path


def train_run(root, corpus, *overrides: str):
    cfg = compose_train("data=text", f"data.path={corpus}", "max_steps=4", "eval_interval=2", *overrides)
    train(cfg, root)
    return root, cfg


@pytest.fixture(scope="module")
def char_run(tmp_path_factory, corpus):
    return train_run(tmp_path_factory.mktemp("char_run"), corpus, "ema_decay=0.9")


@pytest.fixture(scope="module")
def bpe_run(tmp_path_factory, corpus):
    return train_run(
        tmp_path_factory.mktemp("bpe_run"), corpus, "data/tokenizer=bpe", "data.tokenizer.vocab_size=300"
    )


def set_data(state: dict, **values) -> None:
    """Change the data config stored in a checkpoint."""
    state["config"]["data"].update(values)


def evaluate(*overrides: str) -> dict:
    return cli(compose_eval("device=cpu", *overrides))


def brute_force_nats(model, ids: np.ndarray, stride: int) -> float:
    """-ln p of every token but the first, one forward pass per token over the context the documented
    windows give it: windows start every ``stride`` tokens, the last one ends at the last token, and a
    token is scored in the first window that predicts it."""
    n = len(ids)
    starts = [*range(0, n - 1 - BLOCK, stride), max(n - 1 - BLOCK, 0)]
    x = torch.from_numpy(ids.astype(np.int64))
    total = 0.0
    with torch.no_grad():
        for t in range(1, n):
            s = next(s for s in starts if s < t <= s + BLOCK)
            logp = torch.log_softmax(model(x[None, s:t])[0, -1].double(), dim=-1)
            total -= logp[x[t]].item()
    return total


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("stride", [BLOCK, 12])
def test_the_whole_val_split_as_training_saw_it_is_scored_token_by_token(char_run, stride):
    run_dir, cfg = char_run
    run = load_run(run_dir, device="cpu")
    ids = split_tokens(compose_eval(f"run={run_dir}"), run)
    assert np.array_equal(ids, instantiate(cfg.data).val)  # the very ids training validated on
    result = evaluate(f"run={run_dir}", f"stride={stride}", "batch_size=3")
    assert result["tokens"] == len(ids) - 1  # every token but the first, once
    expected = brute_force_nats(run.model, np.asarray(ids), stride)
    assert result["loss"] * result["tokens"] == pytest.approx(expected, rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(result["loss"]))
    assert result["step"] == 4 and result["split"] == "val" and result["stride"] == stride


def test_char_bits_per_byte_count_utf8_bytes(char_run, tmp_path):
    run_dir, _ = char_run
    ascii_text = tmp_path / "ascii.txt"
    ascii_text.write_text("the cafe on rue 5 serves creme brulee to Zoe and Jurgen.\n" * 4, encoding="utf-8")
    plain = evaluate(f"run={run_dir}", f"text={ascii_text}")
    assert plain["bytes"] == plain["tokens"]  # one byte per character
    assert plain["bits_per_byte"] == pytest.approx(plain["loss"] / math.log(2))

    run = load_run(run_dir, device="cpu")
    ids = split_tokens(compose_eval(f"run={run_dir}"), run)
    accented = evaluate(f"run={run_dir}")  # the val split: é, è, û, ë, ü are 2 bytes each
    n_bytes = len(run.tokenizer.decode(ids[1:]).encode("utf-8"))
    assert accented["bytes"] == n_bytes > accented["tokens"]
    assert accented["bits_per_byte"] == pytest.approx(
        accented["loss"] * accented["tokens"] / math.log(2) / n_bytes
    )


def test_bpe_bits_per_byte_count_the_bytes_of_the_text(bpe_run, tmp_path):
    run_dir, _ = bpe_run
    text = tmp_path / "unseen.txt"
    text.write_text(UNSEEN, encoding="utf-8")
    result = evaluate(f"run={run_dir}", f"text={text}")
    assert result["tokenizer"] == "bpe"
    first = load_run(run_dir, device="cpu").tokenizer.encode(UNSEEN)[:1]  # context only, never predicted
    assert first.tolist() and UNSEEN.startswith("H")  # an ASCII first token: its bytes are its text
    n_bytes = len(UNSEEN.encode("utf-8")) - len(load_run(run_dir, device="cpu").tokenizer.decode(first))
    assert result["bytes"] == n_bytes
    assert result["bits_per_byte"] == pytest.approx(result["loss"] * result["tokens"] / math.log(2) / n_bytes)


def test_training_logs_val_loss_in_bits_per_byte(char_run):
    run_dir, cfg = char_run
    val = instantiate(cfg.data).val
    tokenizer = load_run(run_dir, device="cpu").tokenizer
    bytes_per_token = len(tokenizer.decode(val).encode("utf-8")) / len(val)
    assert bytes_per_token > 1  # the accented letters
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in evals] == [2, 4]
    for r in evals:
        assert r["val_bpb"] == pytest.approx(r["val_loss"] / math.log(2) / bytes_per_token)
        assert r["ema_val_bpb"] == pytest.approx(r["ema_val_loss"] / math.log(2) / bytes_per_token)


def test_other_data_is_tokenized_by_the_run_and_stored_cache_dirs_are_ignored(char_run, corpus, tmp_path):
    run_dir, _ = char_run
    elsewhere = tmp_path / "named_by_the_run"
    copy = edited_copy(run_dir, tmp_path / "copy", lambda state: set_data(state, cache_dir=str(elsewhere)))
    assert evaluate(f"run={copy}")["tokens"] > 0
    assert not elsewhere.exists()  # the token cache is this command's (TINYGPT_CACHE here)

    other = tmp_path / "other.txt"
    other.write_text("Zoë and Jürgen, the café.\n" * 40, encoding="utf-8")
    result = evaluate(f"run={run_dir}", "data=text", f"data.path={other}", "split=train")
    n = len(load_run(run_dir, device="cpu").tokenizer.encode(other.read_text(encoding="utf-8")))
    assert result["tokens"] == int(n * 0.9) - 1 and result["data"] == "command line"


def test_the_cli_prints_json_and_writes_out_once(char_run, tmp_path):
    run_dir, _ = char_run
    text = tmp_path / "t.txt"
    text.write_text("the café on rue 3.\n" * 5, encoding="utf-8")
    out = tmp_path / "result.json"
    proc = run_cli(f"run={run_dir}", f"text={text}", f"out={out}", module="tinygpt.eval", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == result
    assert result["text"] == str(text) and result["split"] is None and result["tokens"] == 94
    assert "bits per byte" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json", "t.txt"]  # no outputs/, no .hydra

    proc = run_cli(f"run={run_dir}", f"text={text}", f"out={out}", module="tinygpt.eval", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: out={out} exists; an evaluation never replaces one: remove it or pick another name"
    )
    assert json.loads(out.read_text()) == result


ERRORS = {
    "no run": ([], "run is required"),
    "missing run dir": (["run={missing}"], "does not exist; pass run="),
    "bad ckpt": (["run={run}", "ckpt=middle"], "ckpt must be one of latest, best"),
    "missing text": (["run={run}", "text={missing}"], "text {missing} does not exist"),
    "char outside the vocabulary": (["run={run}", "text={unseen}"], "is not in this char-level vocabulary"),
    "bad split": (["run={run}", "split=test"], "split must be one of val, train"),
    "stride past block_size": (["run={run}", "stride=33"], "stride=33 is more than model.block_size=32"),
    "zero stride": (["run={run}", "stride=0"], "stride must be a positive integer"),
    "text and data": (["run={run}", "text={unseen}", "data=tiny"], "not both"),
    "unsafe data target": (
        ["run={unsafe}"],
        "'tinygpt.training.checkpoint.save_checkpoint', which is not one of TinyGPT's data components",
    ),
}


@pytest.fixture(scope="module")
def unsafe_run(char_run, tmp_path_factory):
    """A run whose stored data config names a function that writes files."""
    copy = tmp_path_factory.mktemp("unsafe") / "run"
    return edited_copy(
        char_run[0],
        copy,
        lambda state: set_data(state, _target_="tinygpt.training.checkpoint.save_checkpoint"),
    )


@pytest.mark.parametrize("case", ERRORS)
def test_user_mistakes_get_one_clear_line(case, char_run, unsafe_run, tmp_path, capsys):
    unseen = tmp_path / "unseen.txt"
    unseen.write_text(UNSEEN, encoding="utf-8")
    names = {"run": char_run[0], "missing": tmp_path / "nope", "unseen": unseen, "unsafe": unsafe_run}
    overrides, message = ERRORS[case]
    with pytest.raises(SystemExit) as exit_info:
        exit_on_user_error(cli)(compose_eval(*(o.format(**names) for o in overrides)))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message.format(**names) in err, err


def test_bytes_per_token_of_tokenizers_from_elsewhere():
    """A char vocabulary exported as a Hugging Face WordLevel tokenizer (decoded by joining its tokens)
    spells its text as it is; a SentencePiece-style one says nothing certain: no bits per byte."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models

    chars = "\na é🙂"
    joined = HFTokenizer(models.WordLevel({c: i for i, c in enumerate(chars)}, unk_token="<unk>"))
    joined.decoder = decoders.Fuse()
    assert BPETokenizer(joined).token_bytes().tolist() == [1, 1, 1, 2, 4]
    pieces = HFTokenizer(models.WordLevel({"▁the": 0, "<0x0A>": 1}, unk_token="<unk>"))
    pieces.decoder = decoders.Metaspace()
    assert BPETokenizer(pieces).token_bytes() is None
