"""The shipped experiments cannot rot: every file in conf/experiment/ composes, with every value its
sweep names, and trains; an Optuna one finishes a 2-trial search; and every command of the
original_readme section of experiments/README.md runs for a few steps, shrunk to a tiny model."""

import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TINY, compose_train, corpus_documents, prepared_folder, run_cli
from omegaconf import DictConfig

from tinygpt.config.argv import check_keys, translate_argv
from tinygpt.config.jsonconfig import splice_json_config
from tinygpt.config.overrides import parse_override
from tinygpt.config.schema import conf_dir
from tinygpt.data import embedded_corpus_path
from tinygpt.data.tokenizers import BPETokenizer
from tinygpt.training.loop import train

EXPERIMENTS = sorted(p.stem for p in (Path(conf_dir()) / "experiment").glob("*.yaml"))
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
# Experiments on downloaded corpora read a local text instead: tests never reach the network.
LOCAL_TEXT = f"data.path={embedded_corpus_path()}"
# GPU recipes (shakespeare_speedrun) use bf16 and CUDA graphs: here their recipe is checked, not their speed.
SHORT = [
    *("max_steps=2", "eval_interval=2", "eval_iters=2"),
    *("compile=false", "precision=fp32", "cuda_graph=false"),
]

# The GPT-2-size recipe, shrunk to a CPU size (its FP8 head needs a Hopper GPU): test_speedrun_recipes.
SHRUNK = {
    "gpt2_speedrun": [
        *("model.n_layer=2", "model.n_head=2", "model.n_embd=32", "model.block_size=32"),
        *("model.value_embeds=1", "model.short_window=8", "model.fp8_head=false"),
        *("batch_size=8", "grad_accum_steps=1"),
        *("batch_size_start=4", "curriculum_start_block_size=16"),
    ]
}


def sweeper_of(name: str) -> DictConfig:
    return compose_train(f"experiment={name}", LOCAL_TEXT, hydra_config=True).hydra.sweeper


def grid(sweeper: DictConfig) -> dict[str, list[str]]:
    """Each key a basic sweeper sweeps, with its values as override text (``seed: 1,2,3`` -> 1, 2, 3)."""
    values = {}
    for key, text in (sweeper.params or {}).items():
        override = parse_override(f"{key}={text}")
        values[key] = list(override.sweep_string_iterator()) if override.is_sweep_override() else [text]
    return values


SEARCHES = [name for name in EXPERIMENTS if sweeper_of(name)._target_ != BASIC_SWEEPER]


def test_the_experiments_are_there():
    recorded = {"architecture", "optimizers", "optimizers_lr_search", "schedules", "tokenizers"}
    assert recorded <= set(EXPERIMENTS) and "optimizers_lr_search" in SEARCHES


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_an_experiment_composes_every_swept_value_and_trains_its_first(name, tmp_path):
    sweeper = sweeper_of(name)
    values = grid(sweeper) if sweeper._target_ == BASIC_SWEEPER else {}  # a search is run below
    for key, options in values.items():
        for option in options[1:]:  # an option that does not exist fails here, not an hour into the sweep
            compose_train(f"experiment={name}", LOCAL_TEXT, f"{key}={option}")
    first = [f"{key}={options[0]}" for key, options in values.items()]
    data = LOCAL_TEXT
    if compose_train(f"experiment={name}", LOCAL_TEXT).data._target_.endswith("load_shards"):
        docs = corpus_documents()  # a prepared folder of the embedded corpus's paragraphs stands in
        folder = prepared_folder(tmp_path / "prepared", BPETokenizer.train(docs, vocab_size=300), docs)
        data = f"data.path={folder}"
    shrunk = SHRUNK.get(name, [])
    result = train(compose_train(f"experiment={name}", data, *first, *SHORT, *shrunk), tmp_path / "run")
    assert result["step"] == 2 and math.isfinite(result["val_loss"])


@pytest.mark.parametrize("name", SEARCHES)
def test_an_experiment_with_a_search_finishes_two_trials(name, tmp_path):
    proc = run_cli("-m", f"experiment={name}", LOCAL_TEXT, *TINY, *SHORT, "hydra.sweeper.n_trials=2",
                   f"hydra.sweep.dir={tmp_path}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.isdigit()) == ["0", "1"]
    best = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == set(sweeper_of(name).params) and math.isfinite(best["best_value"])


# --- original_readme: the product's README commands, as experiments/README.md writes them ---------

# Shrunk to a tiny model on the embedded corpus; the batch divides over 2 ranks x 4 micro-steps.
SHRINK = [a for a in TINY if not a.startswith(("model.block_size", "batch_size"))] + [
    "model.block_size=64",
    "batch_size=16",
    "max_steps=3",
    "eval_interval=3",
    "eval_iters=1",
    LOCAL_TEXT,
]
BPE_SHRINK = ["data.tokenizer.vocab_size=300"]  # a BPE trained in a second on the embedded corpus


def original_readme_commands() -> list[str]:
    text = (REPO / "experiments" / "README.md").read_text()
    section = re.search(r"^## original_readme\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert section, "experiments/README.md has no original_readme section"
    commands = re.findall(r"^ {4}((?:python|torchrun) .*)$", section.group(1), re.MULTILINE)
    return [shlex.split(line.split("   #", 1)[0]) for line in commands]  # "   # what" ends a line


def in_tmp(args: list[str], tmp_path: Path) -> list[str]:
    """``out/...`` paths moved into the test's folder."""
    return [re.sub(r"=out/", f"={tmp_path}/", arg) for arg in args]


def shrink(args: list[str]) -> list[str]:
    return [*SHRINK, *(BPE_SHRINK if any("bpe" in a for a in args) else [])]


def run_training(command: list[str], tmp_path: Path, default_dir: Path) -> Path:
    """Run a training command of the section, shrunk; return its run directory."""
    args = in_tmp(command[command.index("tinygpt.train") + 1 :], tmp_path)
    if command[0] == "torchrun":
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        runner = [sys.executable, "-m", "torch.distributed.run", *command[1 : command.index("-m")]]
        full = [*runner, "-m", "tinygpt.train", *args, *shrink(args), f"hydra.run.dir={default_dir}"]
        proc = subprocess.run(full, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return default_dir
    args = translate_argv(args)  # what the command line does before Hydra reads it
    # the command's own out_dir (in the test's folder), not a JSON config's (into the checkout)
    run_dirs = [a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir=")]
    run_dir = Path(run_dirs[-1]) if run_dirs else default_dir
    args = splice_json_config(args)
    check_keys(args)
    result = train(compose_train(*args, *shrink(args)), run_dir)
    assert result["step"] == 3 and math.isfinite(result["val_loss"])
    return run_dir


def is_training(command: list[str]) -> bool:
    return "tinygpt.train" in command


@pytest.mark.parametrize(
    "command", [c for c in original_readme_commands() if is_training(c)], ids=lambda c: " ".join(c)[:60]
)
def test_an_original_readme_training_command_runs(command, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # config_json paths are relative to the checkout
    run_dir = run_training(command, tmp_path, tmp_path / "run")
    assert (run_dir / "ckpt.pt").is_file() and (run_dir / "effective_config.json").is_file()


def test_the_original_readme_covers_every_feature():
    text = " ".join(" ".join(c) for c in original_readme_commands())
    for feature in ("config_json=", "norm=rmsnorm", "bpe", "compile=true", "memmap", "torchrun",
                    "grad_accum_steps=", "ema_decay=", "curriculum_start_block_size=", "tinygpt.generate",
                    "temperature=", "top_k=", "top_p=", "repetition_penalty="):  # fmt: skip
        assert feature in text, feature


@pytest.mark.parametrize(
    "command", [c for c in original_readme_commands() if not is_training(c)], ids=lambda c: " ".join(c)[:60]
)
def test_an_original_readme_generation_command_samples_its_run(command, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    (run,) = [a.split("=", 1)[1] for a in command if a.startswith("run=")]
    (writer,) = [c for c in original_readme_commands() if is_training(c) and f"out_dir={run}" in c]
    run_training(writer, tmp_path, tmp_path / "run")  # the command that trains the run it samples
    args = in_tmp(command[command.index("tinygpt.generate") + 1 :], tmp_path)
    proc = run_cli(*args, "max_new_tokens=20", module="tinygpt.generate")  # shrunk, as the model
    assert proc.returncode == 0, proc.stderr[-3000:]
    samples = proc.stdout.split("\n---\n")
    prompt = next(a.split("=", 1)[1] for a in command if a.startswith("prompt="))
    assert len(samples) == int(next(a.split("=")[1] for a in command if a.startswith("num_samples=")))
    assert all(s.startswith(prompt) and len(s) > len(prompt) for s in samples)
