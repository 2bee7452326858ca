"""Tests for the synthetic default corpus: tools/make_tiny_corpus.py and data/tiny_corpus.txt."""

from __future__ import annotations

import math
import runpy
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "data" / "tiny_corpus.txt"

# The generator is a build-time script outside the package (nothing in tinygpt/ imports it): run its file.
_GENERATOR = runpy.run_path(str(REPO / "tools" / "make_tiny_corpus.py"))
generate, main = _GENERATOR["generate"], _GENERATOR["main"]
# Printable ASCII (space to tilde) plus newline; no tabs, carriage returns or other control characters.
ALLOWED = {chr(c) for c in range(32, 127)} | {"\n"}


@pytest.fixture(scope="module")
def committed() -> bytes:
    return CORPUS.read_bytes()


def test_committed_file_matches_generator(committed: bytes) -> None:
    # If this fails, the generator changed: rerun `python tools/make_tiny_corpus.py` and commit both.
    assert committed == generate().encode("utf-8"), "data/tiny_corpus.txt is out of date with its generator"


def test_size_and_characters(committed: bytes) -> None:
    assert 500_000 <= len(committed) <= 1024 * 1024
    text = committed.decode("ascii")  # raises if anything is outside ASCII
    assert set(text) <= ALLOWED, f"unexpected characters: {sorted(set(text) - ALLOWED)!r}"
    assert 60 <= len(set(text)) <= 80
    # Paragraphs are separated by exactly one blank line, and the file ends with one newline.
    assert "\n\n" in text and "\n\n\n" not in text
    assert text.endswith("\n") and not text.endswith("\n\n")


def test_same_seed_same_text_other_seed_other_text() -> None:
    a = generate(seed=1, target_bytes=50_000)
    assert a == generate(seed=1, target_bytes=50_000)
    assert a != generate(seed=2, target_bytes=50_000)
    # It stops right after reaching the target: sections are well under 1 KB each.
    assert 50_000 <= len(a) < 51_024


def test_main_writes_the_generated_text(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "corpus.txt"
    main(["--out", str(out), "--seed", "3"])
    assert out.read_bytes() == generate(seed=3).encode("utf-8")


def _entropies(text: str) -> tuple[float, float]:
    """(unigram entropy, entropy of a character given the 3 before it), in bits per character."""
    n = len(text)
    h1 = -sum(c / n * math.log2(c / n) for c in Counter(text).values())
    quads = Counter(zip(text, text[1:], text[2:], text[3:], strict=False))  # stops at the shortest
    contexts: Counter[tuple[str, ...]] = Counter()
    for quad, c in quads.items():
        contexts[quad[:3]] += c
    m = n - 3
    h3 = -sum(c / m * math.log2(c / contexts[quad[:3]]) for quad, c in quads.items())
    return h1, h3


def test_text_has_learnable_structure(committed: bytes) -> None:
    # Random letters would give h3 close to h1; English-like text is far more predictable.
    h1, h3 = _entropies(committed.decode("ascii"))
    assert h3 <= h1 - 1.5, f"unigram {h1:.2f} bits/char, 3-char context {h3:.2f} bits/char"
