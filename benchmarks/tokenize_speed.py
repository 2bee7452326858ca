"""Tokenization speed of the char and byte-level BPE tokenizers, in MB of UTF-8 text per second.

    python benchmarks/tokenize_speed.py                       # tiny-shakespeare from ../shared/data
    python benchmarks/tokenize_speed.py --path big.txt --bpe-vocab-size 16000

For each tokenizer it times, best of ``--repeats``: training it on the text, encoding the text (in
the chunks the token cache uses), and a whole cold cache build (check + train + encode + write),
and prints one Markdown table row per tokenizer.
"""

import argparse
import functools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tinygpt.data import BPETokenizer, CharTokenizer
from tinygpt.data.cache import cached_tokens
from tinygpt.data.text import read_chunks

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--path", type=Path, default=SHAKESPEARE)
    parser.add_argument("--bpe-vocab-size", type=int, default=8000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    megabytes = args.path.stat().st_size / 1e6
    chunks = list(read_chunks(args.path))
    print(f"{args.path.name}: {megabytes:.2f} MB, best of {args.repeats}\n")
    print("| tokenizer | vocab | tokens | train s | encode MB/s | cold cache build MB/s |")
    print("|---|---|---|---|---|---|")
    for label, make in (
        ("char", CharTokenizer.train),
        (f"bpe {args.bpe_vocab_size}", functools.partial(BPETokenizer.train, vocab_size=args.bpe_vocab_size)),
    ):
        tok = make(chunks)
        n_tokens = sum(len(tok.encode(c)) for c in chunks)
        train_s = best_seconds(lambda make=make: make(chunks), args.repeats)
        encode_s = best_seconds(lambda tok=tok: [tok.encode(c) for c in chunks], args.repeats)

        def build(make=make) -> None:
            with tempfile.TemporaryDirectory() as cache:
                cached_tokens([args.path], None, 0.1, make, Path(cache))

        build_s = best_seconds(build, args.repeats)
        print(
            f"| {label} | {tok.vocab_size} | {n_tokens:,} | {train_s:.2f} | {megabytes / encode_s:.1f} "
            f"| {megabytes / build_s:.1f} |"
        )


if __name__ == "__main__":
    main()
