"""Scoring a whole token sequence, every token once, and bits per byte.

``score_tokens`` runs the model over windows of at most ``block_size`` tokens that cover the whole
sequence. The windows start every ``stride`` tokens (0, S, 2S, ...), and the last one is moved back
to end at the last token, so it is as long as the others. Every token but the first (it has nothing
before it to be predicted from) is scored exactly once, in the first window that predicts it: with
``stride = block_size`` (the default) the windows do not overlap and a token sees the tokens from
its window's start, 1 to block_size of them; a smaller stride gives every token scored after the
first window at least ``block_size - stride + 1`` tokens of context, at ``block_size / stride`` times
the compute.

Bits per byte is the summed loss in bits over the UTF-8 bytes of the text the scored tokens stand
for (``Tokenizer.token_bytes``): a tokenizer that packs more text into a token has a higher loss per
token but the same bits per byte for the same model quality, so runs with different tokenizers
compare on it.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tinygpt.runtime.device import autocast

BYTES_CHUNK = 1 << 20  # token ids looked up at a time when counting bytes: memory stays bounded


@dataclass
class Score:
    """Summed loss over the scored tokens and the size of their text."""

    nats: float  # the sum of -ln p(token) over the scored tokens
    tokens: int  # how many were scored
    bytes: int | None  # UTF-8 bytes of the text they stand for; None if the tokenizer cannot say

    @property
    def loss(self) -> float:
        """Mean nats per token (the training loss without label smoothing or z-loss)."""
        return self.nats / self.tokens

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss)

    @property
    def bits_per_byte(self) -> float | None:
        return None if self.bytes is None else bits_per_byte(self.loss, self.bytes / self.tokens)


def bits_per_byte(loss: float, bytes_per_token: float) -> float:
    """A mean loss in nats per token, as bits per byte of text."""
    return loss / math.log(2) / bytes_per_token


def window_starts(n_tokens: int, block_size: int, stride: int) -> list[int]:
    """Where the windows start, for a sequence of ``n_tokens`` (see the module's docstring)."""
    last_start = max(n_tokens - 1 - block_size, 0)  # the last window ends at the last token
    return [*range(0, last_start, stride), last_start]


@torch.no_grad()
def score_tokens(
    model: torch.nn.Module,
    ids: np.ndarray,
    block_size: int,
    stride: int,
    batch_size: int,
    device: torch.device,
    precision: str = "fp32",
) -> tuple[float, int]:
    """Summed nats of every token of ``ids`` but the first, and that count (n_tokens - 1)."""
    starts = window_starts(len(ids), block_size, stride)
    length = min(block_size, len(ids) - 1)  # every window holds this many inputs
    scored_until = 0  # the last position of ids scored so far
    total = 0.0
    for first in range(0, len(starts), batch_size):
        batch = starts[first : first + batch_size]
        rows = torch.from_numpy(np.stack([ids[s : s + length + 1].astype(np.int64) for s in batch]))
        rows = rows.to(device)  # (B, length + 1): inputs and the targets one position on
        # targets at window offset j sit at position s + j + 1: keep those past what is scored already
        keep = torch.zeros(len(batch), length, dtype=torch.bool)
        for row, s in enumerate(batch):
            keep[row, max(scored_until - s, 0) :] = True
            scored_until = s + length
        with autocast(device, precision):
            logits = model(rows[:, :-1])  # (B, length, V)
        nats = F.cross_entropy(logits.flatten(0, 1).float(), rows[:, 1:].flatten(), reduction="none")
        total += nats[keep.flatten().to(device)].cpu().double().sum().item()  # float64: MPS has none
    return total, len(ids) - 1


def count_bytes(ids: np.ndarray, token_bytes: np.ndarray | None) -> int | None:
    """UTF-8 bytes of the text that ``ids`` stand for; ``token_bytes``: (vocab_size,) bytes per id,
    or None when the tokenizer cannot say (then None)."""
    if token_bytes is None:
        return None
    return sum(int(token_bytes[ids[i : i + BYTES_CHUNK]].sum()) for i in range(0, len(ids), BYTES_CHUNK))
