"""Tokenizers: exact round-trips, the shared interface, saving and loading, clear errors."""

import json

import numpy as np
import pytest
from tokenizers import Tokenizer as HFTokenizer

from tinygpt.data import BPETokenizer, CharTokenizer, embedded_corpus_path, load_tokenizer
from tinygpt.data.tokenizers import EOT, split_text
from tinygpt.errors import UserError

# Scripts, emoji (one with zero-width joiners), combining marks, tabs, leading and trailing spaces,
# CRLF and runs of blank lines: everything a byte-level BPE must give back byte for byte.
MIXED = (
    "  leading spaces, then\ttabs\t\tand a trailing space \n"
    "Grüße aus Köln — naïve café, señor. Ελληνικά και русский текст.\r\n"
    "日本語のテキスト、中文文本，한국어 텍스트。 עברית ועربية\n\n\n"
    "emoji 🙂🚀 family 👩\u200d👩\u200d👧 flags 🇫🇷 e\u0301 (combining) \u00a0nbsp\n"
    "\t\tindented code:  if x == 1:  return '→'\n"
    "    \n"
    "end without newline  "
)


@pytest.fixture(scope="module")
def shakespeare_text() -> str:
    """A long English text that ships with the checkout: the embedded corpus (800 KB)."""
    return embedded_corpus_path().read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def bpe(shakespeare_text) -> BPETokenizer:
    return BPETokenizer.train([shakespeare_text], vocab_size=512)


def test_char_round_trips_shakespeare_and_mixed_text(shakespeare_text):
    for text in (shakespeare_text, MIXED):
        tok = CharTokenizer.train([text])
        ids = tok.encode(text)
        assert ids.dtype == np.int64 and len(ids) == len(text)
        assert tok.decode(ids) == text
    assert tok.eot_id is None


def test_char_vocabulary_is_the_sorted_characters_of_all_chunks():
    tok = CharTokenizer.train(["hello ", "world"])
    assert tok.chars == " dehlorw"
    assert tok.vocab_size == 8


def test_char_refuses_an_unknown_character_by_name():
    tok = CharTokenizer.train(["abc"])
    with pytest.raises(UserError, match=r"'z' \(U\+007A\) at position 2"):
        tok.encode("abz")


def test_bpe_round_trips_shakespeare_and_mixed_text_exactly(bpe, shakespeare_text):
    assert bpe.vocab_size == 512
    for text in (shakespeare_text, MIXED, MIXED[:1], "", EOT.join(["doc one", "doc two"])):
        ids = bpe.encode(text)
        assert ids.dtype == np.int64
        assert bpe.decode(ids) == text
    assert len(bpe.encode(shakespeare_text)) < 0.6 * len(shakespeare_text)  # it does compress


def test_bpe_end_of_text_is_one_special_token(bpe):
    assert isinstance(bpe.eot_id, int)
    ids = bpe.encode(f"a{EOT}b")
    assert list(ids).count(bpe.eot_id) == 1


def test_bpe_encodes_long_text_in_pieces_exactly_as_whole(bpe, shakespeare_text):
    text = shakespeare_text[:300_000]
    whole = bpe._tok.encode(text).ids  # one call on the whole text: HF's own answer
    assert bpe.encode(text).tolist() == whole


def test_split_text_cuts_only_after_a_non_space_before_a_newline():
    text = "one two\n\nthree\n  four five six seven\n" * 50
    pieces = split_text(text, 64)
    assert "".join(pieces) == text
    assert all(len(p) <= 64 for p in pieces)
    for piece in pieces[:-1]:
        assert not piece[-1].isspace()  # the next piece starts with the newline


# lines far longer than a piece; every third ends in a space, so no safe place follows it
FOX = "the quick brown fox jumps over the lazy dog"
LONG_LINES = "".join(f"{i}: " + " ".join([FOX] * (3 + i % 7)) + " " * (i % 3 == 0) + "\n" for i in range(60))


def test_bpe_encodes_lines_longer_than_a_piece_exactly_as_whole(bpe, monkeypatch):
    monkeypatch.setattr(BPETokenizer, "PIECE_CHARS", 64)  # every line is longer than a piece
    text = LONG_LINES + "and a last line without a newline, longer than one piece of sixty-four"
    assert bpe.encode(text).tolist() == bpe._tok.encode(text).ids


def test_bpe_trained_in_pieces_learns_what_the_whole_text_teaches(monkeypatch):
    """Training cuts its input into pieces to use every core; the merges must be those of the text."""
    monkeypatch.setattr(BPETokenizer, "PIECE_CHARS", len(LONG_LINES))  # one piece: the whole text
    whole = BPETokenizer.train([LONG_LINES], vocab_size=300)
    monkeypatch.setattr(BPETokenizer, "PIECE_CHARS", 64)  # every line is longer than a piece
    pieces = BPETokenizer.train([LONG_LINES], vocab_size=300)
    assert pieces._tok.to_str() == whole._tok.to_str()


def test_bpe_refuses_a_vocabulary_smaller_than_the_bytes():
    with pytest.raises(UserError, match="vocab_size must be at least 257"):
        BPETokenizer.train(["some text"], vocab_size=100)


def test_both_save_and_load_back_identically(bpe, tmp_path):
    char = CharTokenizer.train([MIXED])
    for tok in (char, bpe):
        path = tmp_path / f"{tok.kind}.json"
        tok.save(path)
        loaded = load_tokenizer(path)
        assert type(loaded) is type(tok)
        assert loaded.vocab_size == tok.vocab_size and loaded.eot_id == tok.eot_id
        assert loaded.encode(MIXED).tolist() == tok.encode(MIXED).tolist()
    # the BPE file is a standard Hugging Face tokenizer.json
    hf = HFTokenizer.from_file(str(tmp_path / "bpe.json"))
    assert hf.encode(MIXED).ids == bpe.encode(MIXED).tolist()


def test_load_tokenizer_refuses_other_files(tmp_path):
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(UserError, match="neither"):
        load_tokenizer(tmp_path / "other.json")
    with pytest.raises(UserError, match="cannot read tokenizer"):
        load_tokenizer(tmp_path / "missing.json")
