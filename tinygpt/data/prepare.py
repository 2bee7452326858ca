"""Preparing a corpus once: text files, JSONL or parquet in, a folder of token shards out
(``python -m tinygpt.prepare``; the format is data/shards.py's).

The steps: find the input files (data/sources.py), build the tokenizer (char over the whole input, BPE
over its first ``tokenizer_sample_bytes`` bytes, or a given tokenizer.json) and write it, then encode
the documents on ``workers`` threads (the Hugging Face encoder releases the GIL, so the threads run on
every core) while the main thread reads ahead and hands the encoded batches, in input order, to the
shard writer (data/shard_writer.py). Every document is preceded by the tokenizer's ``<|endoftext|>``
id when it has one; the output does not depend on ``workers``.

After each shard the progress record (data/prepared_folder.py) says where the next one starts:
running the same command again after a kill continues from there. ``meta.json`` is written last, and
then the folder is prepared: the same command again says so, different settings are refused.
"""

import contextlib
import itertools
import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tinygpt.data.encode import encode_pieces, is_cuttable
from tinygpt.data.prepared_folder import (
    FOLDER_FIX,
    PROGRESS,
    file_stats,
    is_prepared,
    locked,
    start_or_continue,
    write_progress,
)
from tinygpt.data.shard_writer import Encoded, ShardWriter
from tinygpt.data.shards import ShardInfo, ShardMeta, shard_dtype, write_meta
from tinygpt.data.sources import Piece, check_readers, describe_source, find_sources, read_pieces
from tinygpt.data.tokenizers import BPETokenizer, CharTokenizer, Tokenizer, load_tokenizer
from tinygpt.errors import UserError
from tinygpt.runtime.files import remove_leftovers
from tinygpt.runtime.progress import byte_bar

log = logging.getLogger(__name__)

TOKENIZER = "tokenizer.json"
BATCH_CHARS = 1 << 20  # text handed to one encoding task


@dataclass(frozen=True)
class PrepareSettings:
    """The prepare command's keys (conf/prepare.yaml); every one but ``out`` and ``workers`` decides the
    output, and is recorded."""

    input: str
    out: str
    text_key: str = "text"
    documents: str = "file"
    tokenizer: str = "bpe"
    vocab_size: int = 8000
    tokenizer_sample_bytes: int = 100_000_000
    val_tokens: int = 1_000_000
    shard_tokens: int = 100_000_000
    workers: int | None = None  # None: every core this process may use

    def record(self) -> dict[str, Any]:
        """The settings that decide the output, as the folder records them (BPE's only for bpe)."""
        unused = ("out", "workers") + (
            () if self.tokenizer == "bpe" else ("vocab_size", "tokenizer_sample_bytes")
        )
        kept = {k: v for k, v in asdict(self).items() if k not in unused}
        if self.tokenizer not in ("char", "bpe"):
            kept["tokenizer_sha256"] = describe_source(Path(self.tokenizer).expanduser())["sha256"]
        return kept


def prepare(settings: PrepareSettings) -> str:
    """Prepare ``settings.out`` (or continue preparing it); the sentence to print when done."""
    out = Path(settings.out).expanduser()
    files = [f for f in find_sources(settings.input) if out.resolve() not in f.resolve().parents]
    if not files:  # out inside input: its own files are not input
        raise UserError(f"input {settings.input} holds no input files outside out {out}")
    check_readers(files)
    if out.exists() and not out.is_dir():
        raise UserError(f"out {out} is a file; point out at a folder to create ({FOLDER_FIX})")
    given = _given_tokenizer(settings.tokenizer)
    record, stats = settings.record(), file_stats(files)
    if is_prepared(out, record, stats):
        return f"{out} is already prepared with these settings (its meta.json lists the shards)"
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with locked(out):
            remove_leftovers(out)
            meta = _run(settings, out, files, given, record, stats)
    except UserError:
        if created:  # nothing half-written: the folder was this run's own
            shutil.rmtree(out, ignore_errors=True)
        raise
    split = {name: sum(s.tokens for s in meta.split(name)) for name in ("train", "val")}
    return (
        f"prepared {out}: {split['train']:,} training and {split['val']:,} validation tokens in "
        f"{len(meta.shards)} shards; train on it with python -m tinygpt.train data=shards data.path={out}"
    )


def _given_tokenizer(spec: str) -> Tokenizer | None:
    if spec in ("char", "bpe"):
        return None
    path = Path(spec).expanduser()
    if not path.is_file():
        raise UserError(f"tokenizer {path} is not a file; set tokenizer=char, bpe or a tokenizer.json's path")
    return load_tokenizer(path)


def _run(settings, out, files, given, record, stats) -> ShardMeta:
    progress = start_or_continue(out, record, stats)
    tokenizer = _tokenizer(settings, out, files, given, progress)
    shards = _encode(settings, out, files, tokenizer, progress)
    meta = ShardMeta(
        folder=out,
        tokenizer=TOKENIZER,
        vocab_size=tokenizer.vocab_size,
        dtype=shard_dtype(tokenizer.vocab_size).name,
        bos_id=tokenizer.eot_id,
        shards=tuple(shards),
        sources=tuple(describe_source(f) for f in files),
        settings=record,
    )
    write_meta(meta)
    (out / PROGRESS).unlink()
    return meta


def _tokenizer(settings: PrepareSettings, out: Path, files: list[Path], given, progress: dict) -> Tokenizer:
    """The folder's tokenizer: read back when an earlier run wrote it, else built and written."""
    path = out / TOKENIZER
    if progress["tokenizer_sha256"] is not None:
        if not path.exists() or describe_source(path)["sha256"] != progress["tokenizer_sha256"]:
            raise UserError(f"{path} is missing or changed since the first run; {FOLDER_FIX}")
        return load_tokenizer(path)
    tokenizer = given or _train_tokenizer(settings, files)
    tokenizer.save(path)
    progress["tokenizer_sha256"] = describe_source(path)["sha256"]
    write_progress(out, progress)
    return tokenizer


def _train_tokenizer(settings: PrepareSettings, files: list[Path]) -> Tokenizer:
    pieces = read_pieces(files, settings.text_key, settings.documents, cuttable=True)
    if settings.tokenizer == "char":
        log.info("building a char vocabulary over the whole input")
        tokenizer = CharTokenizer.train(p.text for p in pieces)
        texts = tokenizer.chars
    else:
        log.info(
            "training a BPE tokenizer of %d tokens on the first %d bytes",
            settings.vocab_size,
            settings.tokenizer_sample_bytes,
        )
        texts = list(_sample(pieces, settings.tokenizer_sample_bytes))
        tokenizer = BPETokenizer.train(texts, settings.vocab_size) if texts else None
    if not texts:
        raise UserError(
            f"input {settings.input} holds no text (every document is empty); it needs text to prepare"
        )
    return tokenizer


def _sample(pieces: Iterator[Piece], limit: int) -> Iterator[str]:
    """The pieces' texts until ``limit`` UTF-8 bytes are reached (whole pieces)."""
    taken = 0
    for piece in pieces:
        if taken >= limit:
            return
        if piece.text:
            taken += len(piece.text.encode("utf-8"))
            yield piece.text


def _encode(
    settings: PrepareSettings, out: Path, files: list[Path], tokenizer: Tokenizer, progress: dict
) -> list[ShardInfo]:
    """Encode every document into shards, from where ``progress`` says the input continues."""
    piece, skip = progress.get("next_piece", 0), progress.get("next_offset", 0)

    def on_shard(shards: list[ShardInfo], split: str, position: tuple[int, int]) -> None:
        progress.update(shards=list(shards), split=split, next_piece=position[0], next_offset=position[1])
        write_progress(out, progress)
        meter.log_shard(shards[-1])

    dtype = shard_dtype(tokenizer.vocab_size)
    writer = ShardWriter(
        out,
        (settings.val_tokens, settings.shard_tokens, dtype),
        tokenizer.token_bytes(),
        progress.get("shards", []),
        progress.get("split", "val" if settings.val_tokens > 0 else "train"),
        on_shard,
    )
    meter = _Meter(sum(f.stat().st_size for f in files))
    cuttable = is_cuttable(tokenizer)
    pieces = read_pieces(files, settings.text_key, settings.documents, cuttable)
    last = None
    with byte_bar("preparing", meter.total) as advance:
        for batch in _encoded(tokenizer, _batches(pieces, piece, meter, advance), cuttable, settings.workers):
            if skip:
                batch, skip = batch.trimmed(skip), 0
            writer.add(batch)
            last = batch
    _finish(settings, writer, last)
    return writer.shards


def _finish(settings: PrepareSettings, writer: ShardWriter, last: Encoded | None) -> None:
    if writer.split == "val" and (writer.val_written or writer.shards):
        raise UserError(
            f"input {settings.input} holds {writer.val_written:,} tokens in documents that all start before "
            f"val_tokens={settings.val_tokens:,}, leaving none to train on; lower val_tokens, or cut the "
            "input into more documents (documents=blank_line or documents=line for .txt files)"
        )
    writer.finish(last)
    if not writer.shards:
        raise UserError(
            f"input {settings.input} holds no text (every document is empty); it needs text to prepare"
        )


def _batches(
    pieces: Iterator[Piece], first: int, meter: "_Meter", advance
) -> Iterator[tuple[int, list[Piece]]]:
    """Consecutive pieces of about BATCH_CHARS characters with the input index of their first, from
    piece ``first`` on (the ones before it were written by an earlier run). The bar and the meter are
    told the bytes read once per batch, not per piece."""
    for piece in itertools.islice(pieces, first):
        meter.advance(piece.read, skipped=True)
        advance(piece.read)
    batch, size, read, start = [], 0, 0, first
    for index, piece in enumerate(pieces, first):
        batch.append(piece)
        size, read = size + len(piece.text), read + piece.read
        if size >= BATCH_CHARS:
            meter.advance(read, skipped=False)
            advance(read)
            yield start, batch
            batch, size, read, start = [], 0, 0, index + 1
    meter.advance(read, skipped=False)
    advance(read)
    if batch:
        yield start, batch


def _encoded(tokenizer: Tokenizer, batches, cuttable: bool, workers: int | None) -> Iterator[Encoded]:
    """The batches encoded on ``workers`` threads, in input order; a few run ahead of the consumer."""
    workers = workers or len(os.sched_getaffinity(0))
    with _serial_hf_encoding(), ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        for first, batch in batches:
            pending.append(pool.submit(encode_pieces, tokenizer, first, batch, cuttable))
            if len(pending) > 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


@contextlib.contextmanager
def _serial_hf_encoding() -> Iterator[None]:
    """Each thread's encode_batch runs on that thread alone (TOKENIZERS_PARALLELISM=false): the threads
    are the parallelism, so ``workers`` is the number of cores used."""
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


class _Meter:
    """Bytes read, for a log line after each shard and every LOG_SECONDS (rate and time left), whether
    on a terminal or not; bytes an earlier run already wrote are skipped, not counted in the rate."""

    LOG_SECONDS = 60.0

    def __init__(self, total: int):
        self.total, self.read, self.skipped = total, 0, 0
        self.start = self.logged = time.perf_counter()

    def advance(self, n_bytes: int, skipped: bool) -> None:
        self.read += n_bytes
        self.skipped += n_bytes if skipped else 0
        if time.perf_counter() - self.logged > self.LOG_SECONDS:
            log.info("%s", self.status())

    def status(self) -> str:
        self.logged = time.perf_counter()
        rate = (self.read - self.skipped) / max(self.logged - self.start, 1e-9)
        left = f"about {(self.total - self.read) / rate:.0f} s left" if rate > 0 else "time left unknown"
        return f"{self.read / 1e6:.1f} of {self.total / 1e6:.1f} MB read, {rate / 1e6:.1f} MB/s, {left}"

    def log_shard(self, shard: ShardInfo) -> None:
        log.info("wrote %s (%d tokens); %s", shard.file, shard.tokens, self.status())
