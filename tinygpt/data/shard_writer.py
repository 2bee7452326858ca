"""Cutting a stream of encoded text into the shards of a prepared folder: the validation documents
first, then the training ones, each split cut into shards of ``shard_tokens`` tokens.

The validation set is the first documents in input order, whole, until they hold at least
``val_tokens`` tokens (document tokens included): every document that starts before token
``val_tokens`` of the stream is validation, every later one training. So the set is fixed by the
input and ``val_tokens`` alone, as FineWeb's validation shard is its first 100M tokens.

The writer is told where in the input each batch's pieces come from, so after each shard it can say
where the next one starts: (the piece, how many of its tokens are already written). ``on_shard`` gets
that position with the shards written so far; prepare keeps it as its progress record.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinygpt.data.shards import ShardInfo, write_doc_starts, write_shard


@dataclass(frozen=True)
class Encoded:
    """The tokens of consecutive input pieces, document tokens included."""

    first_piece: int  # the input index of the first piece
    tokens: np.ndarray  # (N,) uint32
    piece_starts: np.ndarray  # (P,) int64: where each piece's tokens start (negative: trimmed away)
    piece_bytes: np.ndarray  # (P,) int64: UTF-8 bytes of each piece's text
    doc_starts: np.ndarray  # (D,) int64: where each document's first token is, sorted

    def trimmed(self, skip: int) -> "Encoded":
        """Without its first ``skip`` tokens (written before a resume)."""
        keep = self.doc_starts >= skip
        return Encoded(
            self.first_piece,
            self.tokens[skip:],
            self.piece_starts - skip,
            self.piece_bytes,
            self.doc_starts[keep] - skip,
        )

    def position(self, at: int) -> tuple[int, int]:
        """(input piece, tokens of it before ``at``): where token ``at`` of this batch comes from."""
        if at >= len(self.tokens):
            return self.first_piece + len(self.piece_starts), 0
        piece = int(np.searchsorted(self.piece_starts, at, side="right")) - 1
        return self.first_piece + piece, at - int(self.piece_starts[piece])


class ShardWriter:
    """Collects tokens into the current shard and writes each one when it is full (state is the point:
    the shard being filled, the split, the shards written)."""

    def __init__(
        self,
        folder: Path,
        settings: tuple[int, int, np.dtype],  # val_tokens, shard_tokens, shard dtype
        token_bytes: np.ndarray | None,
        shards: list[ShardInfo],
        split: str,
        on_shard: Callable[[list[ShardInfo], str, tuple[int, int]], None],
    ):
        self.folder = folder
        self.val_tokens, self.shard_tokens, self.dtype = settings
        self.token_bytes = token_bytes  # (vocab,) bytes per id; None: count bytes per piece
        self.shards = list(shards)
        self.split = split
        self.on_shard = on_shard
        self._parts: list[np.ndarray] = []
        self._docs: list[np.ndarray] = []
        self.filled = 0
        self.bytes = 0

    @property
    def val_written(self) -> int:
        return sum(s.tokens for s in self.shards if s.split == "val") + (
            self.filled if self.split == "val" else 0
        )

    def add(self, batch: Encoded) -> None:
        start = 0
        if self.split == "val":
            past = np.flatnonzero(self.val_written + batch.doc_starts >= self.val_tokens)
            if not len(past):
                self._take(batch, 0, len(batch.tokens))
                return
            start = int(batch.doc_starts[past[0]])  # the first training document
            self._take(batch, 0, start)
            self._write(batch, start)
            self.split = "train"
        self._take(batch, start, len(batch.tokens))

    def finish(self, batch: Encoded | None) -> None:
        """Write the last, partly filled shard."""
        if batch is not None:
            self._write(batch, len(batch.tokens))

    def _take(self, batch: Encoded, start: int, end: int) -> None:
        while start < end:
            n = min(self.shard_tokens - self.filled, end - start)
            self._parts.append(batch.tokens[start : start + n])
            docs = batch.doc_starts[(batch.doc_starts >= start) & (batch.doc_starts < start + n)]
            self._docs.append(docs - start + self.filled)
            self.bytes += self._bytes(batch, start, start + n)
            self.filled += n
            start += n
            if self.filled == self.shard_tokens:
                self._write(batch, start)

    def _bytes(self, batch: Encoded, start: int, end: int) -> int:
        if self.token_bytes is not None:
            return int(self.token_bytes[batch.tokens[start:end]].sum())
        inside = (batch.piece_starts >= start) & (batch.piece_starts < end)  # a piece counts where it starts
        return int(batch.piece_bytes[inside].sum())

    def _write(self, batch: Encoded, at: int) -> None:
        """Write the shard being filled (if it holds anything); the input continues at token ``at``."""
        if not self.filled:
            return
        index = sum(s.split == self.split for s in self.shards)
        name = f"{self.split}_{index:06d}.bin"
        starts = np.concatenate(self._docs) if self._docs else np.zeros(0, np.int64)
        write_shard(self.folder / name, np.concatenate(self._parts), self.dtype)
        write_doc_starts(self.folder / f"{name}.docs.npy", starts)
        self.shards.append(
            ShardInfo(name, self.split, self.filled, self.bytes, len(starts), f"{name}.docs.npy")
        )
        self._parts, self._docs, self.filled, self.bytes = [], [], 0, 0
        self.on_shard(self.shards, self.split, batch.position(at))
