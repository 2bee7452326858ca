"""Several token shards read as one stream of ids, without loading them.

``TokenStream`` gives batches what a single memmap gives them: ``len``, contiguous slices, and a
gather of B windows at once (``windows``). Shards are concatenated in order, so a window may run from
the end of one shard into the next, exactly as it would in one file holding both. Each gathered batch
is checked against the vocabulary: a shard made with another tokenizer is named, not fed to the
embedding as an out-of-range id.

Windows are read from the shard files with one ``pread`` each rather than through the memmaps:
gathering 64 random windows through a memmap mapped about 25 MiB more of the file into the process at
every batch (the kernel reads ahead around each page touched), so a run's resident memory grew with
the corpus; ``pread`` leaves the pages in the OS's cache, outside the process, at the same speed (a
64 x 129-token batch in 1.29 ms against 1.27 ms; 2-core EPYC, 100M-token shards). Slices (evaluation,
the document scan) still read through the memmaps.
"""

import os
import weakref
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tinygpt.errors import UserError


class TokenStream:
    """The shards' ids as one (N,) stream, N = the shards' token counts summed."""

    def __init__(self, shards: Sequence[np.ndarray], paths: Sequence[Path], vocab_size: int, vocab_from: str):
        self.shards = list(shards)
        self.paths = list(paths)
        self.vocab_size = vocab_size  # every id must be below it
        self.vocab_from = vocab_from  # where vocab_size came from, for the error message
        lengths = np.array([len(s) for s in self.shards], dtype=np.int64)
        # (S+1,): shard s holds positions [offsets[s], offsets[s+1]) of the stream
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        self._files: dict[int, int] = {}  # shard -> an open file descriptor, for pread
        weakref.finalize(self, _close_all, self._files)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def dtype(self) -> np.dtype:
        return self.shards[0].dtype

    def __getitem__(self, key: slice) -> np.ndarray:
        """A contiguous range of the stream (step 1), its ids as stored (uint16 or uint32)."""
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("a TokenStream is indexed by contiguous slices only")
        start, stop, _ = key.indices(len(self))
        if stop <= start:
            return np.zeros(0, dtype=self.dtype)
        first = int(np.searchsorted(self.offsets, start, side="right")) - 1
        pieces = []
        for s in range(first, len(self.shards)):
            lo, hi = self.offsets[s], self.offsets[s + 1]
            if lo >= stop:
                break
            pieces.append(self.shards[s][max(start - lo, 0) : min(stop, hi) - lo])
        ids = np.concatenate(pieces) if len(pieces) > 1 else np.asarray(pieces[0])
        self.check_ids(ids, start)
        return ids

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        ids = self[:]
        return ids if dtype is None else ids.astype(dtype)

    def windows(self, starts: np.ndarray, length: int) -> np.ndarray:
        """(B, length) int64: the ``length`` ids from each of the B ``starts``."""
        out = np.empty((len(starts), length), dtype=np.int64)
        for row, start in enumerate(starts.tolist()):
            out[row] = self._read(start, length)
        self._check_windows(out, starts)
        return out

    def _read(self, start: int, length: int) -> np.ndarray:
        """``length`` ids from ``start`` of the stream, shard by shard (a window may span two)."""
        s = int(np.searchsorted(self.offsets, start, side="right")) - 1
        pieces = []
        while length > 0:
            local = start - int(self.offsets[s])
            n = min(length, len(self.shards[s]) - local)
            pieces.append(self._read_shard(s, local, n))
            start, length, s = start + n, length - n, s + 1
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def _read_shard(self, s: int, local: int, n: int) -> np.ndarray:
        shard = self.shards[s]
        if not isinstance(shard, np.memmap):  # ids in RAM (tests, small splits)
            return shard[local : local + n]
        if s not in self._files:
            self._files[s] = os.open(shard.filename, os.O_RDONLY)
        size = shard.dtype.itemsize
        raw = os.pread(self._files[s], n * size, shard.offset + local * size)
        if len(raw) != n * size:
            raise UserError(f"shard {self.paths[s]} was cut short while training read it; copy it again")
        return np.frombuffer(raw, dtype=shard.dtype)

    def check_ids(self, ids: np.ndarray, start: int) -> None:
        """Refuse ids that the vocabulary does not have, naming the shard and the offset in it."""
        if len(ids) and int(ids.max()) >= self.vocab_size:
            where = start + int(np.argmax(ids >= self.vocab_size))
            raise self._bad_id(where)

    def _check_windows(self, windows: np.ndarray, starts: np.ndarray) -> None:
        if windows.size and int(windows.max()) >= self.vocab_size:
            row, col = np.argwhere(windows >= self.vocab_size)[0]
            raise self._bad_id(int(starts[row]) + int(col))

    def _bad_id(self, position: int) -> UserError:
        s = int(np.searchsorted(self.offsets, position, side="right")) - 1
        offset = position - int(self.offsets[s])
        token = int(self.shards[s][offset])
        return UserError(
            f"shard {self.paths[s]} holds token id {token} at token {offset}, but {self.vocab_from} has "
            f"{self.vocab_size} ids: the shards were made with another tokenizer; give the one they were "
            "made with (data.tokenizer_json=...)"
        )


def _close_all(files: dict[int, int]) -> None:
    for fd in files.values():
        os.close(fd)


def read_windows(ids: np.ndarray | TokenStream, starts: np.ndarray, length: int) -> np.ndarray:
    """(B, length) int64 windows of a split held in one array or in a TokenStream."""
    if isinstance(ids, TokenStream):
        return ids.windows(starts, length)
    return ids[starts[:, None] + np.arange(length)].astype(np.int64)


def aligned_starts(doc_starts: np.ndarray, n_tokens: int, length: int) -> np.ndarray:
    """The document starts from which a window of ``length`` ids fits in a stream of ``n_tokens``."""
    return doc_starts[: int(np.searchsorted(doc_starts, n_tokens - length, side="right"))]
