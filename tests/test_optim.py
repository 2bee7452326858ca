"""Optimizers against their formulas and torch's own classes: parameter groups, Lion's rule, Muon+AdamW
as one optimizer, every conf/optim option built from its YAML, and exact resumes through the loop."""

import io
import re
import sys

import pytest
import torch
from conftest import assert_same_weights, build_model, compose_train, straight_and_resumed

from tinygpt.errors import UserError
from tinygpt.training.optim import GROUPING_KEYS, Lion, MuonWithAdamW, build_optimizer, param_groups, set_lr


def build(model: torch.nn.Module, *overrides: str) -> torch.optim.Optimizer:
    return build_optimizer(model, compose_train(*overrides).optim)


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


# Each conf/optim option: the class it builds, and a CLI key that must reach the groups.
OPTIONS = {
    "adamw": (torch.optim.AdamW, "optim.betas=[0.8,0.9]", "betas", (0.8, 0.9)),
    "lion": (Lion, "optim.betas=[0.8,0.9]", "betas", (0.8, 0.9)),
    "sgd": (torch.optim.SGD, "optim.momentum=0.5", "momentum", 0.5),
    "muon": (MuonWithAdamW, "optim.eps=1e-6", "eps", 1e-6),  # AdamW's eps, on the non-hidden groups
}


@pytest.mark.parametrize("option", OPTIONS)
def test_every_option_builds_its_class_with_the_config_values(option):
    cls, override, key, value = OPTIONS[option]
    model = build_model()
    opt = build(model, f"optim={option}", "optim.weight_decay=0.25", "optim.decay_embeddings=true", override)
    assert type(opt) is cls
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["hidden"]["weight_decay"] == 0.25 and groups["no_decay"]["weight_decay"] == 0.0
    assert id(model.transformer.wte.weight) in {id(p) for p in groups["head"]["params"]}  # decayed
    assert groups["no_decay"][key] == value
    assert not any(k in g or k in opt.defaults for k in GROUPING_KEYS for g in opt.param_groups)


def test_adamw_takes_foreach_on_cpu_and_adamw8bit_keeps_its_state_in_uint8():
    model = build_model("model.n_embd=64")  # matrices of >= 4096 elements get 8-bit state
    assert build(model, "optim=adamw").param_groups[0]["foreach"] is True
    opt = build(model, "optim=adamw8bit")
    model(torch.randint(0, 50, (2, 8))).sum().backward()
    opt.step()
    state = opt.state[model.transformer.h[0].mlp.c_fc.weight]
    assert state["state1"].dtype == torch.uint8 and state["state2"].dtype == torch.uint8


def test_missing_optional_parts_are_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # "import bitsandbytes" raises ImportError
    message = "optim=adamw8bit needs bitsandbytes: pip install -e '.[bnb]' in the checkout"
    with pytest.raises(UserError, match=f"^{re.escape(message)}$"):
        build(build_model(), "optim=adamw8bit")
    monkeypatch.delattr(torch.optim, "Muon")
    with pytest.raises(UserError, match=r"optim=muon needs torch.optim.Muon \(torch >= 2.9\)"):
        build(build_model(), "optim=muon")


def muon_steps(model: torch.nn.Module, optimizers: list[torch.optim.Optimizer], steps: range) -> None:
    """A few steps as the loop takes them: a changing lr, clipped gradients, one step per optimizer."""
    for step in steps:
        x = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(step))
        model(x).square().mean().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        for opt in optimizers:
            set_lr(opt, 1e-2 * (step + 1))
            opt.step()
            opt.zero_grad(set_to_none=True)


def test_muon_with_adamw_steps_exactly_as_torch_muon_and_adamw_side_by_side():
    model, reference = build_model("model.tie_weights=false"), build_model("model.tie_weights=false")
    reference.load_state_dict(model.state_dict())
    opt = build(model, "optim=muon")
    assert isinstance(opt, torch.optim.Optimizer)
    groups = param_groups(reference, 0.1)
    muon = torch.optim.Muon(groups[:1], lr=1.0, momentum=0.95, ns_steps=5, adjust_lr_fn="match_rms_adamw")
    adamw = torch.optim.AdamW(groups[1:], lr=1.0, betas=(0.9, 0.95), eps=1e-8, foreach=True)
    assert groups[0]["name"] == "hidden" and model.transformer.h[0].attn.c_attn.weight.ndim == 2
    muon_steps(model, [opt], range(4))
    muon_steps(reference, [muon, adamw], range(4))
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_muon_with_adamw_continues_from_its_state_dict_exactly():
    straight, split = build_model("model.tie_weights=false"), build_model("model.tie_weights=false")
    split.load_state_dict(straight.state_dict())
    opt = build(straight, "optim=muon")
    muon_steps(straight, [opt], range(4))
    first = build(split, "optim=muon")
    muon_steps(split, [first], range(2))
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = build(split, "optim=muon")
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    muon_steps(split, [resumed], range(2, 4))
    for (name, p), q in zip(straight.named_parameters(), split.parameters(), strict=True):
        assert torch.equal(p, q), name
    assert resumed.state_dict()["state"].keys() == opt.state_dict()["state"].keys()


@pytest.mark.parametrize("recipe", [["optim=muon"], ["optim=muon", "precision=fp16"], ["optim=sgd"]])
def test_a_resumed_run_matches_an_uninterrupted_one(recipe, tmp_path):
    a, b = straight_and_resumed([*recipe, "eval_interval=3"], tmp_path, total=6, stop=3)
    assert_same_weights(a, b)
    for index, state in a["optimizer"]["state"].items():
        assert all(torch.equal(v, b["optimizer"]["state"][index][k]) for k, v in state.items())
