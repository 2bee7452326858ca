"""The speedrun recipes: the ladder of conf/speedrun/ (each stage the one before plus one of the
records' choices), experiment=speedrun_ablation that sweeps it, and experiment=gpt2_speedrun shrunk to
a CPU size. The options themselves are tested in test_speedrun_attention, test_speedrun_head,
test_optim_groups and test_batch_schedule."""

import math
from pathlib import Path

import pytest
import torch
from conftest import (
    assert_same_weights,
    compose_train,
    corpus_documents,
    fineweb_folder,
    prepared_folder,
    run_cli,
    set_keys,
    straight_and_resumed,
)
from omegaconf import OmegaConf

from tinygpt.config.schema import conf_dir
from tinygpt.data.tokenizers import BPETokenizer
from tinygpt.runtime.distributed import SINGLE_PROCESS
from tinygpt.training.loop import train
from tinygpt.training.periodic import evaluate

pytestmark = pytest.mark.usefixtures("one_thread")

LADDER = [
    "baseline",
    "rope",
    "muon",
    "relu2",
    "qk_norm",
    "zero_init",
    "untied_head",
    "softcap",
    "unet",
    "doc_mask",
    "value_embeds",
    "windows",
    "schedules",
]
SHORT = ["max_steps=6", "eval_interval=3", "eval_iters=2", "log_interval=1", "batch_size=8"]


@pytest.fixture(scope="module")
def speeches(tmp_path_factory) -> str:
    """A prepared folder of the embedded corpus's paragraphs (BPE, with the document token)."""
    docs = corpus_documents()
    tok = BPETokenizer.train(docs, vocab_size=300)
    return f"data.path={prepared_folder(tmp_path_factory.mktemp('speeches'), tok, docs)}"


def plain(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


def changed(before: dict, after: dict, prefix: str = "") -> set[str]:
    """The dotted keys whose values differ between two configs."""
    keys = set(before) | set(after)
    out = set()
    for key in keys:
        a, b = before.get(key), after.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out |= changed(a, b, f"{prefix}{key}.")
        elif a != b:
            out.add(f"{prefix}{key}")
    return out


def test_the_ladder_is_every_stage_and_the_sweep_runs_it_in_order():
    assert sorted(LADDER) == sorted(p.stem for p in (Path(conf_dir()) / "speedrun").glob("*.yaml"))
    sweep = compose_train("experiment=speedrun_ablation", hydra_config=True).hydra.sweeper.params
    assert sweep.speedrun.split(",") == LADDER and sweep.seed == "1,2,3"


def test_each_stage_keeps_the_one_before_and_adds_its_choice(speeches):
    """Stage n's config is stage n-1's with a few keys changed (its own), never one undone."""
    configs = [
        plain(compose_train("experiment=speedrun_ablation", speeches, f"speedrun={s}")) for s in LADDER
    ]
    seen: set[str] = set()
    for name, before, after in zip(LADDER[1:], configs[:-1], configs[1:], strict=True):
        keys = changed(before, after)
        assert keys, f"speedrun={name} changes nothing"
        assert not keys & seen, f"speedrun={name} changes what an earlier stage set: {keys & seen}"
        seen |= keys
    last = configs[-1]
    assert last["model"]["pos"]["_target_"].endswith("RoPE") and last["optim"]["_target_"].endswith(
        "MuonWithAdamW"
    )
    assert last["model"]["mlp"]["_target_"].endswith("ReLU2MLP") and last["model"]["doc_mask"]
    assert last["model"]["logit_softcap"] == 30.0 and last["batch_size_start"] == 8


def test_the_last_stage_trains_and_resumes_bitwise(speeches, tmp_path):
    """Every option of the ladder on together: 3 steps, then resumed to 6, equals 6 straight, across the
    batch and block schedules' stage boundaries."""

    schedules = ["batch_size_start=4", "batch_size_steps=4"]
    schedules += ["curriculum_start_block_size=16", "curriculum_steps=4"]
    recipe = ["experiment=speedrun_ablation", speeches, "speedrun=schedules", *SHORT, *schedules]
    a, b = straight_and_resumed(recipe, tmp_path, total=6, stop=3)
    assert math.isfinite(a["best_val_loss"])
    assert_same_weights(a, b)


GPT2_SHRUNK = [
    "model.n_layer=4", "model.n_head=2", "model.n_embd=32", "model.block_size=32", "model.value_embeds=1",
    "model.short_window=8", "batch_size=8", "grad_accum_steps=2", "batch_size_start=4",
    "curriculum_start_block_size=16", "max_steps=4", "eval_interval=2", "eval_iters=2",
    "device=cpu", "precision=fp32", "compile=false", "model.fp8_head=false",
]  # fmt: skip


def test_the_gpt2_speedrun_recipe_trains_on_fineweb_shards_at_a_cpu_size(tmp_path):
    """The 124M recipe, shrunk: every option it sets on, reading llm.c-format shards with a foreign
    tokenizer.json; its evaluation goes in micro-batches like its steps."""
    docs = corpus_documents()
    data = fineweb_folder(tmp_path / "fineweb", BPETokenizer.train(docs, vocab_size=300), docs)
    full = compose_train("experiment=gpt2_speedrun", *data, tiny=False)
    assert (full.model.n_layer, full.model.n_embd, full.model.block_size) == (12, 768, 1024)
    assert full.batch_size * full.model.block_size == 524_288 and full.model.fp8_head
    result = train(compose_train("experiment=gpt2_speedrun", *data, *GPT2_SHRUNK), tmp_path / "run")
    assert result["step"] == 4 and math.isfinite(result["val_loss"])


def test_the_gpt2_speedrun_refuses_a_machine_without_fp8_in_one_line(tmp_path):
    docs = corpus_documents()
    data = fineweb_folder(tmp_path / "fineweb", BPETokenizer.train(docs, vocab_size=300), docs)
    shrunk = [o for o in GPT2_SHRUNK if not o.startswith("model.fp8_head")]  # device=cpu
    result = run_cli("experiment=gpt2_speedrun", *data, *shrunk, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "model.fp8_head=true needs a Hopper-class CUDA GPU" in result.stderr


def test_evaluation_in_micro_batches_equals_the_whole_batch(speeches, tmp_path):
    """grad_accum_steps splits the evaluation's batches like the steps' (so what trains fits), and the
    val loss stays the mean over the same windows."""
    from tinygpt.training.job import build_job

    cfg = compose_train("experiment=speedrun_ablation", speeches, "speedrun=rope", *SHORT)
    job = build_job(cfg, tmp_path, SINGLE_PROCESS, torch.device("cpu"), None)
    model, rows = job.state.model, []
    model.register_forward_pre_hook(lambda module, args: rows.append(args[0].size(0)))
    whole = evaluate(model, job.val_ids, cfg, job.device, SINGLE_PROCESS)
    assert rows == [8] * cfg.eval_iters  # batch_size=8 (SHORT), whole
    rows.clear()
    pieces = evaluate(model, job.val_ids, set_keys(cfg, grad_accum_steps=4), job.device, SINGLE_PROCESS)
    assert rows == [2] * 4 * cfg.eval_iters  # the model never sees more than a micro-batch
    assert pieces == pytest.approx(whole, rel=1e-6)
