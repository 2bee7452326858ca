"""Shared helpers: compose the real config tree, shrunk so a training step takes milliseconds."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from tinygpt.config.schema import conf_dir
from tinygpt.data import embedded_corpus_path

REPO = Path(__file__).resolve().parents[1]

# A model and a recipe small enough for a 2-core CI machine.
TINY = [
    "model.n_layer=2",
    "model.n_head=4",
    "model.n_embd=32",
    "model.block_size=32",
    "batch_size=4",
    "eval_iters=2",
    "log_interval=1",
    "sample_interval=0",
    "device=cpu",
]

# Every attention variant of the model; the "llama" ones have RoPE, the others learned positions.
ATTENTION_VARIANTS = {
    "gpt (learned)": [],
    "llama (rope, qk-norm)": ["model=llama"],
    "gqa": ["model=llama", "model.n_kv_head=2"],
    "mqa, learned": ["model.n_kv_head=1"],
    "sliding window, learned": ["model.sliding_window=5"],
    "sliding window, rope": ["model=llama", "model.sliding_window=5"],
    "qk-norm, learned": ["model.qk_norm=true"],
    "parallel block": ["model.parallel_block=true"],
    "untied, layernorm rope": ["model=llama", "model/norm=layernorm", "model.tie_weights=false"],
}


def compose_train(*overrides: str, tiny: bool = True, hydra_config: bool = False) -> DictConfig:
    """The training config exactly as ``python -m tinygpt.train`` composes it, plus overrides
    (``hydra_config``: with the ``hydra`` node too, for its sweeper; not for ``train``)."""
    with initialize_config_dir(version_base="1.3", config_dir=conf_dir()):
        overrides = [*(TINY if tiny else []), *overrides]
        return compose("train", overrides=overrides, return_hydra_config=hydra_config)


def straight_and_resumed(overrides: list[str], tmp_path: Path, total: int, stop: int) -> tuple[dict, dict]:
    """The checkpoints of ``compose_train(*overrides)`` trained ``total`` steps uninterrupted (in
    tmp_path/straight) and trained ``stop`` steps, then resumed to ``total`` (in tmp_path/split)."""
    from tinygpt.training.checkpoint import load_checkpoint
    from tinygpt.training.loop import train

    straight, split = tmp_path / "straight", tmp_path / "split"
    train(compose_train(*overrides, f"max_steps={total}"), straight)
    train(compose_train(*overrides, f"max_steps={stop}"), split)
    train(set_keys(compose_train(*overrides, f"max_steps={total}"), resume=True), split)
    return load_checkpoint(straight / "ckpt.pt"), load_checkpoint(split / "ckpt.pt")


def assert_same_weights(a: dict, b: dict) -> None:
    """Two checkpoints hold bitwise the same model weights."""
    import torch

    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


def compose_eval(*overrides: str) -> DictConfig:
    """The config of ``python -m tinygpt.eval overrides...``."""
    with initialize_config_dir(version_base="1.3", config_dir=conf_dir()):
        return compose("eval", overrides=list(overrides))


def build_model(*overrides: str, vocab_size: int = 50, bos_id: int | None = None):
    """The model of ``compose_train(*overrides)``; ``bos_id``: the document token model.doc_mask needs."""
    cfg = compose_train(*overrides)
    return instantiate(cfg.model)(vocab_size=vocab_size, bos_id=bos_id)


def set_keys(cfg: DictConfig, **values) -> DictConfig:
    with open_dict(cfg):
        for key, value in values.items():
            cfg[key] = value
    return cfg


def run_cli(
    *args: str,
    cwd: Path | None = None,
    module: str = "tinygpt.train",
    env: dict | None = None,
    input: str | None = None,
):
    """Run a TinyGPT command in a fresh interpreter, as a user would (``input`` goes to its stdin)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd or REPO,
        env=full_env,
        input=input,
        capture_output=True,
        text=True,
        timeout=600,
    )


def start_cli(
    *args: str, until: Callable[[], bool], command: list[str] | None = None, **popen
) -> subprocess.Popen:
    """Start ``python -m tinygpt.train args`` (or ``command + args``) in the background; return once
    ``until()`` holds (the content the test needs is written: e.g. ``step_logged(run_dir)``), the
    process ended, or two minutes passed, for a test to kill or signal it at that point. A file's mere
    existence is no such content: a run creates metrics.jsonl before it writes a line into it."""
    child = subprocess.Popen(
        [*(command or [sys.executable, "-m", "tinygpt.train"]), *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **popen.pop("env", {})},
        stdout=popen.pop("stdout", subprocess.DEVNULL),
        stderr=popen.pop("stderr", subprocess.DEVNULL),
        **popen,
    )
    deadline = time.time() + 120
    while not until() and time.time() < deadline and child.poll() is None:
        time.sleep(0.005)
    return child


def logged_steps(run_dir: Path, key: str = "train_loss") -> list[int]:
    """The steps of run_dir's metrics.jsonl records that hold ``key``, from complete lines only (a
    line still being written, with no newline yet, is left out)."""
    path = run_dir / "metrics.jsonl"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    lines = text.splitlines(keepends=True)
    records = [json.loads(line) for line in lines if line.endswith("\n")]
    return [r["step"] for r in records if key in r]


def step_logged(run_dir: Path, step: int = 1) -> Callable[[], bool]:
    """A condition for ``start_cli``: run_dir's metrics.jsonl holds the training record of ``step``
    (or of a later one)."""
    return lambda: any(s >= step for s in logged_steps(run_dir))


def checkpoint_written(run_dir: Path) -> Callable[[], bool]:
    """A condition for ``start_cli``: run_dir holds a whole ckpt.pt. Its existence is enough here, and
    only here: the checkpoint appears by an atomic rename once it is written and flushed to disk."""
    return lambda: (run_dir / "ckpt.pt").is_file()


@pytest.fixture(scope="module")
def one_thread():
    """For a module's tests (``pytestmark = pytest.mark.usefixtures("one_thread")``): token-by-token
    decoding of tiny models is all small ops, and on a busy 2-core machine one thread is fastest."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def one_thread_per_worker():
    """The suite runs in parallel worker processes (pytest-xdist, ``-n auto`` in pyproject.toml): each
    worker, and every command a test starts, then computes on one thread. OpenMP threads of several
    processes spinning on the same cores cost far more than they bring (a test's run took 5x as long)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def token_cache(tmp_path_factory) -> Path:
    """One token cache for the whole session (so each corpus is tokenized once), never ~/.cache.

    Set in the environment, so commands started by run_cli use it too."""
    path = tmp_path_factory.mktemp("token_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINYGPT_CACHE", str(path))
        yield path


@pytest.fixture(scope="session")
def corpus_copy(tmp_path_factory) -> Path:
    """A copy of the embedded corpus, standing in for a corpus to download: tests never reach the
    network, and a fresh clone has nothing outside the repository."""
    path = tmp_path_factory.mktemp("corpus") / "input.txt"
    shutil.copyfile(embedded_corpus_path(), path)
    return path


def edited_copy(run_dir: Path, path: Path, edit) -> Path:
    """A copy of a run directory at ``path`` whose ckpt.pt went through ``edit(state)`` (in place)."""
    from tinygpt.training.checkpoint import load_checkpoint, save_checkpoint

    shutil.copytree(run_dir, path)
    state = load_checkpoint(path / "ckpt.pt")
    edit(state)
    save_checkpoint(state, path / "ckpt.pt")
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def llm_c_bytes(ids) -> bytes:
    """A token shard laid out exactly as llm.c's and modded-nanogpt's writers lay FineWeb out."""
    import struct

    import numpy as np

    header = struct.pack("<256i", 20240520, 1, len(ids), *([0] * 253))
    return header + np.asarray(ids, dtype="<u2").tobytes()


def fineweb_folder(folder: Path, tokenizer, docs: list[str], per_shard: int = 20) -> list[str]:
    """Shards as llm.c writes FineWeb (each document preceded by <|endoftext|>, no meta.json; the first
    shard is val) with ``tokenizer``'s tokenizer.json beside them; returns the overrides to train on them."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(0, len(docs), per_shard):
        split = "val" if i == 0 else "train"
        ids = np.concatenate(
            [np.concatenate([[tokenizer.eot_id], tokenizer.encode(d)]) for d in docs[i : i + per_shard]]
        )
        (folder / f"fineweb_{split}_{i // per_shard:06d}.bin").write_bytes(llm_c_bytes(ids))
    tokenizer.save(folder / "tokenizer.json")
    return [
        "data=shards",
        f"data.train={folder}/fineweb_train_*.bin",
        f"data.val={folder}/fineweb_val_*.bin",
        f"data.tokenizer_json={folder}/tokenizer.json",
    ]


def corpus_documents(n: int = 60) -> list[str]:
    """The first ``n`` paragraphs of the embedded corpus: documents for shard tests."""
    text = embedded_corpus_path().read_text(encoding="utf-8")
    return [p for p in text.split("\n\n") if p.strip()][:n]


def prepared_folder(folder: Path, tok, docs: list[str], per_shard: int = 20) -> Path:
    """A folder as tinygpt.prepare lays it out, made by hand (the first ``per_shard`` documents are val):
    shards, document indexes, meta.json."""
    import numpy as np

    from tinygpt.data.shards import ShardInfo, ShardMeta, write_doc_starts, write_meta, write_shard

    folder.mkdir(parents=True, exist_ok=True)
    tok.save(folder / "tokenizer.json")
    infos = []
    for i in range(0, len(docs), per_shard):
        split, n = ("val", 0) if i == 0 else ("train", i // per_shard - 1)
        encoded = [np.concatenate([[tok.eot_id], tok.encode(d)]) for d in docs[i : i + per_shard]]
        starts = np.cumsum([0] + [len(e) for e in encoded[:-1]])
        name = f"{split}_{n:06d}.bin"
        write_shard(folder / name, np.concatenate(encoded), np.dtype(np.uint16))
        write_doc_starts(folder / f"{name}.docs.npy", starts)
        n_bytes = sum(len(d.encode()) for d in docs[i : i + per_shard])
        infos.append(
            ShardInfo(name, split, sum(map(len, encoded)), n_bytes, len(encoded), f"{name}.docs.npy")
        )
    meta = ShardMeta(folder, "tokenizer.json", tok.vocab_size, "uint16", tok.eot_id, tuple(infos), (), {})
    write_meta(meta)
    return folder


def loss_and_grads(model, idx) -> list:
    """The training step's loss on idx (B, T) (next-token targets: idx shifted) and every gradient."""
    model.zero_grad(set_to_none=True)
    loss = model(idx[:, :-1], targets=idx[:, 1:])
    loss.backward()
    return [loss.detach(), *(p.grad for p in model.parameters())]


def assert_compiles_whole(model, idx) -> None:
    """No data-dependent Python in ``model``'s forward + backward on idx (B, T) or in its one-token decode
    step: each traces as one graph (fullgraph fails on a break; aot_eager traces the backward too) and
    computes what eager does. ``model`` is left in eval mode."""
    import torch

    from tinygpt.inference.engine import generate

    model.train()
    eager = loss_and_grads(model, idx)
    compiled = loss_and_grads(torch.compile(model, fullgraph=True, backend="aot_eager"), idx)
    for a, b in zip(eager, compiled, strict=True):
        torch.testing.assert_close(a, b)
    model.eval()
    tokens = generate(model, idx, 8, top_k=1, static_cache=True)
    assert torch.equal(generate(model, idx, 8, top_k=1, static_cache=True, compile_step=True), tokens)


def graph_by_running(monkeypatch) -> list:
    """The CUDA-graph decode path on the CPU, its CUDA parts replaced: the "capture" runs the step three
    times and each "replay" reruns it into the one output tensor. Returns the captures' generators."""
    import torch

    import tinygpt.inference.decoder
    import tinygpt.inference.engine

    captures = []

    def capture_by_running(step, generator):
        for _ in range(3):  # two warm-ups, then the recording
            out = step()
        captures.append(generator)
        return lambda: out.copy_(step())

    monkeypatch.setattr(tinygpt.inference.engine, "replays_graphs", lambda device: True)
    monkeypatch.setattr(tinygpt.inference.decoder, "graphed", capture_by_running)
    monkeypatch.setattr(torch.cuda, "default_generators", (torch.default_generator,))
    return captures
