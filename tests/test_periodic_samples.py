"""The training loop's periodic samples keep one decoder (its cache, its compiled or captured step) from
sample to sample, and still give exactly the text a new decoder gives at the same random state."""

import copy
import logging

import pytest
import torch
from conftest import build_model, compose_train, graph_by_running

import tinygpt.inference.decoder
import tinygpt.inference.engine
from tinygpt.inference.cache import fit_context
from tinygpt.inference.engine import generate_text
from tinygpt.inference.repeated import RepeatedSample
from tinygpt.training.loop import train
from tinygpt.training.state import make_ema
from tinygpt.training.step import update_ema

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models decode fastest on one thread

CONTROLS = dict(temperature=1.5, top_k=30, repetition_penalty=1.3)  # the penalty reads what was sampled


class Letters:
    """A tokenizer of 50 ids: id i is the character chr(0x100 + i); id 0 ends a text."""

    eot_id = 0

    def encode(self, text: str) -> list[int]:
        return [ord(c) - 0x100 for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(0x100 + i) for i in ids)


PROMPT = Letters().decode([1, 2])


def count_calls(monkeypatch, module, name: str) -> list[int]:
    """Replace ``module.name`` by a wrapper that appends to the returned list at every call."""
    calls, original = [], getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_a_training_run_makes_its_sample_decoder_once_and_samples_what_new_decoders_give(
    tmp_path, monkeypatch, caplog
):
    """Three samples (of the EMA, updated in place) from one decoder; each the text a new decoder gives
    from the same weights at the same random state."""
    made = count_calls(monkeypatch, tinygpt.inference.engine, "Decoder")
    drawn = []  # (the model, a copy of its weights, the random state, the text) at each sample
    original_text = RepeatedSample.text

    def recorded_text(self, model):
        weights, rng = copy.deepcopy(model.state_dict()), torch.get_rng_state()
        text = original_text(self, model)
        drawn.append((self, model, weights, rng, text))
        return text

    monkeypatch.setattr(RepeatedSample, "text", recorded_text)
    caplog.set_level(logging.INFO, logger="tinygpt")
    cfg = compose_train(
        "max_steps=6",
        "eval_interval=6",
        "sample_interval=2",
        "sample_tokens=30",
        "ema_decay=0.9",
        "schedule.warmup_steps=1",
    )
    train(cfg, tmp_path)
    assert len(made) == 1 and len(drawn) == 3  # steps 2, 4 and 6
    assert len({id(sampler) for sampler, *_ in drawn}) == 1 and len({id(m) for _, m, *_ in drawn}) == 1
    texts = [text for *_, text in drawn]
    assert len(set(texts)) == 3 and all(len(text) == 31 for text in texts)  # a new line and 30 characters
    log = caplog.text
    sampler = drawn[0][0]
    for _, model, weights, rng, text in drawn:
        assert f":\n{text[1:]}\n" in log
        fresh = copy.deepcopy(model)
        fresh.load_state_dict(weights)
        torch.set_rng_state(rng)
        expected = generate_text(fresh, sampler.tokenizer, "\n", max_new_tokens=30, temperature=0.8, top_k=50)
        assert text == expected[0]


def in_place_change(model, ema, seed: int) -> None:
    """What a training step does to the weights: the optimizer's in-place update, then the EMA's."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p), alpha=0.2)
    update_ema(ema, model, 0.5, torch.tensor(True))


@pytest.mark.parametrize("overrides", [[], ["model=llama", "model.sliding_window=5"]], ids=["slide", "ring"])
def test_a_kept_fixed_shape_decoder_follows_weights_changed_in_place(overrides, monkeypatch):
    """static_cache=true, the graph path emulated: captured once, then reset and replayed, through slide
    restarts (or a ring past block_size), a repetition penalty and an end-of-text token; the text changes
    with the weights, always the one a new decoder gives."""
    captures = graph_by_running(monkeypatch)
    torch.manual_seed(0)
    model = build_model(*overrides, "model.block_size=16").eval()
    fit_context(model, 2, 40)  # a ring's tables grown as sampling grows them: update_ema averages buffers too
    ema = make_ema(model)
    update_ema(ema, model, 0.5, torch.tensor(True))  # the first update copies the weights
    sampler = RepeatedSample(Letters(), PROMPT, 40, static_cache=True, **CONTROLS)
    texts = []
    for seed in range(4):
        in_place_change(model, ema, seed)
        torch.manual_seed(100)  # the same random state every time: only the weights differ
        before = len(captures)
        texts.append(sampler.text(ema.module))
        assert len(captures) - before == (seed == 0)  # recorded at the first sample only
        torch.manual_seed(100)
        fresh = generate_text(ema.module, Letters(), PROMPT, max_new_tokens=40, static_cache=True, **CONTROLS)
        assert texts[-1] == fresh[0]
    assert len(captures) == 5  # one kept, four new
    assert len(set(texts)) == 4


def test_a_new_decoder_is_made_for_another_model_or_a_replaced_tensor(monkeypatch):
    made = count_calls(monkeypatch, tinygpt.inference.engine, "Decoder")
    torch.manual_seed(0)
    model, other = build_model().eval(), build_model().eval()
    sampler = RepeatedSample(Letters(), PROMPT[:1], 10, static_cache=True, **CONTROLS)
    for _ in range(2):
        sampler.text(model)
    assert len(made) == 1
    sampler.text(other)
    assert len(made) == 2
    other.lm_head.weight = torch.nn.Parameter(other.lm_head.weight.detach() * 2)  # a new tensor, elsewhere
    torch.manual_seed(5)
    text = sampler.text(other)
    assert len(made) == 3
    torch.manual_seed(5)
    assert (
        text
        == generate_text(other, Letters(), PROMPT[:1], max_new_tokens=10, static_cache=True, **CONTROLS)[0]
    )
