"""Every option of every config group composes and trains for two real steps."""

import json
import math
from pathlib import Path

import pytest
from conftest import compose_train, corpus_documents, fineweb_folder, sha256_of

from tinygpt.config.schema import conf_dir
from tinygpt.data import embedded_corpus_path
from tinygpt.data.tokenizers import BPETokenizer
from tinygpt.training.loop import train

GROUPS = [
    "model",
    "model/norm",
    "model/pos",
    "model/mlp",
    "optim",
    "schedule",
    "data",
    "data/tokenizer",
    "logger",
]
# Options that need a corpus named: the download ones fetch the embedded corpus from a file:// URL.
CORPUS = embedded_corpus_path()
NEEDS = {
    ("data", "text"): [f"data.path={CORPUS}"],
    ("data", "shakespeare_char"): [f"data.url=file://{CORPUS}", f"data.sha256={sha256_of(CORPUS)}"],
    ("data", "shakespeare_bpe"): [f"data.url=file://{CORPUS}", f"data.sha256={sha256_of(CORPUS)}"],
}


def group_options() -> list[tuple[str, str]]:
    root = Path(conf_dir())
    return [(g, f.stem) for g in GROUPS for f in sorted((root / g).glob("*.yaml"))]


def test_every_group_has_options():
    found = {g for g, _ in group_options()}
    assert found == set(GROUPS)


@pytest.mark.parametrize("group,option", group_options(), ids=lambda v: str(v))
def test_option_trains_two_steps(group, option, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")  # logger=wandb: no network, no account
    needs = NEEDS.get((group, option), [])
    if (group, option) == ("data", "shards"):  # shards as llm.c writes FineWeb, made here
        docs = corpus_documents()
        needs = fineweb_folder(tmp_path / "shards", BPETokenizer.train(docs, vocab_size=300), docs)[1:]
    cfg = compose_train(f"{group}={option}", *needs, "max_steps=2", "eval_interval=2")
    result = train(cfg, tmp_path / "run")
    assert result["step"] == 2
    assert math.isfinite(result["val_loss"])
    saved = json.loads((tmp_path / "run" / "effective_config.json").read_text())
    assert saved["max_steps"] == 2


def test_swapping_one_part_of_a_preset(tmp_path):
    cfg = compose_train("model=llama", "model/norm=layernorm", "max_steps=2")
    assert cfg.model.norm._target_ == "torch.nn.LayerNorm"
    assert cfg.model.pos._target_ == "tinygpt.model.RoPE"
    train(cfg, tmp_path)
