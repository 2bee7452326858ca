"""Tokenizers. Each one encodes text to a numpy id array, decodes ids to text, and saves itself
as ``tokenizer.json`` in the run directory so generation uses exactly the training vocabulary."""

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tinygpt.errors import UserError


class CharTokenizer:
    """One token per Unicode character seen in the corpus (sorted, so the ids are reproducible)."""

    kind = "char"

    def __init__(self, chars: str):
        self.chars = chars
        codes = np.array([ord(c) for c in chars], dtype=np.int64)
        self._lookup = np.full(int(codes.max()) + 1 if len(codes) else 1, -1, dtype=np.int64)
        self._lookup[codes] = np.arange(len(chars))  # code point -> id, -1 where unknown

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """text -> (N,) int64 ids; an unknown character is refused by name and position."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        ids = np.where(codes < len(self._lookup), self._lookup[np.minimum(codes, len(self._lookup) - 1)], -1)
        unknown = np.flatnonzero(ids < 0)
        if len(unknown):
            i = int(unknown[0])
            raise UserError(
                f"character {text[i]!r} (U+{ord(text[i]):04X}) at position {i} is not in this char-level "
                f"vocabulary of {self.vocab_size} characters; use only characters from the training text"
            )
        return ids

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"kind": self.kind, "chars": self.chars}), encoding="utf-8")


def load_tokenizer(path: str | Path) -> CharTokenizer:
    path = Path(path)
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read tokenizer {path} ({exc}); is this a TinyGPT run directory?") from exc
    if spec.get("kind") == "char":
        return CharTokenizer(spec["chars"])
    raise UserError(f"tokenizer {path} has an unknown kind {spec.get('kind')!r}")
