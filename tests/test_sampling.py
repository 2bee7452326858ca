"""The sampling filters on hand-made logits: exactly which tokens each one keeps."""

import math

import pytest
import torch

from tinygpt.errors import UserError
from tinygpt.inference.sampling import (
    check_sampling,
    penalize_repeats,
    sample_next,
    top_k_filter,
    top_p_filter,
)

# One row of logits whose softmax is exactly [0.5, 0.25, 0.125, 0.0625, 0.0625], in scrambled order.
PROBS = torch.tensor([0.0625, 0.5, 0.125, 0.0625, 0.25])
LOGITS = PROBS.log()[None, :]  # (1, 5)


def kept(logits: torch.Tensor) -> set[int]:
    return set(torch.nonzero(logits[0] > -math.inf).flatten().tolist())


@pytest.mark.parametrize(
    "k,expected", [(1, {1}), (2, {1, 4}), (3, {1, 4, 2}), (5, {0, 1, 2, 3, 4}), (None, {0, 1, 2, 3, 4})]
)
def test_top_k_keeps_the_k_largest(k, expected):
    out = top_k_filter(LOGITS, k)
    assert kept(out) == expected
    assert torch.equal(out[0, list(expected)], LOGITS[0, list(expected)])  # survivors are untouched


@pytest.mark.parametrize(
    "p,expected",
    [
        (0.3, {1}),  # the top token alone already holds 0.5
        (0.6, {1, 4}),  # 0.5 + 0.25
        (0.8, {1, 4, 2}),  # 0.875
        (0.99, {0, 1, 2, 3, 4}),  # only all five reach 0.99
    ],
)
def test_top_p_keeps_the_smallest_set_reaching_p(p, expected):
    assert kept(top_p_filter(LOGITS, p)) == expected


def test_top_p_stops_at_the_first_token_that_reaches_p_even_among_ties():
    out = kept(top_p_filter(LOGITS, 0.9))  # 0.875 + one of the two 0.0625 tokens reaches 0.9375
    assert len(out) == 4 and {1, 4, 2} < out


def test_top_p_of_one_keeps_everything_and_a_tiny_p_keeps_the_top_token():
    assert kept(top_p_filter(LOGITS, 1.0)) == {0, 1, 2, 3, 4}
    assert kept(top_p_filter(LOGITS, 1e-9)) == {1}
    flat = torch.zeros(1, 4)  # four equally likely tokens: still exactly one survives a tiny p
    assert len(kept(top_p_filter(flat, 1e-9))) == 1


def test_top_p_works_row_by_row_on_what_top_k_left():
    logits = torch.stack([LOGITS[0], LOGITS[0].flip(0)])  # (2, 5), the second row mirrored: i -> 4 - i
    after_k = top_k_filter(logits, 2)
    assert kept(after_k[:1]) == {1, 4} and kept(after_k[1:]) == {3, 0}
    out = top_p_filter(after_k, 0.6)  # over the two survivors the top one holds 2/3 >= 0.6
    assert kept(out[:1]) == {1} and kept(out[1:]) == {3}


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits_of_seen_tokens():
    logits = torch.tensor([[2.0, -2.0, 2.0, -2.0, 0.0]])
    seen = torch.tensor([[True, True, False, False, True]])
    out = penalize_repeats(logits, seen, 2.0)
    assert out.tolist() == [[1.0, -4.0, 2.0, -2.0, 0.0]]


def test_greedy_picks_the_argmax_after_the_penalty():
    logits = torch.tensor([[3.0, 2.0, 1.0]])
    nobody = torch.zeros(1, 3, dtype=torch.bool)
    assert sample_next(logits, nobody, temperature=0).tolist() == [0]
    first_seen = torch.tensor([[True, False, False]])
    assert sample_next(logits, first_seen, temperature=0, repetition_penalty=2.0).tolist() == [1]


def test_sampling_draws_only_from_the_kept_set_and_follows_the_seed():
    logits = LOGITS.expand(2000, 5)
    seen = torch.zeros(2000, 5, dtype=torch.bool)
    draws = sample_next(logits, seen, top_p=0.6, generator=torch.Generator().manual_seed(0))
    assert set(draws.tolist()) == {1, 4}
    assert abs((draws == 1).float().mean().item() - 2 / 3) < 0.05  # renormalised 0.5 : 0.25
    again = sample_next(logits, seen, top_p=0.6, generator=torch.Generator().manual_seed(0))
    other = sample_next(logits, seen, top_p=0.6, generator=torch.Generator().manual_seed(1))
    assert torch.equal(draws, again)
    assert not torch.equal(draws, other)


def test_temperature_sharpens_and_flattens():
    logits = torch.tensor([[1.0, 0.0]]).expand(4000, 2)
    seen = torch.zeros(4000, 2, dtype=torch.bool)

    def share_of_first(temperature: float) -> float:
        draws = sample_next(logits, seen, temperature=temperature, generator=torch.Generator().manual_seed(0))
        return (draws == 0).float().mean().item()

    assert share_of_first(0.25) > share_of_first(1.0) > share_of_first(4.0) > 0.5


@pytest.mark.parametrize(
    "values,message",
    [
        (dict(temperature=-0.1), "temperature must be a number >= 0"),
        (dict(top_k=0), "top_k must be a positive integer"),
        (dict(top_k=2.5), "top_k must be a positive integer"),
        (dict(top_p=0.0), "top_p must be in (0, 1]"),
        (dict(top_p=1.5), "top_p must be in (0, 1]"),
        (dict(repetition_penalty=0.0), "repetition_penalty must be > 0"),
        (dict(temperature="hot"), "temperature must be a number"),
    ],
)
def test_out_of_range_values_are_refused_by_name(values, message):
    settings = dict(temperature=1.0, top_k=None, top_p=1.0, repetition_penalty=1.0) | values
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace("]", r"\]")):
        check_sampling(**settings)
