"""Encoding a batch of input pieces for prepare: the ids of each piece, each document preceded by the
tokenizer's document token (``<|endoftext|>``) when it has one.

A piece is encoded in parts of about ``BPETokenizer.PIECE_CHARS`` characters cut where byte-level
BPE splits anyway (tokenizers.split_text), so the ids are those of encoding each document whole; a
tokenizer whose pre-tokenizer could merge across such a cut (not byte-level, a normalizer, an added
prefix space) gets every piece whole instead. Runs on a worker thread: the Hugging Face encoder
releases the GIL while it works.
"""

import itertools

import numpy as np
from tokenizers import pre_tokenizers

from tinygpt.data.shard_writer import Encoded
from tinygpt.data.sources import Piece
from tinygpt.data.tokenizers import BPETokenizer, CharTokenizer, Tokenizer, split_text
from tinygpt.errors import UserError


def is_cuttable(tokenizer: Tokenizer) -> bool:
    """Whether text may be cut at split_text's places without changing its ids."""
    if isinstance(tokenizer, CharTokenizer):
        return True
    hf = tokenizer.hf_tokenizer
    pre = hf.pre_tokenizer
    return (
        hf.normalizer is None
        and isinstance(pre, pre_tokenizers.ByteLevel)
        and not pre.add_prefix_space
        and pre.use_regex
    )


def encode_pieces(tokenizer: Tokenizer, first: int, pieces: list[Piece], cuttable: bool) -> Encoded:
    """The tokens of ``pieces`` (input indices ``first``...), document tokens included."""
    if isinstance(tokenizer, CharTokenizer):
        parts = [tokenizer.encode(p.text).astype(np.uint32) for p in pieces]
        ids = np.concatenate(parts) if parts else np.zeros(0, np.uint32)
        lengths = np.array([len(p) for p in parts], dtype=np.int64)
    else:
        ids, lengths = _bpe_ids(tokenizer, [p.text for p in pieces], cuttable)
    starts = np.array([p.starts for p in pieces], dtype=bool)
    piece_at = np.cumsum(lengths) - lengths  # (P,) where each piece's ids start, before document tokens
    if tokenizer.eot_id is not None:
        ids = np.insert(ids, piece_at[starts], np.uint32(tokenizer.eot_id))
        lengths = lengths + starts
    piece_starts = np.cumsum(lengths) - lengths
    piece_bytes = np.array([len(p.text.encode("utf-8")) for p in pieces], dtype=np.int64)
    return Encoded(first, ids, piece_starts, piece_bytes, piece_starts[starts])


def _bpe_ids(tokenizer: BPETokenizer, texts: list[str], cuttable: bool) -> tuple[np.ndarray, np.ndarray]:
    """(N,) uint32 ids of ``texts`` one after another, and (P,) how many belong to each text."""
    parts = [split_text(t, BPETokenizer.PIECE_CHARS) if cuttable and t else [t] for t in texts]
    flat = [part for text_parts in parts for part in text_parts]
    try:
        encodings = tokenizer.hf_tokenizer.encode_batch_fast(flat, add_special_tokens=False)
    except Exception as exc:  # tokenizers raises a plain Exception when the vocabulary lacks a piece
        raise UserError(
            f"the tokenizer cannot encode the input ({exc}); use a tokenizer that covers it"
        ) from exc
    counts = np.fromiter((len(e) for e in encodings), dtype=np.int64, count=len(encodings))
    ids = np.fromiter(
        itertools.chain.from_iterable(e.ids for e in encodings), dtype=np.uint32, count=int(counts.sum())
    )
    per_text = np.array([len(p) for p in parts], dtype=np.int64)
    ends = np.cumsum(per_text)
    cum = np.concatenate([[0], np.cumsum(counts)])
    return ids, cum[ends] - cum[ends - per_text]
