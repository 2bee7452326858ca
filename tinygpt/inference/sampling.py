"""From next-token logits to a chosen token: small pure functions, applied in this order.

repetition penalty -> temperature (0 = greedy) -> top-k -> top-p -> draw from the softmax (``draw``).

Each filter takes logits (B, V) and returns logits of the same shape, with the tokens it rules out set
to -inf, so the filters compose and each one can be checked on hand-made logits.
"""

import math

import torch

from tinygpt.errors import UserError


def check_sampling(temperature: float, top_k: int | None, top_p: float, repetition_penalty: float) -> None:
    """Refuse sampling values that mean nothing, naming the key and the range it takes."""
    if not _is_number(temperature) or temperature < 0:
        raise UserError(f"temperature must be a number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise UserError(f"top_k must be a positive integer, or null to keep every token, got {top_k!r}")
    if not _is_number(top_p) or not 0 < top_p <= 1:
        raise UserError(f"top_p must be in (0, 1] (1 keeps every token), got {top_p!r}")
    if not _is_number(repetition_penalty) or repetition_penalty <= 0:
        raise UserError(f"repetition_penalty must be > 0 (1 = no penalty), got {repetition_penalty!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def penalize_repeats(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty on the tokens already in the text (``seen``: (B, V) bool).

    A positive logit is divided by ``penalty`` and a negative one multiplied by it, so with
    penalty > 1 a repeated token always becomes less likely, whatever the sign of its logit.
    """
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalized, logits)


def top_k_filter(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Keep the ``k`` largest logits of each row (all of them when k is None or >= V)."""
    if k is None or k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]  # (B, 1) the smallest logit kept
    return logits.masked_fill(logits < kth, -math.inf)


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probability sums to >= p.

    The most likely token is always kept, so a row never ends up empty.
    """
    if p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # (B, V) each
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of the tokens ranked above each one
    drop_sorted = mass_before >= p  # once the set holds p, every less likely token goes
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, -math.inf)


def sample_next(
    logits: torch.Tensor,
    seen: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """logits (B, V) of the next position -> (B,) token ids; ``generator`` makes the draw reproducible."""
    logits = logits.float()  # filters and softmax in fp32, whatever the model's dtype
    if repetition_penalty != 1.0:
        logits = penalize_repeats(logits, seen, repetition_penalty)
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = top_p_filter(top_k_filter(logits / temperature, top_k), top_p)
    return draw(logits.softmax(dim=-1), generator)


def draw(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of probs (B, V) -> (B,): the token ``torch.multinomial(probs, 1)`` draws.

    It is multinomial's own method for one sample (the row's argmax of p / E, E ~ Exp(1) drawn from
    ``generator``), so the same generator gives the same tokens, but without multinomial's checks of
    the probabilities, which wait for the device: a CUDA graph can capture this.
    """
    noise = torch.empty_like(probs).exponential_(generator=generator)  # (B, V)
    return (probs / noise).argmax(dim=-1)
