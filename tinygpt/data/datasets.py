"""The ``data`` config group's targets: a corpus -> cached token ids + tokenizer, as ``TextData``.

- ``load_text_data``  any UTF-8 file, or a folder of ``*.txt`` files        (``data=text``)
- ``load_embedded``   the embedded default corpus unless ``path`` is given  (``data=tiny``)
- ``load_downloaded`` a corpus fetched from ``url`` once, checked by sha256  (``data=shakespeare_*``)
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinygpt.data.batches import SAMPLING
from tinygpt.data.cache import TokenizerSource, cached_tokens
from tinygpt.data.download import fetch
from tinygpt.data.stream import TokenStream
from tinygpt.data.text import embedded_corpus_path, find_documents
from tinygpt.data.tokenizers import Tokenizer
from tinygpt.errors import UserError


@dataclass
class TextData:
    train: np.ndarray | TokenStream  # (N_train,) token ids: a read-only memmap, an array in RAM, or shards
    val: np.ndarray | TokenStream  # (N_val,) token ids
    tokenizer: Tokenizer
    sampling: str = "random"  # how training batches are drawn: see batches.get_batch
    val_bytes: int | None = None  # UTF-8 bytes of the val text, where stored (prepared shards)
    bytes_known: bool = True  # False: nothing says how many bytes the ids stand for (foreign shards)
    train_doc_starts: np.ndarray | None = None  # data.align=bos: (D,) positions of documents' first tokens


def load_text_data(
    tokenizer: TokenizerSource,
    path: str | Path | None,
    cache_dir: str | Path,
    val_path: str | Path | None = None,
    val_fraction: float = 0.1,
    memmap: bool = True,
    sampling: str = "random",
    min_tokens: int = 2,
) -> TextData:
    """Tokenize ``path`` (a file, or every ``*.txt`` under a folder) through the token cache.

    ``tokenizer`` is the config's partial tokenizer, trained on the text, or a ready tokenizer (a
    run's own: ``tinygpt.eval`` gets the very ids that run trained and validated on).

    Validation is ``val_path`` when given, else the last ``val_fraction`` of the tokens. Folders are
    read as documents in sorted order, separated by the tokenizer's end-of-text id (BPE). A split of
    fewer than ``min_tokens`` tokens (the training loop passes model.block_size + 1: one window and
    its target) is a UserError, and the corpus is then not cached.
    """
    if path is None:
        raise UserError("data.path is not set; data=text needs data.path=FILE or data.path=FOLDER")
    if val_path is None and not 0.0 < val_fraction < 1.0:
        raise UserError(f"data.val_fraction must be between 0 and 1, got {val_fraction}")
    if sampling not in SAMPLING:
        raise UserError(f"data.sampling must be one of {', '.join(SAMPLING)}, got {sampling!r}")
    train_docs = find_documents(path, "data.path")
    val_docs = find_documents(val_path, "data.val_path") if val_path is not None else None
    train, val, tok = cached_tokens(
        train_docs, val_docs, val_fraction, tokenizer, Path(cache_dir).expanduser(), memmap, min_tokens
    )
    return TextData(train=train, val=val, tokenizer=tok, sampling=sampling)


def load_embedded(tokenizer: TokenizerSource, path: str | Path | None = None, **options: Any) -> TextData:
    """``data=tiny``: the embedded corpus (data/tiny_corpus.txt), or ``path`` when given."""
    return load_text_data(tokenizer, path if path is not None else embedded_corpus_path(), **options)


def load_downloaded(
    tokenizer: TokenizerSource,
    url: str,
    sha256: str | None,
    cache_dir: str | Path,
    path: str | Path | None = None,
    **options: Any,
) -> TextData:
    """A corpus downloaded from ``url`` into the cache on first use; ``path`` (a local copy) wins."""
    if path is None:
        path = fetch(url, sha256, Path(cache_dir).expanduser())
    return load_text_data(tokenizer, path, cache_dir=cache_dir, **options)
