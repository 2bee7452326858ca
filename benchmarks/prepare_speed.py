"""Throughput of ``python -m tinygpt.prepare`` against bare Hugging Face ``encode_batch`` on the same
text, tokenizer and cores, on 1 core and on 2.

    python benchmarks/prepare_speed.py                  # ~100 MB: tiny-shakespeare repeated, in /tmp
    python benchmarks/prepare_speed.py --mb 20 --repeats 1

The text is ../shared/data/tinyshakespeare.txt repeated to ``--mb`` MB (or ``--path FILE``), written
to a temporary folder, and a byte-level BPE of ``--vocab-size`` tokens is trained once on its first
5 MB and saved, so neither side trains a tokenizer while timed. Then, each in a fresh process pinned
to the first N cores (``os.sched_setaffinity``, ``RAYON_NUM_THREADS=N``):

- bare: ``Tokenizer.encode_batch_fast`` over the text already in memory, cut as prepare cuts it
  (each document in pieces of ~4,000 characters at places where byte-level BPE splits anyway), in
  batches of 1 MB, on the tokenizer's own thread pool; results dropped.
- prepare: ``tinygpt.data.prepare.prepare`` end to end, ``workers=N``: reading and checking the file,
  hashing it, encoding, writing the shards, document indexes and meta.json.

Both for ``documents=file`` (the file as one document, read in 1 MiB pieces) and ``documents=blank_line``
(every paragraph a document: tiny-shakespeare's speeches, ~200 bytes each, the per-document worst
case). Prints a Markdown table: the best of ``--repeats`` runs in MB/s, prepare's rate as a share of
bare's, and the CPU seconds of each (all threads, timed part only): on a shared machine, where wall
times swing with the neighbours' load, CPU time says more steadily what prepare adds.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
REPO = Path(__file__).resolve().parents[1]


def make_text(source: Path, megabytes: float, folder: Path) -> Path:
    text = source.read_text(encoding="utf-8")
    copies = max(1, round(megabytes * 1e6 / len(text.encode("utf-8"))))
    path = folder / "corpus.txt"
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(copies):
            f.write(text.rstrip("\n") + "\n\n")
    return path


def make_tokenizer(path: Path, vocab_size: int, folder: Path) -> Path:
    from tinygpt.data import BPETokenizer

    with open(path, encoding="utf-8") as f:
        sample = f.read(5_000_000)
    out = folder / "tokenizer.json"
    BPETokenizer.train([sample], vocab_size).save(out)
    return out


def bare(path: Path, tokenizer: Path, documents: str) -> tuple[float, float]:
    """Wall and CPU seconds of encode_batch_fast over the text, cut and batched as prepare cuts it."""
    from tinygpt.data.prepare import BATCH_CHARS
    from tinygpt.data.sources import read_pieces
    from tinygpt.data.tokenizers import BPETokenizer, load_tokenizer, split_text

    hf = load_tokenizer(tokenizer).hf_tokenizer
    texts = [p.text for p in read_pieces([path], "text", documents, cuttable=True)]
    batches, batch, size = [], [], 0
    for text in texts:
        batch += split_text(text, BPETokenizer.PIECE_CHARS)
        size += len(text)
        if size >= BATCH_CHARS:
            batches.append(batch)
            batch, size = [], 0
    batches.append(batch)
    cpu, start = time.process_time(), time.perf_counter()
    for batch in batches:
        hf.encode_batch_fast(batch, add_special_tokens=False)
    return time.perf_counter() - start, time.process_time() - cpu


def prepared(path: Path, tokenizer: Path, documents: str, cores: int) -> tuple[float, float]:
    """Wall and CPU seconds of prepare, end to end, into a fresh folder."""
    from tinygpt.data.prepare import PrepareSettings, prepare

    with tempfile.TemporaryDirectory(dir=path.parent) as out:
        settings = PrepareSettings(
            input=str(path),
            out=str(Path(out) / "prepared"),
            documents=documents,
            tokenizer=str(tokenizer),
            val_tokens=0 if documents == "file" else 1_000_000,  # one document: no validation
            workers=cores,
        )
        cpu, start = time.process_time(), time.perf_counter()
        prepare(settings)
        return time.perf_counter() - start, time.process_time() - cpu


def measure(kind: str, path: Path, tokenizer: Path, documents: str, cores: int) -> tuple[float, float]:
    """Run one measurement in a fresh process on the first ``cores`` cores; its wall and CPU seconds
    (CPU: every thread of the process, during the timed part only)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAYON_NUM_THREADS": str(cores), "OMP_NUM_THREADS": "1"}
    env.pop("TOKENIZERS_PARALLELISM", None)
    args = [sys.executable, __file__, "--child", kind, str(path), str(tokenizer), documents, str(cores)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["seconds"], result["cpu"]


def child(kind: str, path: str, tokenizer: str, documents: str, cores: str) -> None:
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: int(cores)]))
    if kind == "bare":
        seconds, cpu = bare(Path(path), Path(tokenizer), documents)
    else:
        seconds, cpu = prepared(Path(path), Path(tokenizer), documents, int(cores))
    print(json.dumps({"seconds": seconds, "cpu": cpu}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--path", type=Path, default=SHAKESPEARE, help="text to repeat")
    parser.add_argument("--mb", type=float, default=100.0)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cores", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory(prefix="prepare_speed.") as tmp:
        path = make_text(args.path, args.mb, Path(tmp))
        tokenizer = make_tokenizer(path, args.vocab_size, Path(tmp))
        megabytes = path.stat().st_size / 1e6
        print(f"{megabytes:.1f} MB of text, BPE {args.vocab_size}; best of {args.repeats}\n")
        print("| documents | cores | bare MB/s | prepare MB/s | prepare / bare | CPU s: bare / prep |")
        print("|---|---|---|---|---|---|")
        for documents in ("file", "blank_line"):
            for cores in args.cores:
                row(path, tokenizer, documents, cores, args.repeats, megabytes)


def row(path: Path, tokenizer: Path, documents: str, cores: int, repeats: int, megabytes: float) -> None:
    """One table row: the best wall time of each side (alternated, so a busy moment of a shared
    machine hits both), and the least CPU time, which a busy machine disturbs less."""
    best = {"bare": (float("inf"), float("inf")), "prepare": (float("inf"), float("inf"))}
    for _ in range(repeats):
        for kind in best:
            wall, cpu = measure(kind, path, tokenizer, documents, cores)
            best[kind] = (min(best[kind][0], wall), min(best[kind][1], cpu))
    (bare_wall, bare_cpu), (prep_wall, prep_cpu) = best["bare"], best["prepare"]
    print(
        f"| {documents} | {cores} | {megabytes / bare_wall:.2f} | {megabytes / prep_wall:.2f} | "
        f"{bare_wall / prep_wall:.0%} | {bare_cpu:.1f} / {prep_cpu:.1f} ({bare_cpu / prep_cpu:.0%}) |",
        flush=True,
    )


if __name__ == "__main__":
    main()
