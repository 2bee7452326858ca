"""The token cache: a corpus is tokenized once, and every later run (and every job of a sweep) reads
the ids back through ``np.memmap``.

One cache entry is a folder ``<cache_dir>/tokens/<key>/`` holding

    train.bin, val.bin   token ids, uint16 (uint32 when the vocabulary needs more than 16 bits)
    tokenizer.json       the tokenizer that made them (also copied into each run directory)
    meta.json            dtype, token counts, source files, tokenizer config, build time

``key`` is a hash of the text's content (never its path or mtime), the tokenizer config and the
validation split, so editing the text or the tokenizer builds a new entry, while a renamed or moved
copy of the same text re-uses the old one. An entry is built in a temporary folder and renamed into
place (``tinygpt.runtime.files.atomic_folder``), so a crash never leaves a half-written entry; a file
lock makes a second process that wants the same entry wait for the first instead of tokenizing the
same text twice. What a killed build leaves behind is removed by a later run (remove_leftovers), and
a damaged entry (a file missing or cut short) is rebuilt.
"""

import hashlib
import json
import logging
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from tinygpt.data.download import cache_folder
from tinygpt.data.text import check_documents, read_chunks
from tinygpt.data.tokenizers import BPETokenizer, CharTokenizer, Tokenizer, load_tokenizer
from tinygpt.errors import UserError
from tinygpt.runtime.files import atomic_folder, remove_leftovers
from tinygpt.runtime.progress import byte_bar

log = logging.getLogger(__name__)

FORMAT = 2  # bump when the layout or the way text becomes ids changes: old entries are then ignored
DTYPES = ("uint16", "uint32")
BIG_TEXT_BYTES = 1 << 30  # past this, starting a run says how to stop re-reading the text each time

Tokens = tuple[np.ndarray, np.ndarray, Tokenizer]  # train ids, val ids, the tokenizer that made them
# The config's partial tokenizer, trained on the text; or a tokenizer already made (a run's own, when
# tinygpt.eval encodes text exactly as that run's training did).
TokenizerSource = Callable[[Iterable[str]], Tokenizer] | Tokenizer


class DamagedEntry(Exception):
    """A cache entry that is not what build_entry wrote (a file missing, unreadable or cut short)."""


def cached_tokens(
    train_docs: list[Path],
    val_docs: list[Path] | None,
    val_fraction: float,
    make_tokenizer: TokenizerSource,
    cache_root: Path,
    memmap: bool = True,
    min_tokens: int = 2,
) -> Tokens:
    """Train and val token ids of the documents, and their tokenizer: from the cache, built if needed.

    Without ``val_docs`` the last ``val_fraction`` of the token stream is the validation split.
    ``make_tokenizer`` is the config's partial tokenizer (``CharTokenizer.train``,
    ``BPETokenizer.train`` with its settings), whose target and settings are part of the key; or a
    ready tokenizer, used as it is, whose vocabulary (``fingerprint``) is part of the key. A split
    of fewer than ``min_tokens`` tokens is a UserError, and an entry is only stored if both splits
    have enough (one stored before, for a smaller ``min_tokens``, is kept: the text is fine).
    """
    total = _total_bytes(train_docs, val_docs)
    if total > BIG_TEXT_BYTES:
        log.warning(
            "%.1f GB of text: every start reads all of it to check it is unchanged (about 2 s per GB); "
            "prepare it once with python -m tinygpt.prepare input=PATH out=DIR, then train with data=shards "
            "data.path=DIR",
            total / 1e9,
        )
    with byte_bar("checking text", total) as advance:
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
    folder = tokens_folder(Path(cache_root).expanduser())
    remove_leftovers(folder, lambda key: lock_path(folder / key))  # a killed build's temporary folder

    def build(entry: Path) -> None:
        build_entry(entry, train_docs, val_docs, val_fraction, make_tokenizer, identity, min_tokens)

    train, val, tokenizer = open_or_build(folder / key, memmap, build)
    check_split_sizes(len(train), len(val), min_tokens)  # an entry built for a smaller block_size
    return train, val, tokenizer


def tokens_folder(cache_root: Path) -> Path:
    """``<cache_root>/tokens``, created if needed."""
    return cache_folder(cache_root / "tokens", "token cache", "the cache is rebuilt as needed")


def lock_path(entry: Path) -> Path:
    """The lock file held while ``entry`` is built or repaired."""
    return entry.parent / f".{entry.name}.lock"


def open_or_build(entry: Path, memmap: bool, build: Callable[[Path], None]) -> Tokens:
    """The entry's tokens; built first, under the entry's lock, if it is missing or damaged."""
    if entry.is_dir():
        try:
            tokens = open_entry(entry, memmap)
        except DamagedEntry:
            pass  # repaired below, under the lock
        else:
            log.info("using token cache %s", entry)
            return tokens
    with FileLock(lock_path(entry)):
        if os.path.lexists(entry):
            try:
                tokens = open_entry(entry, memmap)
            except DamagedEntry as exc:
                log.warning("token cache entry %s is damaged (%s); building it again", entry, exc)
                _remove(entry)
            else:  # another process built (or repaired) it while this one waited for the lock
                log.info("using token cache %s (built by another process)", entry)
                return tokens
        build(entry)
    return open_entry(entry, memmap)


def check_split_sizes(n_train: int, n_val: int, min_tokens: int) -> None:
    """Refuse a split too short for one training window of ``min_tokens`` = block_size + 1 tokens."""
    for name, n_tokens in (("train", n_train), ("validation", n_val)):
        if n_tokens < min_tokens:
            raise UserError(
                f"the {name} split has {n_tokens} tokens, too few for one window of model.block_size="
                f"{min_tokens - 1} (+1 target); lower model.block_size or use a larger corpus"
            )


def tokenizer_spec(make_tokenizer: TokenizerSource) -> dict[str, Any]:
    """``{"target": "tinygpt.data.tokenizers.BPETokenizer.train", "vocab_size": 8000}`` for a partial;
    ``{"given": "bpe", "sha256": ...}`` for a ready tokenizer."""
    if is_ready(make_tokenizer):
        return {"given": make_tokenizer.kind, "sha256": make_tokenizer.fingerprint()}
    func = getattr(make_tokenizer, "func", make_tokenizer)
    return {"target": f"{func.__module__}.{func.__qualname__}", **getattr(make_tokenizer, "keywords", {})}


def is_ready(make_tokenizer: TokenizerSource) -> bool:
    return isinstance(make_tokenizer, CharTokenizer | BPETokenizer)


def build_entry(
    entry: Path,
    train_docs: list[Path],
    val_docs: list[Path] | None,
    val_fraction: float,
    make_tokenizer: TokenizerSource,
    identity: dict[str, Any],
    min_tokens: int,
) -> None:
    """Tokenize the documents into ``entry``, a folder made in one rename once it is complete and
    both splits have at least ``min_tokens`` tokens. The caller holds the entry's lock."""
    total = _total_bytes(train_docs, val_docs)
    docs = [*train_docs, *(val_docs or [])]
    what = str(docs[0]) if len(docs) == 1 else f"{len(docs)} files ({docs[0]} ... {docs[-1]})"
    spec = identity["tokenizer"]
    how = spec["target"] if "target" in spec else f"a given {spec['given']} tokenizer"
    log.info("tokenizing %s, %.1f MB, with %s", what, total / 1e6, how)
    start = time.perf_counter()
    with atomic_folder(entry) as tmp:
        tokenizer = (
            make_tokenizer if is_ready(make_tokenizer) else _train_tokenizer(make_tokenizer, docs, total)
        )
        dtype = np.dtype(np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32)  # ids < vocab_size
        with byte_bar("tokenizing", total) as advance:
            n_train = _encode_to(tmp / "train.bin", train_docs, tokenizer, dtype, advance)
            if val_docs:
                n_val = _encode_to(tmp / "val.bin", val_docs, tokenizer, dtype, advance)
            else:
                n_train, n_val = _split_off_val(tmp, n_train, val_fraction, dtype)
        check_split_sizes(n_train, n_val, min_tokens)
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
    log.info(
        "cached %d train + %d val tokens (%s) in %s: %.1f s, %.2f MB/s",
        n_train,
        n_val,
        dtype.name,
        entry,
        seconds,
        total / 1e6 / max(seconds, 1e-9),
    )


def _train_tokenizer(make_tokenizer: TokenizerSource, docs: list[Path], total: int) -> Tokenizer:
    """The config's tokenizer, trained on all the text the run uses, val included: for char that keeps
    every val character encodable; BPE merges are not a model of the text's continuation."""
    with byte_bar("training tokenizer", total) as advance:
        return make_tokenizer(_chunks(docs, advance))


def open_entry(entry: Path, memmap: bool = True) -> Tokens:
    """Train and val ids of a cache entry (read-only memmaps, or arrays in RAM), and its tokenizer.

    DamagedEntry if a file is missing or unreadable, or a .bin file's size is not the token count
    meta.json gives for it.
    """
    try:
        meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
        if meta["dtype"] not in DTYPES:
            raise ValueError(f"meta.json has dtype {meta['dtype']!r}")
        dtype = np.dtype(meta["dtype"])
        n_train, n_val = int(meta["train_tokens"]), int(meta["val_tokens"])
        tokenizer = load_tokenizer(entry / "tokenizer.json")
    except (OSError, ValueError, TypeError, KeyError, UserError) as exc:
        raise DamagedEntry(exc) from exc
    train = _read_ids(entry / "train.bin", n_train, dtype, memmap)
    val = _read_ids(entry / "val.bin", n_val, dtype, memmap)
    return train, val, tokenizer


def _read_ids(path: Path, n_tokens: int, dtype: np.dtype, memmap: bool) -> np.ndarray:
    try:
        info = path.stat()
        if stat.S_ISREG(info.st_mode) and info.st_size == n_tokens * dtype.itemsize:
            if memmap and n_tokens:  # an empty file cannot be mapped
                return np.memmap(path, dtype=dtype, mode="r")
            return np.fromfile(path, dtype=dtype)
    except OSError as exc:
        raise DamagedEntry(exc) from exc
    raise DamagedEntry(f"{path.name} is not {n_tokens} {dtype.name} token ids, as meta.json says")


def _remove(entry: Path) -> None:
    """Delete a damaged entry (a folder, or whatever took its name). Stopped half-way, what remains is
    still damaged and is removed again next time."""
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink()


def _total_bytes(train_docs: list[Path], val_docs: list[Path] | None) -> int:
    return sum(p.stat().st_size for p in [*train_docs, *(val_docs or [])])


def _chunks(docs: list[Path], advance: Callable[[int], None]) -> Iterator[str]:
    for doc in docs:
        for chunk in read_chunks(doc):
            yield chunk
            advance(len(chunk.encode("utf-8")))


def encode_documents(
    docs: list[Path], tokenizer: Tokenizer, advance: Callable[[int], None] = lambda n: None
) -> Iterator[np.ndarray]:
    """The ids of checked ``docs``, chunk by chunk, the end-of-text id between documents (BPE):
    exactly how the cache encodes a corpus."""
    for i, doc in enumerate(docs):
        if i and tokenizer.eot_id is not None:
            yield np.array([tokenizer.eot_id], dtype=np.int64)
        for chunk in _chunks([doc], advance):
            yield tokenizer.encode(chunk)


def _encode_to(
    path: Path, docs: list[Path], tokenizer: Tokenizer, dtype: np.dtype, advance: Callable[[int], None]
) -> int:
    """Write the ids of ``docs`` to ``path``; return the count."""
    count = 0
    with open(path, "wb") as out:
        for ids in encode_documents(docs, tokenizer, advance):
            out.write(ids.astype(dtype).tobytes())
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
