"""The token cache: a corpus is tokenized once, and every later run (and every job of a sweep) reads
the ids back through ``np.memmap``.

One cache entry is a folder ``<cache_dir>/tokens/<key>/`` holding

    train.bin, val.bin   token ids, uint16 (uint32 when the vocabulary needs more than 16 bits)
    tokenizer.json       the tokenizer that made them (also copied into each run directory)
    meta.json            dtype, token counts, source files, tokenizer config, build time

``key`` is a hash of the text's content (never its path or mtime), the tokenizer config and the
validation split, so editing the text or the tokenizer builds a new entry, while a renamed or moved
copy of the same text re-uses the old one. An entry is built in a temporary folder and renamed into
place, so a crash never leaves a half-written entry; a file lock makes a second process that wants
the same entry wait for the first instead of tokenizing the same text twice.
"""

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from tinygpt.data.text import check_documents, read_chunks
from tinygpt.data.tokenizers import Tokenizer, load_tokenizer

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the layout or the way text becomes ids changes: old entries are then ignored


def cached_tokens(
    train_docs: list[Path],
    val_docs: list[Path] | None,
    val_fraction: float,
    make_tokenizer: Callable[[Iterable[str]], Tokenizer],
    cache_root: Path,
    memmap: bool = True,
) -> tuple[np.ndarray, np.ndarray, Tokenizer]:
    """Train and val token ids of the documents, and their tokenizer: from the cache, built if needed.

    Without ``val_docs`` the last ``val_fraction`` of the token stream is the validation split.
    ``make_tokenizer`` is the config's partial tokenizer (``CharTokenizer.train``,
    ``BPETokenizer.train`` with its settings); its target and settings are part of the key.
    """
    with progress_bar("checking text", _total_bytes(train_docs, val_docs)) as advance:
        train_hash = check_documents(train_docs, "data.path", advance)
        val_hash = check_documents(val_docs, "data.val_path", advance) if val_docs else None
    spec = tokenizer_spec(make_tokenizer)
    identity = {
        "format": FORMAT,
        "train_text": train_hash,
        "val_text": val_hash,
        "val_fraction": None if val_docs else val_fraction,
        "tokenizer": spec,
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
    entry = Path(cache_root).expanduser() / "tokens" / key
    if entry.is_dir():
        log.info("using token cache %s", entry)
    else:
        entry.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(entry.parent / f".{entry.name}.lock"):
            if entry.is_dir():  # another process built it while this one waited for the lock
                log.info("using token cache %s (built by another process)", entry)
            else:
                build_entry(entry, train_docs, val_docs, val_fraction, make_tokenizer, identity)
    return open_entry(entry, memmap)


def tokenizer_spec(make_tokenizer: Callable[..., Any]) -> dict[str, Any]:
    """``{"target": "tinygpt.data.tokenizers.BPETokenizer.train", "vocab_size": 8000}`` for a partial."""
    func = getattr(make_tokenizer, "func", make_tokenizer)
    return {"target": f"{func.__module__}.{func.__qualname__}", **getattr(make_tokenizer, "keywords", {})}


def build_entry(
    entry: Path,
    train_docs: list[Path],
    val_docs: list[Path] | None,
    val_fraction: float,
    make_tokenizer: Callable[[Iterable[str]], Tokenizer],
    identity: dict[str, Any],
) -> None:
    total = _total_bytes(train_docs, val_docs)
    log.info("tokenizing %s (%.1f MB) with %s", train_docs[0], total / 1e6, identity["tokenizer"]["target"])
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        with progress_bar("training tokenizer", total) as advance:
            # the tokenizer learns from all the text the run uses, val included: for char that keeps
            # every val character encodable; BPE merges are not a model of the text's continuation
            tokenizer = make_tokenizer(_chunks([*train_docs, *(val_docs or [])], advance))
        dtype = np.dtype(np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32)  # ids < vocab_size
        with progress_bar("tokenizing", total) as advance:
            n_train = _encode_to(tmp / "train.bin", train_docs, tokenizer, dtype, advance)
            if val_docs:
                n_val = _encode_to(tmp / "val.bin", val_docs, tokenizer, dtype, advance)
            else:
                n_train, n_val = _split_off_val(tmp, n_train, val_fraction, dtype)
        tokenizer.save(tmp / "tokenizer.json")
        seconds = time.perf_counter() - start
        meta = {
            **identity,
            "dtype": dtype.name,
            "vocab_size": tokenizer.vocab_size,
            "train_tokens": n_train,
            "val_tokens": n_val,
            "train_files": [str(p) for p in train_docs],
            "val_files": [str(p) for p in val_docs] if val_docs else None,
            "build_seconds": round(seconds, 3),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes the folder private; a cache is shared by the user's runs
        os.rename(tmp, entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info(
        "cached %d train + %d val tokens (%s) in %s: %.1f s, %.2f MB/s",
        n_train,
        n_val,
        dtype.name,
        entry,
        seconds,
        total / 1e6 / max(seconds, 1e-9),
    )


def open_entry(entry: Path, memmap: bool = True) -> tuple[np.ndarray, np.ndarray, Tokenizer]:
    """Train and val ids of a cache entry (read-only memmaps, or arrays in RAM), and its tokenizer."""
    meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
    dtype = np.dtype(meta["dtype"])

    def read(path: Path) -> np.ndarray:
        if memmap and path.stat().st_size:  # an empty file cannot be mapped
            return np.memmap(path, dtype=dtype, mode="r")
        return np.fromfile(path, dtype=dtype)

    return read(entry / "train.bin"), read(entry / "val.bin"), load_tokenizer(entry / "tokenizer.json")


def _total_bytes(train_docs: list[Path], val_docs: list[Path] | None) -> int:
    return sum(p.stat().st_size for p in [*train_docs, *(val_docs or [])])


def _chunks(docs: list[Path], advance: Callable[[int], None]) -> Iterator[str]:
    for doc in docs:
        for chunk in read_chunks(doc):
            yield chunk
            advance(len(chunk.encode("utf-8")))


def _encode_to(
    path: Path, docs: list[Path], tokenizer: Tokenizer, dtype: np.dtype, advance: Callable[[int], None]
) -> int:
    """Append the ids of ``docs`` to ``path``, the end-of-text id between documents; return the count."""
    count = 0
    with open(path, "wb") as out:
        for i, doc in enumerate(docs):
            if i and tokenizer.eot_id is not None:
                out.write(np.array([tokenizer.eot_id], dtype=dtype).tobytes())
                count += 1
            for chunk in _chunks([doc], advance):
                ids = tokenizer.encode(chunk).astype(dtype)
                out.write(ids.tobytes())
                count += len(ids)
    return count


def _split_off_val(folder: Path, n_tokens: int, val_fraction: float, dtype: np.dtype) -> tuple[int, int]:
    """Move the last ``val_fraction`` of train.bin into val.bin, streaming through a memmap."""
    n_train = int(n_tokens * (1.0 - val_fraction))
    tokens = np.memmap(folder / "train.bin", dtype=dtype, mode="r")
    tokens[n_train:].tofile(folder / "val.bin")
    del tokens  # unmap before shrinking the file under it
    os.truncate(folder / "train.bin", n_train * dtype.itemsize)
    return n_train, n_tokens - n_train


@contextmanager
def progress_bar(description: str, total_bytes: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr while the block runs (only on a terminal); yields ``advance``."""
    console = Console(stderr=True)
    columns = (TextColumn(description), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(description, total=total_bytes)
        yield lambda n: bar.advance(task, n)
