"""Token shards in the format llm.c and modded-nanogpt write FineWeb in, and the metadata of a folder
of them that ``python -m tinygpt.prepare`` writes.

One shard file is a header of 256 little-endian int32 (1,024 bytes), then the token ids:

    header[0] magic     20240520 -> uint16 ids, header[1] version 1 (GPT-2's 50,257-token vocabulary)
                        20240801 -> uint32 ids, header[1] version 7 (larger vocabularies: llm.c's Llama 3)
    header[2]           the number of tokens that follow
    header[3:]          zero

A shard is read through ``np.memmap``: nothing is loaded until a window is drawn from it.

A prepared folder also holds ``meta.json`` (``ShardMeta``): the tokenizer, each shard's split, token
and byte counts and document-start index (``<shard>.docs.npy``: int64 offsets of the documents'
first tokens inside the shard), the document token, and the source files. A folder of shards
downloaded for llm.c or modded-nanogpt has no meta.json: it trains with a ``tokenizer.json`` given
beside it, without bits per byte (the shards do not say how many bytes of text they hold).
"""

import json
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinygpt.errors import UserError
from tinygpt.runtime.files import atomic_write

HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
# magic -> (version, id dtype)
FORMATS = {20240520: (1, np.dtype(np.uint16)), 20240801: (7, np.dtype(np.uint32))}
MAGIC = {dtype: magic for magic, (_, dtype) in FORMATS.items()}
META = "meta.json"
META_FORMAT = "tinygpt.shards"
META_VERSION = 1
MAX_META_BYTES = 64 << 20
SPLITS = ("train", "val")


def shard_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits in 16 bits (GPT-2's 50,257 do), else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def write_shard(path: Path, ids: np.ndarray, dtype: np.dtype) -> None:
    """Write ``ids`` (N,) as one shard at ``path``, atomically: a reader finds the whole shard or none."""
    dtype = np.dtype(dtype)
    if len(ids) >= 1 << 31:
        raise ValueError(f"a shard holds fewer than 2**31 tokens, got {len(ids)}")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = MAGIC[dtype], FORMATS[MAGIC[dtype]][0], len(ids)
    with atomic_write(path) as f:
        f.write(header.tobytes())
        f.write(np.ascontiguousarray(ids, dtype=dtype.newbyteorder("<")).tobytes())


def open_shard(path: Path) -> np.memmap:
    """The (N,) token ids of the shard at ``path``, memory-mapped; a UserError naming the file if it is
    not a whole shard in one of the two formats."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"shard {path} is not a regular file; point data.train/data.val at shard files")
        with open(path, "rb") as f:
            header = np.frombuffer(f.read(HEADER_BYTES), dtype="<i4")
    except OSError as exc:
        raise UserError(f"cannot read shard {path} ({exc.strerror or exc})") from exc
    if len(header) < 3:
        raise UserError(f"shard {path} is {info.st_size} bytes, shorter than its {HEADER_BYTES}-byte header")
    magic, version, n_tokens = (int(v) for v in header[:3])
    if magic not in FORMATS:
        raise UserError(
            f"shard {path} starts with magic {magic}, not a token shard's "
            f"({' or '.join(map(str, FORMATS))}); "
            "is it a shard written by tinygpt.prepare, llm.c or modded-nanogpt?"
        )
    expected_version, dtype = FORMATS[magic]
    if version != expected_version:
        raise UserError(
            f"shard {path} has format version {version}; magic {magic} shards are version {expected_version}"
        )
    size = HEADER_BYTES + n_tokens * dtype.itemsize
    if n_tokens < 0 or info.st_size != size:
        raise UserError(
            f"shard {path} is {info.st_size} bytes, but its header says {n_tokens} {dtype.name} tokens "
            f"({size} bytes): it is truncated or damaged; copy or prepare it again"
        )
    if n_tokens == 0:
        return np.zeros(0, dtype=dtype.newbyteorder("<"))  # an empty file region cannot be mapped
    return np.memmap(path, dtype=dtype.newbyteorder("<"), mode="r", offset=HEADER_BYTES, shape=(n_tokens,))


@dataclass(frozen=True)
class ShardInfo:
    """One shard of a prepared folder, as meta.json lists it."""

    file: str  # the shard's name inside the folder
    split: str  # "train" or "val"
    tokens: int
    bytes: int  # UTF-8 bytes of the text its tokens stand for (document tokens stand for none)
    documents: int  # documents that start in it
    docs_file: str  # its document-start index: int64 offsets inside the shard, np.save format


@dataclass(frozen=True)
class ShardMeta:
    """A prepared folder's meta.json: what training needs to read it without scanning it."""

    folder: Path
    tokenizer: str  # the tokenizer's file inside the folder (tokenizer.json)
    vocab_size: int
    dtype: str
    bos_id: int | None  # the document token every document starts with; None: documents just follow
    shards: tuple[ShardInfo, ...]
    sources: tuple[dict[str, Any], ...]  # each source file: path, bytes, sha256
    settings: dict[str, Any]  # how prepare was run

    def split(self, name: str) -> list[ShardInfo]:
        return [s for s in self.shards if s.split == name]

    def to_json(self) -> str:
        data = {
            "format": META_FORMAT,
            "version": META_VERSION,
            "tokenizer": self.tokenizer,
            "vocab_size": self.vocab_size,
            "dtype": self.dtype,
            "bos_id": self.bos_id,
            "documents": {split: sum(s.documents for s in self.split(split)) for split in SPLITS},
            "tokens": {split: sum(s.tokens for s in self.split(split)) for split in SPLITS},
            "bytes": {split: sum(s.bytes for s in self.split(split)) for split in SPLITS},
            "shards": [vars(s) for s in self.shards],
            "sources": list(self.sources),
            "settings": self.settings,
        }
        return json.dumps(data, indent=2) + "\n"


def read_meta(folder: Path) -> ShardMeta:
    """``folder``'s meta.json, checked as untrusted data: every file it names is a plain name inside the
    folder, every count a non-negative integer. A UserError naming the problem otherwise."""
    path = folder / META
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_META_BYTES + 1)
        if len(raw) > MAX_META_BYTES:
            raise ValueError(f"more than {MAX_META_BYTES >> 20} MiB")
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict) or data.get("format") != META_FORMAT:
            raise ValueError(f'no "format": "{META_FORMAT}"')
        if data.get("version") != META_VERSION:
            raise ValueError(f"version {data.get('version')!r}, this TinyGPT reads version {META_VERSION}")
        return ShardMeta(
            folder=folder,
            tokenizer=_name(data["tokenizer"]),
            vocab_size=_count(data["vocab_size"]),
            dtype=_choice(data["dtype"], [d.name for d in MAGIC]),
            bos_id=None if data["bos_id"] is None else _count(data["bos_id"]),
            shards=tuple(_shard_info(s) for s in data["shards"]),
            sources=tuple(s for s in data.get("sources", []) if isinstance(s, dict)),
            settings=data.get("settings") if isinstance(data.get("settings"), dict) else {},
        )
    except (OSError, ValueError, TypeError, KeyError, RecursionError) as exc:
        raise UserError(
            f"cannot read {path} ({exc}); prepare the folder again with python -m tinygpt.prepare"
        ) from exc


def write_meta(meta: ShardMeta) -> None:
    """meta.json, atomically: written last, once every shard it lists is in place."""
    with atomic_write(meta.folder / META, "w", encoding="utf-8") as f:
        f.write(meta.to_json())


def _shard_info(entry: Any) -> ShardInfo:
    if not isinstance(entry, dict):
        raise ValueError("a shard entry is not an object")
    return ShardInfo(
        file=_name(entry["file"]),
        split=_choice(entry["split"], SPLITS),
        tokens=_count(entry["tokens"]),
        bytes=_count(entry["bytes"]),
        documents=_count(entry["documents"]),
        docs_file=_name(entry["docs_file"]),
    )


def _name(value: Any) -> str:
    """A file name inside the folder: no separator, not '.' or '..', not hidden."""
    if not isinstance(value, str) or not value or "/" in value or "\\" in value or value.startswith("."):
        raise ValueError(f"{value!r} is not a plain file name inside the folder")
    return value


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{value!r} is not a non-negative integer")
    return value


def _choice(value: Any, allowed: Any) -> str:
    if value not in allowed:
        raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
    return value


def write_doc_starts(path: Path, starts: np.ndarray) -> None:
    """A shard's document-start index (int64 offsets inside the shard), atomically."""
    with atomic_write(path) as f:
        np.save(f, np.asarray(starts, dtype=np.int64), allow_pickle=False)


def read_doc_starts(path: Path, n_tokens: int) -> np.ndarray:
    """A shard's document-start index, checked: sorted offsets inside the shard's ``n_tokens``."""
    try:
        starts = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the document index {path} ({exc}); prepare the folder again") from exc
    if starts.ndim != 1 or starts.dtype != np.int64:
        raise UserError(f"the document index {path} is not a list of int64 offsets; prepare the folder again")
    if len(starts) and (starts[0] < 0 or starts[-1] >= n_tokens or np.any(np.diff(starts) <= 0)):
        raise UserError(f"the document index {path} does not fit its shard; prepare the folder again")
    return starts
