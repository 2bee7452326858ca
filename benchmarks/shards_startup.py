"""Does the corpus's size reach training? A run on a 2-billion-token shard set against the same run on
the embedded corpus: time to the first step, peak resident memory, steady step time.

    python benchmarks/shards_startup.py                       # makes /tmp/tinygpt-2b (about 4 GB) once
    python benchmarks/shards_startup.py --tokens 200000000 --rounds 3 --steps 30

Both runs use the embedded corpus's BPE tokenizer (data.tokenizer=bpe, 8,000 ids), so the model is the
same shape: only where the ids come from differs. The shard set is a prepared folder (meta.json,
document indexes: a document every 1,000 tokens) of random ids, written once and reused; it is never
committed. Each run is a fresh ``python -m tinygpt.train`` process; the runs alternate, and the
table gives the median of each measure:

- first step: seconds from the process's start to its ``step 1/`` log line (log_interval=1);
- peak RSS: the process's maximum resident set size (its own rusage, from ``wait4``);
- step: median ms per step after the first four (from metrics.jsonl's per-step times).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tinygpt.data import embedded_corpus_path
from tinygpt.data.cache import cached_tokens
from tinygpt.data.shards import ShardInfo, ShardMeta, write_doc_starts, write_meta, write_shard
from tinygpt.data.tokenizers import BPETokenizer

SHARD_TOKENS = 100_000_000  # FineWeb's
DOC_TOKENS = 1_000


def embedded_tokenizer(cache: Path) -> BPETokenizer:
    """The BPE tokenizer ``data.tokenizer=bpe`` trains on the embedded corpus (from the token cache)."""
    partial = lambda texts: BPETokenizer.train(texts, vocab_size=8000)  # noqa: E731
    partial.func, partial.keywords = BPETokenizer.train, {"vocab_size": 8000}
    _, _, tok = cached_tokens([embedded_corpus_path()], None, 0.1, partial, cache)
    return tok


def make_shards(folder: Path, n_tokens: int, tok: BPETokenizer) -> None:
    """A prepared folder of ``n_tokens`` random train ids in FineWeb-size shards, plus one val shard."""
    if (folder / "meta.json").is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(folder / "tokenizer.json")
    rng = np.random.default_rng(0)
    infos = []
    sizes = [("val", 0, 1_000_000)] + [
        ("train", i, min(SHARD_TOKENS, n_tokens - i * SHARD_TOKENS))
        for i in range((n_tokens + SHARD_TOKENS - 1) // SHARD_TOKENS)
    ]
    for split, i, size in sizes:
        name = f"{split}_{i:06d}.bin"
        ids = rng.integers(0, tok.vocab_size, size=size, dtype=np.uint16)
        starts = np.arange(0, size, DOC_TOKENS, dtype=np.int64)
        ids[starts] = tok.eot_id
        write_shard(folder / name, ids, np.dtype(np.uint16))
        write_doc_starts(folder / f"{name}.docs.npy", starts)
        infos.append(ShardInfo(name, split, size, size * 4, len(starts), f"{name}.docs.npy"))
        print(f"wrote {name} ({size:,} tokens)", file=sys.stderr)
    meta = ShardMeta(folder, "tokenizer.json", tok.vocab_size, "uint16", tok.eot_id, tuple(infos), (), {})
    write_meta(meta)


def one_run(data: list[str], steps: int, cache: Path) -> dict[str, float]:
    """One ``python -m tinygpt.train`` process: its time to step 1, peak RSS and steady step time."""
    with tempfile.TemporaryDirectory() as run_dir:
        args = [
            *data,
            f"max_steps={steps}",
            "log_interval=1",
            f"eval_interval={steps}",
            "eval_iters=1",
            "sample_interval=0",
            f"hydra.run.dir={run_dir}",
        ]
        env = {**os.environ, "TINYGPT_CACHE": str(cache)}
        start = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-m", "tinygpt.train", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        first = None
        for line in child.stdout:
            if first is None and f"step 1/{steps}" in line:
                first = time.perf_counter() - start
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise SystemExit(f"training failed: {' '.join(args)}")
        records = [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    times = [r["time"] for r in records if "train_loss" in r]
    step_ms = [1000 * (b - a) for a, b in zip(times[4:], times[5:], strict=False)]  # warm-up left out
    return {"first": first, "rss": usage.ru_maxrss / 1024, "step": statistics.median(step_ms)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=2_000_000_000)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "tinygpt-2b")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cache = Path(tempfile.gettempdir()) / "tinygpt-bench-cache"
    tok = embedded_tokenizer(cache)
    make_shards(args.folder, args.tokens, tok)
    runs = {"embedded corpus": [], f"{args.tokens / 1e9:g}B-token shards": []}
    for _ in range(args.rounds):
        runs["embedded corpus"].append(one_run(["data=tiny", "data.tokenizer=bpe"], args.steps, cache))
        runs[f"{args.tokens / 1e9:g}B-token shards"].append(
            one_run(["data=shards", f"data.path={args.folder}"], args.steps, cache)
        )
    print("| data | to step 1 (s) | peak RSS (MiB) | step (ms) |")
    print("|---|---:|---:|---:|")
    for name, results in runs.items():
        med = {k: statistics.median(r[k] for r in results) for k in ("first", "rss", "step")}
        print(f"| {name} | {med['first']:.2f} | {med['rss']:.0f} | {med['step']:.1f} |")


if __name__ == "__main__":
    main()
