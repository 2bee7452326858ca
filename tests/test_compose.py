"""Every option of every config group composes and trains for two real steps."""

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO, compose_train, corpus_documents, fineweb_folder, sha256_of

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


def test_every_commands_conf_composes_from_ones_own_python_after_importing_tinygpt_config(tmp_path):
    """A fresh interpreter outside the repository imports tinygpt.config (the one line
    docs/configuration.md asks for, whose own block test_readme runs), then composes each command's
    YAML from a plain path: every schema the YAML files name is registered by that import."""
    names = sorted(path.stem for path in Path(conf_dir()).glob("*.yaml"))
    script = textwrap.dedent(
        f"""
        import tinygpt.config
        from hydra import compose, initialize_config_dir
        with initialize_config_dir(version_base="1.3", config_dir={conf_dir()!r}):
            print(*[type(compose(name)).__name__ for name in {names!r}])
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert len(names) == 7 and proc.stdout.split() == ["DictConfig"] * 7
