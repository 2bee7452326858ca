"""Tokenization speed of the char and byte-level BPE tokenizers, in MB of UTF-8 text per second.

    python benchmarks/tokenize_speed.py                       # tiny-shakespeare from ../shared/data
    python benchmarks/tokenize_speed.py --path big.txt --bpe-vocab-size 16000

For each tokenizer it times, ``--repeats`` times: training it on the text, encoding the text (in
the chunks the token cache uses), and a whole cold cache build (check + train + encode + write), and
prints one Markdown table row per tokenizer: the best run, and the median and worst where the machine
is shared. "cores" is the CPU time over the wall time of the best encode (2.0: both of two cores busy).
"""

import argparse
import functools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tinygpt.data import BPETokenizer, CharTokenizer
from tinygpt.data.cache import cached_tokens
from tinygpt.data.text import read_chunks

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


def timings(fn: Callable[[], object], repeats: int) -> list[tuple[float, float]]:
    """(wall s, CPU s of this process) of each of ``repeats`` calls, fastest first."""
    runs = []
    for _ in range(repeats):
        cpu, start = time.process_time(), time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start, time.process_time() - cpu))
    return sorted(runs)


def rates(megabytes: float, runs: list[tuple[float, float]]) -> str:
    """``best (median, worst)`` in MB/s."""
    walls = [wall for wall, _ in runs]
    best, median, worst = (megabytes / s for s in (walls[0], statistics.median(walls), walls[-1]))
    return f"{best:.1f} ({median:.1f}, {worst:.1f})"


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
    print(f"{args.path.name}: {megabytes:.2f} MB; best (median, worst) of {args.repeats} runs\n")
    print("| tokenizer | vocab | tokens | train s | encode MB/s | cores | cold cache build MB/s |")
    print("|---|---|---|---|---|---|---|")
    for label, make in (
        ("char", CharTokenizer.train),
        (f"bpe {args.bpe_vocab_size}", functools.partial(BPETokenizer.train, vocab_size=args.bpe_vocab_size)),
    ):
        tok = make(chunks)
        n_tokens = sum(len(tok.encode(c)) for c in chunks)
        train = timings(lambda make=make: make(chunks), args.repeats)
        encode = timings(lambda tok=tok: [tok.encode(c) for c in chunks], args.repeats)

        def build(make=make) -> None:
            with tempfile.TemporaryDirectory() as cache:
                cached_tokens([args.path], None, 0.1, make, Path(cache))

        cold = timings(build, args.repeats)
        print(
            f"| {label} | {tok.vocab_size} | {n_tokens:,} | {train[0][0]:.2f} | {rates(megabytes, encode)} "
            f"| {encode[0][1] / encode[0][0]:.1f} | {rates(megabytes, cold)} |"
        )


if __name__ == "__main__":
    main()
