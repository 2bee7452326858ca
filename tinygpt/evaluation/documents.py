"""Scoring a text document by document, as lm-evaluation-harness's rolling loglikelihood does
(``python -m tinygpt.eval text=FOLDER documents=separate``).

``documents=joined`` (the default) scores the files of ``text=`` as one token sequence, encoded as the
token cache encodes a corpus: char documents follow one another with nothing between them, a BPE
vocabulary puts its <|endoftext|> between them (scored, as a token of 0 bytes), and the very first
token is never scored. lm-evaluation-harness (``loglikelihood_rolling``: the perplexity tasks'
word_perplexity, byte_perplexity and bits_per_byte) scores each document on its own: the document's
tokens follow one prefix token (the tokenizer's bos, <|endoftext|>), and every token of the document
is scored, the first from the prefix alone. Its windows hold ``max_length`` (= ``block_size``)
inputs: the first starts at the prefix, the next every ``block_size`` tokens, the last moved back to
end at the document's end. That is ``score_tokens`` over [prefix] + document with
``stride = block_size``. Bits per byte is the loss summed over all documents over their UTF-8 bytes
summed (prefixes stand for no text and are not predicted).

A char vocabulary has no <|endoftext|>: ``tinygpt.export`` adds it (and <unk>) as ids V and V+1, each
row the mean of the characters' rows (``tinygpt.hf.export.mean_rows``). ``with_special_rows``
gives the model the same rows, so the documents are scored by the model lm-evaluation-harness loads,
the two extra logits taking their small share of the probability as they do there.
"""

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinygpt.data import CharTokenizer, Tokenizer
from tinygpt.data.cache import encode_documents
from tinygpt.errors import UserError
from tinygpt.evaluation.scoring import Score, count_bytes, score_tokens
from tinygpt.hf.export import CHAR_SPECIALS, mean_rows


@torch.no_grad()
def with_special_rows(model: nn.Module, rows: int) -> nn.Module:
    """A copy of ``model`` whose vocabulary V grows by ``rows`` ids (V .. V + rows - 1), as in a char
    export: every (V, D) token table (the embedding, value embeddings) and the output layer get
    ``mean_rows``; a tied output layer stays tied to the embedding."""
    vocab = model.lm_head.out_features
    extended = copy.deepcopy(model)
    for module in extended.modules():
        if isinstance(module, nn.Embedding) and module.num_embeddings == vocab:
            module.weight = nn.Parameter(mean_rows(module.weight, rows), requires_grad=False)
            module.num_embeddings = vocab + rows
    head = extended.lm_head
    if model.lm_head.weight is model.transformer.wte.weight:
        head.weight = extended.transformer.wte.weight
    else:
        head.weight = nn.Parameter(mean_rows(head.weight, rows), requires_grad=False)
    head.out_features = vocab + rows
    return extended


def prefixed_model(model: nn.Module, tokenizer: Tokenizer) -> tuple[nn.Module, int]:
    """The model that scores documents after a prefix token, and that token's id: a char run's with
    the exported rows (<|endoftext|> is id V), a BPE run itself (its <|endoftext|>)."""
    if isinstance(tokenizer, CharTokenizer):
        return with_special_rows(model, len(CHAR_SPECIALS)), tokenizer.vocab_size
    if tokenizer.eot_id is None:
        raise UserError(
            "documents=separate scores each document after the tokenizer's <|endoftext|>, and this "
            "tokenizer has none; use documents=joined"
        )
    return model, tokenizer.eot_id


def document_tokens(doc: Path, tokenizer: Tokenizer) -> np.ndarray:
    """(N,) ids of one document, encoded as the token cache encodes it."""
    chunks = list(encode_documents([doc], tokenizer))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)


def score_documents(
    model: nn.Module,
    tokenizer: Tokenizer,
    docs: list[Path],
    stride: int,
    batch_size: int,
    precision: str = "fp32",
) -> tuple[Score, int]:
    """Every token of every document in ``docs`` scored after the prefix token (see the module's
    docstring), summed; and how many documents held tokens (an empty one scores nothing)."""
    scorer, prefix = prefixed_model(model, tokenizer)
    device = next(model.parameters()).device
    token_bytes = tokenizer.token_bytes()
    nats, tokens, n_bytes, scored = 0.0, 0, 0, 0
    for doc in docs:
        ids = document_tokens(doc, tokenizer)  # (N,)
        if len(ids) == 0:
            continue
        sequence = np.concatenate([[prefix], ids]).astype(np.int64)  # (N + 1,): the prefix, then the text
        doc_nats, doc_tokens = score_tokens(
            scorer, sequence, model.block_size, stride, batch_size, device, precision
        )
        nats, tokens, scored = nats + doc_nats, tokens + doc_tokens, scored + 1
        doc_bytes = count_bytes(ids, token_bytes)
        n_bytes = None if doc_bytes is None or n_bytes is None else n_bytes + doc_bytes
    return Score(nats, tokens, n_bytes), scored
