"""The head-side speedrun options of modded-nanogpt (issue 21), each off by default: the squared-ReLU MLP
(``model/mlp=relu2``), logit soft-capping (``model.logit_softcap``) and the LM head's matmul in FP8
(``model.fp8_head``). FP8 kernels exist on the CPU in this torch, so the FP8 matmul's numbers are checked
here; its speed (and its CUDA-only 16-alignment path) only a Hopper GPU shows."""

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY, build_model, compose_train, run_cli
from test_hf_parity import VOCAB, max_logit_diff, model_config, redrawn_model

import tinygpt.model.loss as loss_module
from tinygpt.config.records import with_added_model_keys
from tinygpt.errors import UserError
from tinygpt.hf.export import hf_model
from tinygpt.hf.init_from import check_typed_model_keys
from tinygpt.hf.mapping import from_hf_config, to_hf_config
from tinygpt.inference.engine import generate
from tinygpt.inference.run import load
from tinygpt.inference.sampling import sample_next
from tinygpt.model import ReLU2MLP
from tinygpt.model.fp8 import E4M3, E5M2, fp8_linear, to_fp8
from tinygpt.model.gpt import softcap
from tinygpt.runtime.device import check_fp8_device
from tinygpt.training.loop import train

pytestmark = pytest.mark.usefixtures("one_thread")
CAP = 2.0
NEOX = ["model=llama", "model/norm=layernorm", "model.bias=true", "model.qk_norm=false"]


def test_the_new_options_are_off_by_default_and_old_runs_get_them_off():
    model = compose_train().model
    assert (model.mlp._target_, model.logit_softcap, model.fp8_head) == ("tinygpt.model.GeluMLP", None, False)
    old = with_added_model_keys({"model": {"_target_": "tinygpt.model.GPT", "n_layer": 2}})["model"]
    assert (old["logit_softcap"], old["fp8_head"]) == (None, False)


# ---- model/mlp=relu2 -----------------------------------------------------------------------------


def test_relu2_mlp_is_the_square_of_relu_between_its_projections():
    torch.manual_seed(0)
    mlp = ReLU2MLP(8, bias=True)
    x = torch.randn(2, 3, 8)
    hidden = mlp.c_fc(x)  # (2, 3, 32)
    expected = mlp.c_proj(torch.where(hidden > 0, hidden * hidden, torch.zeros_like(hidden)))
    torch.testing.assert_close(mlp(x), expected)
    assert not torch.allclose(mlp(x), mlp.c_proj(F.relu(hidden)))  # squared, not plain ReLU


@pytest.mark.parametrize(
    "overrides, model_type", [(["model/mlp=relu2"], "gpt2"), ([*NEOX, "model/mlp=relu2"], "gpt_neox")]
)
def test_relu2_exports_with_transformers_relu2_and_maps_back(overrides, model_type):
    model, cfg = redrawn_model(*overrides), model_config(*overrides)
    hf = to_hf_config(cfg, VOCAB)
    assert hf["model_type"] == model_type
    assert hf.get("activation_function", hf.get("hidden_act")) == "relu2"
    idx = torch.randint(0, VOCAB, (2, 24), generator=torch.Generator().manual_seed(1))
    theirs = hf_model(cfg, model)
    assert max_logit_diff(model, theirs, idx) <= 1e-5
    assert from_hf_config(theirs.config.to_dict(), "config.json") == cfg  # what init_from= reads


def test_relu2_with_rmsnorm_is_refused_naming_it():
    with pytest.raises(UserError, match="model/mlp=relu2 has no transformers architecture"):
        to_hf_config(model_config("model=llama", "model/mlp=relu2", "model.qk_norm=false"), VOCAB)


# ---- model.logit_softcap ------------------------------------------------------------------------


def big_models(*overrides: str):
    """The same weights twice, capped (model.logit_softcap=CAP) and not, with logits far past CAP."""
    capped = build_model(f"model.logit_softcap={CAP}", *overrides, vocab_size=VOCAB)
    plain = build_model(*overrides, vocab_size=VOCAB)
    with torch.no_grad():
        capped.lm_head.weight.mul_(200.0)
    plain.load_state_dict(capped.state_dict())
    return capped, plain


@pytest.mark.parametrize("cap", ["0", "-1.5", "'big'"])
def test_a_cap_that_is_not_positive_is_refused_in_one_line(cap):
    with pytest.raises(UserError, match="model.logit_softcap must be a positive number"):
        build_model(f"model.logit_softcap={cap}")


def test_capped_logits_never_reach_the_cap():
    capped, plain = big_models()
    idx = torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        uncapped, logits = plain(idx), capped(idx)
    assert uncapped.abs().max() > 10 * CAP
    assert logits.abs().max() <= CAP
    torch.testing.assert_close(logits, CAP * torch.tanh(uncapped / CAP))


def test_training_loss_is_the_cross_entropy_of_the_capped_logits():
    capped, plain = big_models()
    idx, y = torch.randint(0, VOCAB, (2, 2, 16), generator=torch.Generator().manual_seed(0))
    loss = capped(idx, targets=y)
    expected = F.cross_entropy(softcap(plain(idx), CAP).flatten(0, 1), y.flatten())
    torch.testing.assert_close(loss, expected)
    assert not torch.isclose(loss, plain(idx, targets=y))  # the cap changes the loss


def test_the_chunked_loss_caps_as_the_whole_one_does(monkeypatch):
    capped, _ = big_models()
    capped.train()
    idx, y = torch.randint(0, VOCAB, (2, 2, 16), generator=torch.Generator().manual_seed(0))
    whole = capped(idx, targets=y)
    whole_grad = torch.autograd.grad(whole, capped.lm_head.weight)[0]
    monkeypatch.setattr(loss_module, "LOGITS_PER_CHUNK", 7 * VOCAB)  # 32 tokens in 5 chunks
    capped.grad_checkpointing = True
    chunked = capped(idx, targets=y)
    torch.testing.assert_close(chunked, whole)
    torch.testing.assert_close(torch.autograd.grad(chunked, capped.lm_head.weight)[0], whole_grad)


@pytest.mark.parametrize("kv_cache", [True, False])
def test_generation_samples_from_the_capped_logits(kv_cache):
    capped, plain = big_models()
    prompt = torch.randint(0, VOCAB, (1, 4), generator=torch.Generator().manual_seed(0))
    idx, seen = prompt, torch.zeros(1, VOCAB, dtype=torch.bool)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for _ in range(12):  # the same draws, from the uncapped twin's logits capped by hand
            nxt = sample_next(softcap(plain(idx)[:, -1], CAP), seen, generator=generator)
            idx = torch.cat([idx, nxt[:, None]], dim=1)
    ours = generate(capped, prompt, 12, kv_cache=kv_cache, generator=torch.Generator().manual_seed(3))
    assert ours.tolist() == idx.tolist()
    uncapped = generate(plain, prompt, 12, kv_cache=kv_cache, generator=torch.Generator().manual_seed(3))
    assert uncapped.tolist() != idx.tolist()  # with logits past 10*CAP the uncapped draws differ


def test_export_of_a_capped_model_is_refused_naming_the_option():
    with pytest.raises(UserError, match="model.logit_softcap=15.0 has no transformers architecture"):
        to_hf_config(model_config("model.logit_softcap=15.0"), VOCAB)


# ---- model.fp8_head -----------------------------------------------------------------------------


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def test_fp8_head_is_refused_on_the_cpu_at_start_up(tmp_path):
    with pytest.raises(
        UserError, match=r"needs a Hopper-class CUDA GPU \(compute capability 9.0\+\); this run is on cpu"
    ):
        check_fp8_device(True, torch.device("cpu"))
    check_fp8_device(False, torch.device("cpu"))  # off: nothing to check
    run_dir = tmp_path / "run"
    proc = run_cli(*TINY, "max_steps=1", f"hydra.run.dir={run_dir}", "model.fp8_head=true")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: model.fp8_head=true needs a Hopper-class CUDA GPU (compute capability 9.0+); this run is on "
        "cpu; use model.fp8_head=false"
    ], proc.stderr
    assert not (run_dir / "ckpt.pt").exists()


def test_fp8_scaling_puts_the_largest_value_on_the_format_maximum():
    t = torch.tensor([[0.5, -3.0], [1e-3, 2.0]])
    t8, scale = to_fp8(t, E4M3)
    assert t8.dtype == E4M3 and t8.float().abs().max() == torch.finfo(E4M3).max
    torch.testing.assert_close(t8.float() * scale, t, rtol=0.07, atol=1e-4)  # 3 mantissa bits
    zeros8, _ = to_fp8(torch.zeros(3, 3), E4M3)
    assert torch.isfinite(zeros8.float()).all() and not zeros8.float().any()


def fp8_case():
    """x (2, 7, 40) and w (37, 40): sizes that are no multiple of 16, so the padding is exercised."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 7, 40, generator=generator, requires_grad=True)
    w = (0.1 * torch.randn(37, 40, generator=generator)).requires_grad_()
    return x, w


def test_fp8_forward_is_the_product_of_the_fp8_operands():
    x, w = fp8_case()
    x8, x_scale = to_fp8(x.detach(), E4M3)
    w8, w_scale = to_fp8(w.detach(), E4M3)
    expected = (x8.float() * x_scale) @ (w8.float() * w_scale).t()  # (2, 7, 37)
    out = fp8_linear(x, w)
    assert out.shape == (2, 7, 37)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert 0.005 < relative_error(out, x @ w.t()) < 0.08  # FP8: close to fp32, and not fp32 itself


def test_fp8_gradients_are_close_to_the_fp32_ones():
    x, w = fp8_case()
    grad = torch.randn(2, 7, 37, generator=torch.Generator().manual_seed(1))
    fp8_x, fp8_w = torch.autograd.grad(fp8_linear(x, w), (x, w), grad)
    ref_x, ref_w = torch.autograd.grad(x @ w.t(), (x, w), grad)
    assert fp8_x.shape == x.shape and fp8_w.shape == w.shape
    g8, g_scale = to_fp8(grad.flatten(0, 1), E5M2)  # the gradient as the backward casts it
    x8, x_scale = to_fp8(x.detach().flatten(0, 1), E4M3)
    w8, w_scale = to_fp8(w.detach(), E4M3)
    g, x_q, w_q = (
        g8.float() * g_scale,
        x8.float() * x_scale,
        w8.float() * w_scale,
    )  # (14, 37), (14, 40), (37, 40)
    torch.testing.assert_close(fp8_x.flatten(0, 1), g @ w_q, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fp8_w, g.t() @ x_q, rtol=1e-5, atol=1e-5)
    assert 0.005 < relative_error(fp8_x, ref_x) < 0.12  # e5m2 gradients: 2 mantissa bits
    assert 0.005 < relative_error(fp8_w, ref_w) < 0.12


def test_an_fp8_head_model_trains_in_fp8_and_evaluates_with_the_plain_head():
    fp8 = build_model("model.fp8_head=true", vocab_size=VOCAB)
    plain = build_model(vocab_size=VOCAB)
    plain.load_state_dict(fp8.state_dict())  # the same, ordinary weights
    idx, y = torch.randint(0, VOCAB, (2, 2, 16), generator=torch.Generator().manual_seed(0))
    fp8.train(), plain.train()
    loss, plain_loss = fp8(idx, targets=y), plain(idx, targets=y)
    assert loss != plain_loss and abs(loss.item() - plain_loss.item()) < 0.01 * plain_loss.item()
    grads = torch.autograd.grad(loss, fp8.lm_head.weight)[0]
    assert relative_error(grads, torch.autograd.grad(plain_loss, plain.lm_head.weight)[0]) < 0.12
    fp8.eval(), plain.eval()
    with torch.no_grad():
        assert torch.equal(fp8(idx), plain(idx))  # eval and generation: the plain head, on any device
    assert (
        generate(fp8, idx[:1, :4], 5, temperature=0).tolist()
        == generate(plain, idx[:1, :4], 5, temperature=0).tolist()
    )


def test_a_run_trained_with_fp8_head_loads_and_generates_on_the_cpu(tmp_path):
    """What a Hopper GPU wrote (a run whose config says fp8_head=true) is sampled from on the CPU."""
    train(compose_train("max_steps=1"), tmp_path)  # a CPU run, then marked as an fp8_head one
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    plain = load(tmp_path, device="cpu").model
    state["config"]["model"]["fp8_head"] = True
    torch.save(state, tmp_path / "ckpt.pt")
    model = load(tmp_path, device="cpu").model
    assert model.fp8_head and not model.training
    prompt = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        assert torch.equal(model(prompt), plain(prompt))
    assert (
        generate(model, prompt, 5, temperature=0).tolist()
        == generate(plain, prompt, 5, temperature=0).tolist()
    )


def test_init_from_may_set_fp8_head_but_not_a_cap(tmp_path):
    """fp8_head is how the head's matmul runs (settable over a transformers folder); a cap changes what
    the model computes, which the folder's config.json does not say."""
    imported = from_hf_config(hf_model(model_config(), redrawn_model()).config.to_dict(), "config.json")
    check_typed_model_keys(compose_train("model.fp8_head=true"), imported, ["model.fp8_head=true"], tmp_path)
    with pytest.raises(UserError, match="model.logit_softcap=3.0 contradicts"):
        typed = ["model.logit_softcap=3.0"]
        check_typed_model_keys(compose_train(*typed), imported, typed, tmp_path)
