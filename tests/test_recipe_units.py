"""The recipe's parts against their formulas: schedules, loss terms, EMA, curriculum (optimizers:
test_optim.py)."""

import math

import pytest
import torch

from tinygpt.model.loss import lm_loss
from tinygpt.training.schedule import constant, cosine, staged_size, wsd
from tinygpt.training.state import make_ema
from tinygpt.training.step import update_ema


def test_cosine_at_its_phase_boundaries():
    f = lambda s: cosine(s, max_steps=1000, warmup_steps=100, min_lr_ratio=0.1)  # noqa: E731
    assert f(0) == pytest.approx(0.01)  # (0 + 1) / 100
    assert f(99) == pytest.approx(1.0)  # end of warmup
    assert f(100) == pytest.approx(1.0)  # start of decay
    assert f(550) == pytest.approx(0.55)  # half way: 0.1 + 0.9 * 0.5
    assert f(1000) == pytest.approx(0.1)


def test_wsd_at_its_phase_boundaries():
    f = lambda s, shape="linear": wsd(s, 1000, warmup_steps=100, decay_frac=0.2, decay_shape=shape)  # noqa: E731
    assert f(0) == pytest.approx(0.01)
    assert f(99) == pytest.approx(1.0)
    assert f(500) == f(799) == 1.0  # stable
    assert f(800) == pytest.approx(1.0)  # decay starts at 1000 - 200
    assert f(900) == pytest.approx(0.5)
    assert f(900, "1-sqrt") == pytest.approx(1 - math.sqrt(0.5))
    assert f(999) == pytest.approx(0.005)  # last step
    assert f(1000) == pytest.approx(0.0)


def test_constant_after_warmup():
    assert constant(0, 1000, warmup_steps=10) == pytest.approx(0.1)
    assert constant(9, 1000, warmup_steps=10) == constant(999, 1000, warmup_steps=10) == 1.0


def test_label_smoothing_and_z_loss_add_what_their_formulas_say():
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]]])  # (B=1, T=2, V=3)
    targets = torch.tensor([[0, 2]])
    logp = torch.log_softmax(logits[0], dim=-1)
    ce = -(logp[0, 0] + logp[1, 2]) / 2
    torch.testing.assert_close(lm_loss(logits, targets), ce)
    eps = 0.1  # smoothed target: (1 - eps) on the label plus eps spread evenly over the vocabulary
    smoothed = (1 - eps) * ce + eps * (-logp.mean(dim=-1)).mean()
    torch.testing.assert_close(lm_loss(logits, targets, label_smoothing=eps), smoothed)
    z = 1e-2
    lse = torch.logsumexp(logits[0], dim=-1)
    torch.testing.assert_close(lm_loss(logits, targets, z_loss=z), ce + z * (lse**2).mean())


def test_ema_matches_its_closed_form():
    model = torch.nn.Linear(1, 1, bias=False)
    decay, values = 0.9, [1.0, 2.0, 4.0, 8.0]
    ema = make_ema(model)
    for v in values:
        model.weight.data.fill_(v)
        update_ema(ema, model, decay, applied=torch.tensor(True))
    update_ema(
        ema, model.requires_grad_(False).weight.fill_(100.0) and model, decay, applied=torch.tensor(False)
    )
    # first update copies; then ema <- decay * ema + (1 - decay) * w; a skipped step changes nothing
    expected = values[0]
    for v in values[1:]:
        expected = decay * expected + (1 - decay) * v
    assert ema.module.weight.item() == pytest.approx(expected)
    assert ema.n_averaged.item() == len(values)


def test_curriculum_grows_in_multiples_of_the_start():
    # linear target 32 + 96 * step / 100, rounded down to a multiple of 32; 128 from step 100 on
    steps = (0, 33, 34, 66, 67, 99, 100, 500)  # targets 32, 63.7, 64.6, 95.4, 96.3, 127.0, -, -
    assert [staged_size(s, 32, 128, 100) for s in steps] == [32, 32, 64, 64, 96, 96, 128, 128]
    assert staged_size(0, None, 128, 100) == 128
