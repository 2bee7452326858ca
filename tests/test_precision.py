"""precision=auto and the CPU's low-precision attention: what the default picks on which machine, that a
run records and resumes with it, and that explicit attention computes what SDPA computes."""

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_same_weights, compose_train, set_keys

import tinygpt.model.attention as attention
from tinygpt.model.attention import EXPLICIT_MAX_KEYS, attend, explicit_attention
from tinygpt.model.gpt import attention_mask, same_document
from tinygpt.runtime import device as device_module
from tinygpt.runtime.device import choose_precision, cpu_bf16_unit

CPU = torch.device("cpu")


def qkv(B=2, nh=4, nkv=4, T=16, Tk=None, hd=8, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    Tk = T if Tk is None else Tk
    q = torch.randn(B, nh, T, hd, generator=g, dtype=dtype)
    k, v = (torch.randn(B, nkv, Tk, hd, generator=g, dtype=dtype) for _ in range(2))
    return q, k, v


def sdpa(q, k, v, mask=None, causal=False):
    gqa = k.size(1) != q.size(1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=gqa)


def masks(T=16, B=2):
    pos = torch.arange(T)
    docs = torch.tensor([[0] * 5 + [1] * 11, [0] * 12 + [1] * 4])  # (B, T) document ids
    return {
        "causal": (None, True),
        "window": (attention_mask(pos, 4, None), False),  # (T, T)
        "documents": (attention_mask(pos, None, docs), False),  # (B, 1, T, T)
        "window and documents": (attention_mask(pos, 6, docs), False),
        "none": (None, False),
    }


@pytest.mark.parametrize("name", list(masks()))
@pytest.mark.parametrize("nkv", [4, 2, 1])
def test_explicit_attention_is_sdpa_with_its_gradients(name, nkv):
    mask, causal = masks()[name]
    ours, theirs = (tuple(t.requires_grad_() for t in qkv(nkv=nkv)) for _ in range(2))
    out = explicit_attention(*ours, mask, causal, 0.0)
    ref = sdpa(*theirs, mask, causal)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    grad = torch.randn_like(out)
    out.backward(grad)
    ref.backward(grad)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4)


def test_explicit_attention_of_one_cached_token_sees_only_its_keys():
    q, k, v = qkv(T=1, Tk=10)
    sees = torch.zeros(1, 10, dtype=torch.bool)
    sees[0, 4:] = True  # a window of the newest 6 keys
    torch.testing.assert_close(explicit_attention(q, k, v, sees, False, 0.0), sdpa(q, k, v, sees))
    docs = same_document(torch.tensor([[3], [1]]), torch.tensor([[1] * 4 + [3] * 6, [1] * 10]))  # (B,1,1,Tk)
    torch.testing.assert_close(explicit_attention(q, k, v, docs, False, 0.0), sdpa(q, k, v, docs))


def test_explicit_attention_dropout_drops_probabilities_while_training():
    q, k, v = qkv()
    plain = explicit_attention(q, k, v, None, True, 0.0)
    torch.manual_seed(0)
    dropped = explicit_attention(q, k, v, None, True, 0.5)
    assert not torch.allclose(dropped, plain)
    torch.manual_seed(0)
    assert torch.equal(dropped, explicit_attention(q, k, v, None, True, 0.5))  # the seed decides


def test_cpu_bf16_autocast_takes_the_explicit_path_and_stays_close(monkeypatch):
    calls = []
    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1))
    q, k, v = qkv(nkv=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attend(q, k, v, None, True, 0.0)
    assert not calls and out.dtype == torch.bfloat16
    monkeypatch.undo()
    torch.testing.assert_close(out.float(), sdpa(q, k, v, causal=True), atol=3e-2, rtol=3e-2)


def test_fp32_and_long_contexts_keep_sdpa(monkeypatch):
    calls = []
    real = F.scaled_dot_product_attention
    counted = lambda *a, **k: calls.append(1) or real(*a, **k)  # noqa: E731
    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", counted)
    attend(*qkv(), None, True, 0.0)  # fp32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        attend(*qkv(T=EXPLICIT_MAX_KEYS + 1, B=1, nh=1, nkv=1), None, True, 0.0)
    assert len(calls) == 2


def test_auto_picks_bf16_only_on_a_cpu_with_bf16_instructions(monkeypatch):
    assert choose_precision("fp32", CPU) == ("fp32", "set")
    assert choose_precision("auto", CPU, recorded="fp32")[0] == "fp32"  # a resume keeps the run's own
    monkeypatch.setattr(device_module, "cpu_features", lambda: {"avx2", "avx512f"})
    assert cpu_bf16_unit() is None
    assert choose_precision("auto", CPU)[0] == "fp32"
    for unit in ("avx512_bf16", "amx_bf16", "bf16"):  # x86 AVX512-BF16, AMX; Arm's BF16 feature
        monkeypatch.setattr(device_module, "cpu_features", lambda unit=unit: {"avx2", unit})
        assert choose_precision("auto", CPU) == ("bf16", f"auto: the CPU has {unit}")
    assert choose_precision("auto", torch.device("mps"))[0] == "fp32"


def test_proc_cpuinfo_flags_are_read_when_torch_cannot_say(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {}, raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 sve\n")
    real_path = device_module.Path
    monkeypatch.setattr(device_module, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else real_path(p))
    assert cpu_bf16_unit() == "bf16"


def run_config(run_dir) -> dict:
    return json.loads((run_dir / "effective_config.json").read_text())


def test_the_run_records_what_auto_chose_and_a_resume_keeps_it(tmp_path, monkeypatch, caplog):
    from tinygpt.training.loop import train

    caplog.set_level("INFO", logger="tinygpt")
    monkeypatch.setattr(device_module, "cpu_features", lambda: {"avx512_bf16"})
    run = tmp_path / "run"
    train(compose_train("max_steps=2"), run)
    assert run_config(run)["precision"] == "bf16"
    assert "precision: bf16 (auto: the CPU has avx512_bf16)" in caplog.text
    monkeypatch.setattr(device_module, "cpu_features", set)  # resumed on a machine without bf16
    train(set_keys(compose_train("max_steps=4"), resume=True), run)
    assert run_config(run)["precision"] == "bf16"
    assert "precision: bf16 (auto: the run's own, from its checkpoint)" in caplog.text


def test_an_old_fp32_run_resumes_in_fp32_under_the_new_default(tmp_path, monkeypatch):
    from tinygpt.training.checkpoint import load_checkpoint
    from tinygpt.training.loop import train

    monkeypatch.setattr(device_module, "cpu_features", lambda: {"avx512_bf16"})
    run = tmp_path / "run"
    train(compose_train("max_steps=2", "precision=fp32"), run)  # as every run before precision=auto
    train(set_keys(compose_train("max_steps=4"), resume=True), run)
    assert load_checkpoint(run / "ckpt.pt")["config"]["precision"] == "fp32"


def test_fp32_stays_bitwise_reproducible(tmp_path):
    from tinygpt.training.checkpoint import load_checkpoint
    from tinygpt.training.loop import train

    for name in ("a", "b"):
        train(compose_train("max_steps=3", "precision=fp32"), tmp_path / name)
    assert_same_weights(*(load_checkpoint(tmp_path / name / "ckpt.pt") for name in ("a", "b")))


def test_bf16_training_on_the_cpu_follows_fp32(tmp_path):
    """The explicit bf16 attention and autocast train the same model: losses within bf16's rounding."""
    from tinygpt.training.loop import train

    losses = {}
    for precision in ("fp32", "bf16"):
        run = tmp_path / precision
        overrides = ("max_steps=20", "schedule.warmup_steps=2", "optim.lr=3e-3", f"precision={precision}")
        train(compose_train(*overrides), run)
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        losses[precision] = [r["train_loss"] for r in records if "train_loss" in r]
    assert len(losses["fp32"]) == 20
    assert losses["bf16"] != losses["fp32"]  # bf16 really ran: its rounding shows in the losses
    assert losses["fp32"][-1] < losses["fp32"][0] - 0.5  # it learns
    for a, b in zip(losses["fp32"], losses["bf16"], strict=True):
        assert abs(a - b) < 0.02 * a
