"""Parameter groups with their own learning rates (optim.embed_lr_scale, head_lr_scale, scalar_lr_scale):
which parameters each scale splits out, the lr every group gets from set_lr (and a CUDA graph's replay),
Muon's split, and that with every scale at 1 the groups stay those earlier versions saved."""

import json
from pathlib import Path

import pytest
import torch
from conftest import assert_same_weights, build_model, compose_train, straight_and_resumed

from tinygpt.config.schema import check_train_config
from tinygpt.errors import UserError
from tinygpt.training.checkpoint import load_checkpoint
from tinygpt.training.graphs import fill_lrs, lr_tensors
from tinygpt.training.optim import MuonWithAdamW, build_optimizer, param_groups, set_lr

OLD_RUN = Path(__file__).parent / "fixtures" / "run_written_by_0_1"  # written by TinyGPT 0.1
SCALES = ["optim.embed_lr_scale=0.5", "optim.head_lr_scale=3", "optim.scalar_lr_scale=2"]
EXPECTED_SCALE = {"hidden": 1.0, "head": 3.0, "embed": 0.5, "scalars": 2.0, "no_decay": 1.0}


def with_scalars(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with two learned scalar parameters and the ``scalar_parameters()`` that lists them."""
    model.skip_weight = torch.nn.Parameter(torch.ones(2))  # (2,)
    model.gain = torch.nn.Parameter(torch.ones(()))  # ()
    model.scalar_parameters = lambda: [model.skip_weight, model.gain]
    return model


def members(group: dict, model: torch.nn.Module) -> list[str]:
    names = {id(p): name for name, p in model.named_parameters()}
    return [names[id(p)] for p in group["params"]]


def build(model: torch.nn.Module, *overrides: str) -> torch.optim.Optimizer:
    return build_optimizer(model, compose_train(*overrides).optim)


def test_with_every_scale_1_the_groups_are_the_ones_an_earlier_version_saved():
    """The 0.1 fixture's optimizer state (tied GPT, optim=lion): same names, order, members and decays;
    it loads, and set_lr then sets the schedule's lr on every group."""
    ckpt = load_checkpoint(OLD_RUN / "ckpt.pt")
    model_cfg = json.loads((OLD_RUN / "effective_config.json").read_text())["model"]
    shape = [f"model.{k}={model_cfg[k]}" for k in ("n_layer", "n_head", "n_embd", "block_size")]
    model = build_model(*shape, vocab_size=ckpt["model"]["transformer.wte.weight"].shape[0])
    model.load_state_dict(ckpt["model"])
    opt = build(model, *shape, "optim=lion")
    saved = ckpt["optimizer"]["param_groups"]
    now = opt.state_dict()["param_groups"]
    assert [(g["name"], g["params"], g["weight_decay"]) for g in now] == [
        (g["name"], g["params"], g["weight_decay"]) for g in saved
    ]
    assert not any("lr_scale" in g for g in now)
    opt.load_state_dict(ckpt["optimizer"])
    set_lr(opt, 2e-3)
    assert [g["lr"] for g in opt.param_groups] == [2e-3, 2e-3]


@pytest.mark.parametrize("decay_embeddings", [False, True])
def test_scales_of_1_change_nothing_in_an_untied_model(decay_embeddings):
    model = with_scalars(build_model("model=llama", "model.tie_weights=false"))
    ones = {"embed": 1.0, "head": 1.0, "scalars": 1.0}
    plain = param_groups(model, 0.1, decay_embeddings)
    assert param_groups(model, 0.1, decay_embeddings, ones) == plain
    assert [g["name"] for g in plain] == ["hidden", "head", "no_decay"]
    head = ["transformer.wte.weight", "lm_head.weight"] if decay_embeddings else ["lm_head.weight"]
    assert members(plain[1], model) == head
    assert {"skip_weight", "gain"} <= set(members(plain[2], model))


@pytest.mark.parametrize("decay_embeddings", [False, True])
def test_each_scale_splits_out_its_group_with_its_decay(decay_embeddings):
    model = with_scalars(build_model("model.tie_weights=false"))  # learned positions: a second embedding
    scales = {"embed": 0.5, "head": 3.0, "scalars": 2.0}
    groups = {g["name"]: g for g in param_groups(model, 0.1, decay_embeddings, scales)}
    assert list(groups) == ["hidden", "head", "embed", "scalars", "no_decay"]
    assert members(groups["head"], model) == ["lm_head.weight"]
    assert members(groups["embed"], model) == ["transformer.wte.weight", "transformer.wpe.weight"]
    assert members(groups["scalars"], model) == ["skip_weight", "gain"]
    assert groups["embed"]["weight_decay"] == (0.1 if decay_embeddings else 0.0)
    assert groups["head"]["weight_decay"] == 0.1 and groups["scalars"]["weight_decay"] == 0.0
    assert {name: g.get("lr_scale", 1.0) for name, g in groups.items()} == EXPECTED_SCALE
    every = [p for g in groups.values() for p in g["params"]]
    assert len(every) == len({id(p) for p in every}) == len(list(model.parameters()))


def test_a_head_scale_alone_keeps_it_off_the_decayed_embeddings():
    model = build_model("model.tie_weights=false")
    groups = {g["name"]: g for g in param_groups(model, 0.1, True, {"head": 3.0})}
    assert members(groups["head"], model) == ["lm_head.weight"] and groups["head"]["lr_scale"] == 3.0
    assert groups["embed"]["lr_scale"] == 1.0 and groups["embed"]["weight_decay"] == 0.1


def test_a_tied_head_with_its_own_scale_is_refused_in_one_line():
    with pytest.raises(UserError, match=r"optim.head_lr_scale=3 needs an untied lm_head") as error:
        build(build_model(), "optim.head_lr_scale=3")
    assert "\n" not in str(error.value)


def test_a_scale_must_be_positive():
    with pytest.raises(UserError, match="optim.embed_lr_scale must be positive, got 0"):
        check_train_config(compose_train("optim.embed_lr_scale=0"))


@pytest.mark.parametrize("option", ["adamw", "lion", "sgd", "adamw8bit", "muon"])
def test_set_lr_gives_each_group_the_lr_times_its_scale(option):
    if option == "adamw8bit":
        pytest.importorskip("bitsandbytes")
    model = with_scalars(build_model("model.tie_weights=false"))
    opt = build(model, f"optim={option}", *SCALES)
    set_lr(opt, 0.01)
    assert {g["name"]: g["lr"] for g in opt.param_groups} == {
        name: 0.01 * scale for name, scale in EXPECTED_SCALE.items()
    }


def test_the_scaled_lr_is_the_step_sgd_takes():
    model = with_scalars(build_model("model.tie_weights=false"))
    opt = build(model, "optim=sgd", "optim.momentum=0", "optim.weight_decay=0", *SCALES)
    set_lr(opt, 0.01)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    x = torch.randint(0, 50, (2, 8))
    (model(x, targets=x) + model.gain * model.skip_weight.sum()).backward()
    opt.step()
    for group in opt.param_groups:
        for name, p in zip(members(group, model), group["params"], strict=True):
            expected = before[name] - 0.01 * EXPECTED_SCALE[group["name"]] * p.grad
            torch.testing.assert_close(p.detach(), expected, msg=name)


def test_muon_takes_the_hidden_matrices_and_adamw_the_scaled_rest():
    model = with_scalars(build_model("model.tie_weights=false"))
    opt = build(model, "optim=muon", *SCALES)
    assert isinstance(opt, MuonWithAdamW)
    set_lr(opt, 0.01)
    assert [g["name"] for g in opt._muon.param_groups] == ["hidden"]
    assert opt._muon.param_groups[0]["lr"] == 0.01
    assert {g["name"]: g["lr"] for g in opt._adamw.param_groups} == {
        name: 0.01 * scale for name, scale in EXPECTED_SCALE.items() if name != "hidden"
    }
    x = torch.randint(0, 50, (2, 8))
    (model(x, targets=x) + model.gain * model.skip_weight.sum()).backward()
    opt.step()
    assert all(opt.state[p] for g in opt.param_groups for p in g["params"])  # both halves stepped


def test_a_graph_replay_reads_each_groups_scaled_lr():
    """The tensors a CUDA graph's update reads its learning rates from (graphs.fill_lrs) take the scales."""
    model = with_scalars(build_model("model.tie_weights=false"))
    opt = build(model, *SCALES)
    set_lr(opt, 0.01)
    lrs = lr_tensors(opt, torch.device("cpu"))
    set_lr(opt, 0.02)  # a later step's schedule value
    fill_lrs(opt, lrs)
    expected = [0.02 * EXPECTED_SCALE[g["name"]] for g in opt.param_groups]
    assert [t.item() for t in lrs] == pytest.approx(expected)


def test_a_run_with_scaled_groups_resumes_bitwise(tmp_path):
    recipe = ["model.tie_weights=false", *SCALES[:2], "eval_interval=3"]
    a, b = straight_and_resumed(recipe, tmp_path, total=6, stop=3)
    assert_same_weights(a, b)
    assert [g.get("lr_scale") for g in b["optimizer"]["param_groups"]] == [None, 3.0, 0.5, None]
