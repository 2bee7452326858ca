"""Corpora, tokenizers, the token cache, token shards and batches."""

from tinygpt.data.batches import SAMPLING, TRAIN_STREAM, VAL_STREAM, get_batch, on_device
from tinygpt.data.datasets import TextData, load_downloaded, load_embedded, load_text_data
from tinygpt.data.sharded import load_shards
from tinygpt.data.text import embedded_corpus_path
from tinygpt.data.tokenizers import BPETokenizer, CharTokenizer, Tokenizer, load_tokenizer

__all__ = [
    "SAMPLING",
    "TRAIN_STREAM",
    "VAL_STREAM",
    "BPETokenizer",
    "CharTokenizer",
    "TextData",
    "Tokenizer",
    "embedded_corpus_path",
    "get_batch",
    "on_device",
    "load_downloaded",
    "load_shards",
    "load_embedded",
    "load_text_data",
    "load_tokenizer",
]
