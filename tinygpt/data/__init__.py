"""Corpora, tokenizers and batches."""

from tinygpt.data.text import (
    TRAIN_STREAM,
    VAL_STREAM,
    TextData,
    check_fits,
    embedded_corpus_path,
    get_batch,
    load_text_data,
)
from tinygpt.data.tokenizers import CharTokenizer, load_tokenizer

__all__ = [
    "TRAIN_STREAM",
    "VAL_STREAM",
    "CharTokenizer",
    "TextData",
    "check_fits",
    "embedded_corpus_path",
    "get_batch",
    "load_text_data",
    "load_tokenizer",
]
