"""The recipe's parts against their formulas: optimizers, schedules, loss terms, EMA, curriculum."""

import math

import pytest
import torch
from conftest import build_model

from tinygpt.loss import lm_loss
from tinygpt.optim import Lion, MuonWithAdamW, adamw8bit, muon, param_groups
from tinygpt.schedule import constant, cosine, curriculum_block_size, wsd
from tinygpt.state import make_ema


def test_lion_update_follows_the_published_rule():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5, 3.0]))
    m0 = torch.tensor([0.2, 0.1, -0.3, 0.0])
    g = torch.tensor([-1.0, 0.5, 0.1, 2.0])
    lr, wd, b1, b2 = 0.1, 0.5, 0.9, 0.99
    opt = Lion([p], lr=lr, betas=(b1, b2), weight_decay=wd)
    opt.state[p]["exp_avg"] = m0.clone()
    p.grad = g.clone()
    before = p.detach().clone()
    opt.step()
    # c = b1*m + (1-b1)*g = [0.08, 0.14, -0.26, 0.2] -> sign [1, 1, -1, 1]
    expected = before - lr * (torch.tensor([1.0, 1.0, -1.0, 1.0]) + wd * before)
    torch.testing.assert_close(p.detach(), expected)
    torch.testing.assert_close(opt.state[p]["exp_avg"], b2 * m0 + (1 - b2) * g)


def test_weight_decay_groups_spare_norms_biases_and_embeddings():
    model = build_model()
    groups = {g["name"]: g for g in param_groups(model, 0.1)}
    no_decay = {id(p) for p in groups["no_decay"]["params"]}
    assert id(model.transformer.wte.weight) in no_decay  # tied with lm_head
    assert id(model.transformer.h[0].ln_1.weight) in no_decay
    assert id(model.transformer.h[0].attn.c_attn.bias) in no_decay
    assert id(model.transformer.h[0].attn.c_attn.weight) in {id(p) for p in groups["hidden"]["params"]}
    assert groups["hidden"]["weight_decay"] == 0.1 and groups["no_decay"]["weight_decay"] == 0.0
    with_emb = {g["name"]: g for g in param_groups(model, 0.1, decay_embeddings=True)}
    assert id(model.transformer.wte.weight) in {id(p) for p in with_emb["head"]["params"]}


def test_adamw8bit_keeps_its_state_in_uint8():
    model = build_model("model.n_embd=64")  # matrices of >= 4096 elements get 8-bit state
    opt = adamw8bit(param_groups(model, 0.1), lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    model(torch.randint(0, 50, (2, 8))).sum().backward()
    opt.step()
    state = opt.state[model.transformer.h[0].mlp.c_fc.weight]
    assert state["state1"].dtype == torch.uint8 and state["state2"].dtype == torch.uint8


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest():
    model = build_model("model.tie_weights=false")
    opt = muon(param_groups(model, 0.1), lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    assert isinstance(opt, MuonWithAdamW)
    muon_ids = {id(p) for g in opt.muon.param_groups for p in g["params"]}
    assert id(model.transformer.h[0].attn.c_attn.weight) in muon_ids
    assert id(model.lm_head.weight) not in muon_ids and id(model.transformer.wte.weight) not in muon_ids
    model(torch.randint(0, 50, (2, 8))).sum().backward()
    before = model.transformer.h[0].attn.c_attn.weight.detach().clone()
    opt.step()
    assert not torch.equal(before, model.transformer.h[0].attn.c_attn.weight)
    clone = muon(
        param_groups(build_model("model.tie_weights=false"), 0.1), lr=1e-3, betas=(0.9, 0.95), eps=1e-8
    )
    clone.load_state_dict(opt.state_dict())
    assert clone.state_dict()["muon"]["state"].keys() == opt.state_dict()["muon"]["state"].keys()


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
    ema = make_ema(model, decay)
    for v in values:
        model.weight.data.fill_(v)
        ema.update_parameters(model)
    # first update copies; then ema <- decay * ema + (1 - decay) * w
    expected = values[0]
    for v in values[1:]:
        expected = decay * expected + (1 - decay) * v
    assert ema.module.weight.item() == pytest.approx(expected)


def test_curriculum_grows_in_multiples_of_the_start():
    # linear target 32 + 96 * step / 100, rounded down to a multiple of 32; 128 from step 100 on
    steps = (0, 33, 34, 66, 67, 99, 100, 500)  # targets 32, 63.7, 64.6, 95.4, 96.3, 127.0, -, -
    assert [curriculum_block_size(s, 32, 128, 100) for s in steps] == [32, 32, 64, 64, 96, 96, 128, 128]
    assert curriculum_block_size(0, None, 128, 100) == 128
