"""``tinygpt.eval documents=separate`` scores a folder of documents as lm-evaluation-harness's rolling
loglikelihood does: computed here by hand, from lm-eval's window rule, on the exported transformers
model (char and BPE); ``documents=joined`` (the default) keeps the numbers of one joined sequence."""

import math

import numpy as np
import pytest
import torch
from conftest import compose_eval, compose_train

from tinygpt.errors import UserError
from tinygpt.eval import cli
from tinygpt.inference.run import load_run, model_config
from tinygpt.training.loop import train

pytestmark = pytest.mark.usefixtures("one_thread")

BLOCK = 32  # TINY's model.block_size: documents longer than it take several windows
LINE = "{i}: the café on rue {j} serves crème brûlée to Zoë, naïve as ever.\n"
DOCUMENTS = [  # made of the training text's characters (a char vocabulary knows only those)
    "".join(LINE.format(i=i, j=i % 5) for i in range(3)),  # ~200 characters: 7 windows
    "the café",  # shorter than a window
    "Z",  # one token: scored from the prefix alone
    LINE.format(i=7, j=1) * 2,
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("documents_corpus") / "corpus.txt"
    path.write_text("".join(LINE.format(i=i, j=i % 7) for i in range(40)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("documents")
    for i, text in enumerate(DOCUMENTS):
        (path / f"doc{i}.txt").write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module", params=["char", "bpe"])
def run_dir(request, tmp_path_factory, corpus):
    overrides = ["data/tokenizer=bpe", "data.tokenizer.vocab_size=300"] if request.param == "bpe" else []
    root = tmp_path_factory.mktemp(f"{request.param}_run")
    train(compose_train("data=text", f"data.path={corpus}", "max_steps=4", *overrides), root)
    return root


def rolling_windows(tokens: list[int], prefix: int, max_length: int) -> list[tuple[list[int], list[int]]]:
    """lm-eval's get_rolling_token_windows (context_len=1) then make_disjoint_window: (inputs' context,
    predicted tokens) pairs, every token predicted once, the first after ``prefix``."""
    windows = [([prefix] + tokens[: min(max_length, len(tokens)) - 1], tokens[:max_length])]
    predicted = len(windows[0][1])
    while predicted < len(tokens):
        n = min(len(tokens) - predicted, max_length)
        end = predicted + n
        windows.append((tokens[end - max_length - 1 : end - 1], tokens[end - n : end]))
        predicted += n
    return [(context[: len(context) - (len(targets) - 1)], targets) for context, targets in windows]


def lm_eval_bits_per_byte(hf, tokenizer, prefix: int) -> tuple[float, int]:
    """lm-eval's bits_per_byte over DOCUMENTS: the summed loglikelihood of each document's windows
    (inputs: the last max_length + 1 of context + targets, less the last) over the documents' bytes."""
    nats, tokens = 0.0, 0
    for text in DOCUMENTS:
        for context, targets in rolling_windows(tokenizer.encode(text).tolist(), prefix, BLOCK):
            inputs = (context + targets)[-(BLOCK + 1) :][:-1]
            with torch.no_grad():
                logits = hf(torch.tensor([inputs])).logits[0, -len(targets) :].double()  # (n, V)
            nats -= torch.log_softmax(logits, -1)[torch.arange(len(targets)), targets].sum().item()
            tokens += len(targets)
    n_bytes = sum(len(text.encode("utf-8")) for text in DOCUMENTS)
    return nats / math.log(2) / n_bytes, tokens


def test_separate_documents_score_as_lm_eval_scores_the_exported_model(run_dir, folder):
    pytest.importorskip("transformers")
    from tinygpt.hf.export import exported_model

    run = load_run(run_dir, device="cpu")
    hf = exported_model(model_config(run.state, run.path)[0], run.model, run.tokenizer)
    prefix = hf.config.bos_token_id  # <|endoftext|>: the char export's added id V, BPE's own
    expected, tokens = lm_eval_bits_per_byte(hf, run.tokenizer, prefix)

    separate = cli(compose_eval(f"run={run_dir}", f"text={folder}", "device=cpu", "documents=separate"))
    assert separate["documents"] == "separate"
    assert separate["tokens"] == tokens == sum(len(run.tokenizer.encode(t)) for t in DOCUMENTS)
    assert separate["bytes"] == sum(len(t.encode("utf-8")) for t in DOCUMENTS)
    assert separate["bits_per_byte"] == pytest.approx(expected, abs=1e-5)

    joined = cli(compose_eval(f"run={run_dir}", f"text={folder}", "device=cpu"))
    assert joined["documents"] == "joined"
    assert abs(joined["bits_per_byte"] - expected) > 1e-3  # the conventions differ: one sequence
    ids = np.concatenate([run.tokenizer.encode(t) for t in DOCUMENTS])
    eot = run.tokenizer.eot_id  # BPE's separator between documents; char has none
    assert joined["tokens"] == len(ids) - 1 + (0 if eot is None else len(DOCUMENTS) - 1)


def test_separate_documents_need_text_before_a_run_is_loaded(tmp_path):
    with pytest.raises(UserError, match="documents=separate scores the files of text="):
        cli(compose_eval(f"run={tmp_path / 'no_run'}", "device=cpu", "documents=separate"))
