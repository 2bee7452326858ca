"""Tokenizers: character-level and byte-level BPE, with one interface.

Both ``encode(text)`` to a numpy id array, ``decode(ids)`` back to text, report ``vocab_size`` and
``eot_id`` (the end-of-text id between documents; None for char), and ``save(path)`` themselves as
``tokenizer.json`` so generation decodes exactly as training encoded. ``token_bytes()`` says how many
UTF-8 bytes of text each id stands for (bits per byte), and ``fingerprint()`` identifies the
vocabulary (the token cache keys on it when a run's own tokenizer encodes text). ``load_tokenizer``
reads either kind back. Each is built by ``train(texts)`` from an iterable of text chunks, so a
corpus larger than memory never has to be held whole.
"""

import hashlib
import itertools
import json
import os
import re
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from tinygpt.errors import UserError
from tinygpt.runtime.files import write_text

EOT = "<|endoftext|>"  # GPT-2's document separator, kept for familiarity
MAX_TOKENIZER_BYTES = 64 << 20  # generous: a 100k-token BPE vocabulary is a few MB
CHECK_RUN_DIR = "is this a TinyGPT run directory, holding the tokenizer.json that training wrote?"


class CharTokenizer:
    """One token per Unicode character seen in the corpus (sorted, so the ids are reproducible)."""

    kind = "char"
    eot_id = None  # no spare id for a separator: documents are simply concatenated

    def __init__(self, chars: str):
        self.chars = chars
        codes = np.array([ord(c) for c in chars], dtype=np.int64)
        self._lookup = np.full(int(codes.max()) + 1 if len(codes) else 1, -1, dtype=np.int64)
        self._lookup[codes] = np.arange(len(chars))  # code point -> id, -1 where unknown

    @classmethod
    def train(cls, texts: Iterable[str]) -> "CharTokenizer":
        seen: set[str] = set()
        for text in texts:
            seen.update(text)
        return cls("".join(sorted(seen)))

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

    def token_bytes(self) -> np.ndarray:
        """(vocab_size,) int64: the UTF-8 length of each id's character (1 for ASCII, up to 4)."""
        return np.array([len(c.encode("utf-8")) for c in self.chars], dtype=np.int64)

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "chars": self.chars})

    def fingerprint(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def save(self, path: str | Path) -> None:
        write_text(Path(path), self.to_json())


class BPETokenizer:
    """Byte-level BPE (GPT-2 style) trained with Hugging Face ``tokenizers``.

    Every byte is in the base vocabulary, so any UTF-8 text encodes and decodes back exactly: emoji,
    tabs, leading spaces, ``\\r\\n``. There is no normalizer and no added prefix space. Saved as a
    standard HF ``tokenizer.json`` (``tokenizers.Tokenizer.from_file`` reads it).
    """

    kind = "bpe"
    PIECE_CHARS = 4096  # train on and encode long text as pieces of about this size, in parallel

    def __init__(self, tokenizer: HFTokenizer):
        self._tok = tokenizer
        self.eot_id: int | None = tokenizer.token_to_id(EOT)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 8000) -> "BPETokenizer":
        if vocab_size < 257:
            raise UserError(
                f"data.tokenizer.vocab_size must be at least 257 (256 bytes + {EOT}), got {vocab_size}"
            )
        tok = HFTokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[EOT],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: nothing is unknown
            show_progress=False,  # TinyGPT reports progress over the whole corpus itself
        )
        # pieces cut where BPE splits anyway hold the same words as the text: the same merges are
        # learned, but the word counting runs on every core (and large strings are slow in HF)
        pieces = (piece for text in texts for piece in split_text(text, cls.PIECE_CHARS))
        tok.train_from_iterator(pieces, trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    @property
    def hf_tokenizer(self) -> HFTokenizer:
        """The wrapped ``tokenizers.Tokenizer`` (for export to a transformers folder)."""
        return self._tok

    def encode(self, text: str) -> np.ndarray:
        """text -> (N,) int64 ids. Long text is cut only where BPE splits anyway (see split_text), so
        the ids are those of encoding it whole, but the pieces run in parallel without offsets."""
        pieces = split_text(text, self.PIECE_CHARS)
        try:
            encodings = self._tok.encode_batch_fast(pieces, add_special_tokens=False)  # no BOS per piece
        except Exception as exc:  # tokenizers raises a plain Exception, e.g. a WordLevel without [UNK]
            raise self._cannot_encode(text, exc) from exc
        count = sum(len(e) for e in encodings)
        ids = itertools.chain.from_iterable(e.ids for e in encodings)  # no Python frame per id
        return np.fromiter(ids, dtype=np.int64, count=count)

    def _cannot_encode(self, text: str, exc: Exception) -> UserError:
        """What to say when the vocabulary has no token for part of ``text`` and no unknown token: a
        per-character vocabulary (a char run exported to a transformers folder) names the character."""
        vocab = self._tok.get_vocab()
        missing = next((c for c in text if c not in vocab), None)
        if isinstance(self._tok.model, models.WordLevel) and missing is not None:
            i = text.index(missing)
            return UserError(
                f"character {missing!r} (U+{ord(missing):04X}) at position {i} is not in this tokenizer's "
                f"vocabulary of {self.vocab_size} tokens; use only characters from the text it was built on"
            )
        return UserError(f"this tokenizer cannot encode the text ({exc}); use text its vocabulary covers")

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def token_bytes(self) -> np.ndarray | None:
        """(vocab_size,) int64: how many bytes of text each id stands for, read from the vocabulary,
        not by decoding ids one at a time (a token may hold part of a multi-byte character); None
        where the vocabulary does not say (a tokenizer.json from elsewhere, e.g. SentencePiece's).

        A byte-level token is spelled with one character of ``ByteLevel.alphabet()`` per byte; a
        vocabulary decoded by joining its tokens (``Fuse``: a char vocabulary exported to a
        transformers folder) spells its text as it is. A special token (``<|endoftext|>``, between
        documents) stands for no text: 0 bytes.
        """
        decoder = self._tok.decoder
        if isinstance(decoder, decoders.ByteLevel):
            alphabet = set(pre_tokenizers.ByteLevel.alphabet())
            spelled = {token: len(token) for token in self._tok.get_vocab() if set(token) <= alphabet}
        elif isinstance(decoder, decoders.Fuse):
            spelled = {token: len(token.encode("utf-8")) for token in self._tok.get_vocab()}
        else:
            return None
        added = self._tok.get_added_tokens_decoder()  # id -> AddedToken
        counts = np.zeros(self.vocab_size, dtype=np.int64)
        for token, i in self._tok.get_vocab(with_added_tokens=True).items():
            if i in added:
                counts[i] = 0 if added[i].special else len(added[i].content.encode("utf-8"))
            elif token in spelled:
                counts[i] = spelled[token]
            else:
                return None  # not spelled in the decoder's alphabet: its bytes are unknown
        return counts

    def fingerprint(self) -> str:
        return hashlib.sha256(self._tok.to_str().encode()).hexdigest()

    def save(self, path: str | Path) -> None:
        write_text(Path(path), self._tok.to_str(pretty=True))  # what HFTokenizer.save writes


Tokenizer = CharTokenizer | BPETokenizer


SAFE_PLACE = re.compile(r"(?<=\S)\n")  # a newline right after a non-space: see safe_cut


def safe_cut(text: str, start: int, end: int) -> int:
    """The last index in (start, end] where ``text`` may be cut without changing how byte-level BPE
    encodes it, or ``start`` if there is none.

    GPT-2's pre-tokenizer always splits between a non-space character and a following space, and no
    token crosses such a split; a newline right after a non-space character is such a place.
    """
    i = text.rfind("\n", start + 1, end + 1)
    while i > start and text[i - 1].isspace():
        i = text.rfind("\n", start + 1, i)
    return max(i, start)


def split_text(text: str, size: int) -> list[str]:
    """Cut ``text`` into pieces of about ``size`` characters, only at safe places (safe_cut), so the
    pieces encode to exactly the ids of the whole text. A line longer than ``size`` is not cut: its
    piece runs on to the next safe place."""
    pieces, start = [], 0
    while len(text) - start > size:
        cut = safe_cut(text, start, start + size)
        if cut == start:  # no safe place within size: take the first one after it
            found = SAFE_PLACE.search(text, start + size)
            cut = found.start() if found else len(text)
        pieces.append(text[start:cut])
        start = cut
    if start < len(text) or not pieces:
        pieces.append(text[start:])
    return pieces


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Read a run directory's (or a token cache entry's) tokenizer.json, of either kind.

    The file is untrusted input (a run directory may come from anyone), so anything but a regular file
    of at most MAX_TOKENIZER_BYTES holding a usable vocabulary of one of the two kinds is refused with
    a UserError.
    """
    path = Path(path)
    try:
        text = read_regular_file(path, MAX_TOKENIZER_BYTES).decode("utf-8")
        spec = json.loads(text)
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep
        raise UserError(f"cannot read tokenizer {path} ({exc}); {CHECK_RUN_DIR}") from exc
    tokenizer = _from_spec(path, spec, text)
    if tokenizer.vocab_size == 0:
        raise _unusable(path, "has an empty vocabulary")
    return tokenizer


def read_regular_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of ``path``, if it is (after following links) a regular file of at most ``max_bytes``.

    Anything else is a ValueError before a byte is read: a FIFO would block and ``/dev/zero`` would
    never end. The file is opened non-blocking, so opening a FIFO with no writer returns at once.
    """
    with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if info.st_size > max_bytes:
            raise ValueError(f"{info.st_size} bytes, more than the {max_bytes >> 20} MiB allowed")
        return f.read(max_bytes)  # a file growing meanwhile is cut here, then fails to parse


def _from_spec(path: Path, spec: Any, text: str) -> Tokenizer:
    if isinstance(spec, dict) and spec.get("kind") == "char":
        chars = spec.get("chars")
        if not isinstance(chars, str) or len(set(chars)) != len(chars):
            raise _unusable(path, 'is a char vocabulary whose "chars" is not a string of distinct characters')
        return CharTokenizer(chars)
    if isinstance(spec, dict) and "model" in spec:  # a Hugging Face tokenizer.json
        try:
            return BPETokenizer(HFTokenizer.from_str(text))
        except Exception as exc:  # tokenizers raises a plain Exception for a malformed file
            raise _unusable(path, f"is not a valid Hugging Face tokenizer ({exc})") from exc
    raise _unusable(path, "is neither a TinyGPT char vocabulary nor a Hugging Face tokenizer")


def _unusable(path: Path, problem: str) -> UserError:
    return UserError(f"tokenizer {path} {problem}; {CHECK_RUN_DIR}")
