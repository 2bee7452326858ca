"""``data=shards``: token shards as training data, read in place through memmaps.

Two sources, one loader (``load_shards``):

- a folder ``python -m tinygpt.prepare`` wrote (``data.path=DIR``): its meta.json names the train and
  val shards, the tokenizer, the document token, each shard's byte count (bits per byte) and
  document-start index (``data.align=bos``);
- shard files from elsewhere in the FineWeb format of llm.c and modded-nanogpt
  (``data.train='DIR/fineweb_train_*.bin' data.val='DIR/fineweb_val_*.bin'``), with the
  ``tokenizer.json`` they were made with (``data.tokenizer_json=``). They carry no byte counts, so bits
  per byte is not reported; ``data.align=bos`` finds their documents by reading them once at start-up.

Nothing at start-up reads the shards' tokens (but that one scan): only each file's 1 KB header. The
first step waits on the number of shards, not on their size.
"""

import glob
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinygpt.data.batches import SAMPLING
from tinygpt.data.cache import check_split_sizes
from tinygpt.data.datasets import TextData
from tinygpt.data.shards import META, ShardInfo, ShardMeta, open_shard, read_doc_starts, read_meta
from tinygpt.data.stream import TokenStream
from tinygpt.data.tokenizers import Tokenizer, load_tokenizer
from tinygpt.errors import UserError

log = logging.getLogger("tinygpt")

ALIGN = ("none", "bos")


@dataclass
class Split:
    """One split's shards: their paths, and their meta.json entries where a prepared folder has them."""

    name: str  # "train" or "val"
    paths: list[Path]
    infos: list[ShardInfo | None]

    @property
    def prepared(self) -> bool:
        return all(info is not None for info in self.infos)


def load_shards(
    path: str | Path | None = None,
    train: str | None = None,
    val: str | None = None,
    tokenizer_json: str | Path | None = None,
    sampling: str = "random",
    align: str = "none",
    tokenizer: Tokenizer | None = None,
    min_tokens: int = 2,
    cache_dir: str | Path | None = None,
) -> TextData:
    """The train and val shards as token streams, their tokenizer, and what is known of their text.

    ``path``: a prepared folder (its meta.json lists the shards); ``train`` / ``val``: a shard file, a
    glob, or a folder's shards of that split, overriding the folder's lists. ``tokenizer`` (a run's own,
    for ``tinygpt.eval``) is checked against the shards' instead of loaded. ``cache_dir`` is accepted for
    the evaluation command's sake and unused: shards are read where they are.
    """
    if sampling not in SAMPLING:
        raise UserError(f"data.sampling must be one of {', '.join(SAMPLING)}, got {sampling!r}")
    if align not in ALIGN:
        raise UserError(f"data.align must be one of {', '.join(ALIGN)}, got {align!r}")
    folder = Path(path).expanduser() if path is not None else None
    meta = read_folder_meta(folder) if folder is not None else None
    metas = FolderMetas(meta)
    train_split = find_split("train", train, meta, metas)
    val_split = find_split("val", val, meta, metas)
    own = meta or metas(train_split.paths[0])
    tok, vocab_from = shards_tokenizer(train_split, own, tokenizer_json, tokenizer)
    train_ids = open_stream(train_split, tok, vocab_from)
    val_ids = open_stream(val_split, tok, vocab_from)
    check_split_sizes(len(train_ids), len(val_ids), min_tokens)
    log.info(
        "shards: %d train (%s tokens), %d val (%s tokens), vocab %d",
        len(train_split.paths),
        f"{len(train_ids):,}",
        len(val_split.paths),
        f"{len(val_ids):,}",
        tok.vocab_size,
    )
    return TextData(
        train=train_ids,
        val=val_ids,
        tokenizer=tok,
        sampling=sampling,
        val_bytes=sum(i.bytes for i in val_split.infos) if val_split.prepared else None,
        bytes_known=val_split.prepared,
        train_doc_starts=document_starts(train_split, train_ids, tok) if align == "bos" else None,
    )


def read_folder_meta(folder: Path) -> ShardMeta:
    if not folder.is_dir():
        raise UserError(
            f"data.path {folder} is not a folder; point it at a folder written by python -m tinygpt.prepare"
        )
    if not (folder / META).is_file():
        raise UserError(
            f"data.path {folder} has no {META}: it is not a finished tinygpt.prepare folder; prepare it "
            "(again), or name shard files with data.train=... data.val=... data.tokenizer_json=..."
        )
    return read_meta(folder)


def find_split(name: str, pattern: str | None, meta: ShardMeta | None, metas: "FolderMetas") -> Split:
    """The shards of split ``name``: those ``pattern`` matches, else those the folder's meta.json lists."""
    key = f"data.{name}"
    if pattern is not None:
        paths = match_shards(str(pattern), name, key, metas)
    elif meta is not None:
        paths = [meta.folder / info.file for info in meta.split(name)]
        if not paths:
            raise UserError(
                f"{meta.folder} has no {name} shards (see its {META}); prepare it with val_tokens > 0, or "
                f"name shard files with {key}=..."
            )
    else:
        raise UserError(
            f"{key} is not set; data=shards needs data.path=DIR (a tinygpt.prepare folder) or "
            f"data.train='DIR/*_train_*.bin' data.val='DIR/*_val_*.bin'"
        )
    return Split(name, paths, [metas.info(p) for p in paths])


def match_shards(pattern: str, name: str, key: str, metas: "FolderMetas") -> list[Path]:
    """A shard file, a glob's matches (sorted), or a folder's shards of split ``name``: those its
    meta.json lists, else its .bin files with ``name`` in their names (``fineweb_val_000000.bin``)."""
    path = Path(pattern).expanduser()
    if path.is_dir():
        meta = metas(path / META)
        if meta is not None:
            paths = [path / info.file for info in meta.split(name)]
        else:
            paths = sorted(p for p in path.glob(f"*{name}*.bin") if p.is_file())
    elif glob.has_magic(pattern):
        paths = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
    else:
        paths = [path] if path.exists() else []
    if not paths:
        raise UserError(f"{key}={pattern} matches no shard file; check the path or the pattern (quote it)")
    return paths


class FolderMetas:
    """The meta.json of each folder shards are found in, read once per folder (None: it has none)."""

    def __init__(self, known: ShardMeta | None = None) -> None:
        """``known``: data.path's meta.json, already read: not read again."""
        self._metas: dict[Path, ShardMeta | None] = {}
        if known is not None:
            self._metas[known.folder.resolve()] = known

    def __call__(self, shard: Path) -> ShardMeta | None:
        folder = shard.parent.resolve()
        if folder not in self._metas:
            self._metas[folder] = read_meta(folder) if (folder / META).is_file() else None
        return self._metas[folder]

    def info(self, shard: Path) -> ShardInfo | None:
        """What the meta.json beside ``shard`` says of it; None if there is none or it does not list it."""
        meta = self(shard)
        return next((i for i in meta.shards if i.file == shard.name), None) if meta is not None else None


def shards_tokenizer(
    split: Split, meta: ShardMeta | None, tokenizer_json: str | Path | None, given: Tokenizer | None
) -> tuple[Tokenizer, str]:
    """The tokenizer the shards were made with, and a phrase naming where it came from.

    A prepared folder's own tokenizer.json; ``data.tokenizer_json`` (required for shards without one),
    refused if the folder's differs; or ``given`` (a run's own, when evaluating), refused likewise.
    """
    own = load_tokenizer(meta.folder / meta.tokenizer) if meta is not None else None
    if given is not None:
        chosen, source = given, "the run's tokenizer"
    elif tokenizer_json is not None:
        chosen, source = (
            load_tokenizer(Path(tokenizer_json).expanduser()),
            f"data.tokenizer_json={tokenizer_json}",
        )
    elif own is not None:
        return own, f"{meta.folder / meta.tokenizer}"
    else:
        raise UserError(
            f"the shards {split.paths[0]} ... have no {META} beside them naming their tokenizer; give the "
            "tokenizer.json they were made with: data.tokenizer_json=PATH (GPT-2's for fineweb10B)"
        )
    if own is not None and own.fingerprint() != chosen.fingerprint():
        raise UserError(
            f"{source} is not the tokenizer the shards in {meta.folder} were prepared with "
            f"({meta.folder / meta.tokenizer}); drop data.tokenizer_json, or prepare the shards again"
        )
    return chosen, source


def open_stream(split: Split, tokenizer: Tokenizer, vocab_from: str) -> TokenStream:
    return TokenStream([open_shard(p) for p in split.paths], split.paths, tokenizer.vocab_size, vocab_from)


def document_starts(split: Split, ids: TokenStream, tokenizer: Tokenizer) -> np.ndarray:
    """(D,) int64 positions in the stream of every document's first token (data.align=bos): read from
    a prepared folder's index files, else found by reading the shards for the document token."""
    starts = []
    if split.prepared:
        for s, info in enumerate(split.infos):
            local = read_doc_starts(split.paths[s].parent / info.docs_file, len(ids.shards[s]))
            starts.append(np.asarray(local) + ids.offsets[s])
    else:
        bos = tokenizer.eot_id
        if bos is None:
            raise UserError(
                "data.align=bos needs each document's first token: these shards have no document index "
                "(no meta.json) and the tokenizer has no document token (<|endoftext|>) to find them by"
            )
        log.info(
            "data.align=bos: reading %d shards for document tokens (prepare stores this)", len(ids.shards)
        )
        for s, shard in enumerate(ids.shards):
            starts.append(np.flatnonzero(np.asarray(shard) == bos) + ids.offsets[s])
    doc_starts = np.concatenate(starts).astype(np.int64) if starts else np.zeros(0, dtype=np.int64)
    log.info("data.align=bos: %s documents in the train split", f"{len(doc_starts):,}")
    return doc_starts
