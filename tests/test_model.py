"""The model's defining properties: causality, windows, RoPE, GQA, tying, sizes."""

import re

import pytest
import torch
from conftest import ATTENTION_VARIANTS, build_model, compose_train
from hydra.utils import instantiate

from tinygpt.errors import UserError
from tinygpt.model.gpt import window_mask
from tinygpt.model.pos import RoPE

VARIANTS = ATTENTION_VARIANTS


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_future_tokens_never_change_past_logits(variant):
    model = build_model(*VARIANTS[variant]).eval()
    idx = torch.randint(0, 50, (2, 24))
    t = 10
    changed = idx.clone()
    changed[:, t + 1 :] = torch.randint(0, 50, (2, 24 - t - 1))
    with torch.no_grad():
        a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1])
    assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])  # and the future positions do see the change


def test_window_mask_sees_itself_and_window_minus_one_before():
    mask = window_mask(torch.arange(6), torch.arange(6), 3)
    assert mask[5].tolist() == [False, False, False, True, True, True]
    assert mask[0].tolist() == [True, False, False, False, False, False]


@pytest.mark.parametrize("extra", [[], ["model=llama"]])
def test_sliding_window_ignores_tokens_older_than_the_window(extra):
    window = 4
    model = build_model(*extra, "model.n_layer=1", f"model.sliding_window={window}").eval()
    idx = torch.randint(0, 50, (2, 20))
    t = 15
    changed = idx.clone()
    changed[:, : t - window + 1] = (idx[:, : t - window + 1] + 1) % 50  # everything older than the window
    with torch.no_grad():
        a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, t], b[:, t])
    changed[:, t - window + 1] = (idx[:, t - window + 1] + 1) % 50  # the oldest token inside the window
    with torch.no_grad():
        assert not torch.allclose(model(changed)[:, t], a[:, t])


def test_stacked_sliding_window_layers_reach_layers_times_window_back():
    window, layers = 3, 2
    model = build_model(f"model.n_layer={layers}", f"model.sliding_window={window}").eval()
    idx = torch.randint(0, 50, (1, 20))
    t, reach = 19, layers * (window - 1)  # each layer looks window-1 tokens further back
    with torch.no_grad():
        base = model(idx)[0, t]
        older = idx.clone()
        older[0, : t - reach] = (idx[0, : t - reach] + 1) % 50
        torch.testing.assert_close(model(older)[0, t], base)
        edge = idx.clone()
        edge[0, t - reach] = (idx[0, t - reach] + 1) % 50
        assert not torch.allclose(model(edge)[0, t], base)


def test_rope_scores_depend_only_on_relative_position():
    rope = RoPE(block_size=64, n_embd=32, head_dim=8)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(m: int, n: int) -> torch.Tensor:
        qm, _ = rope.rotate(q, q, torch.tensor([m]))
        _, kn = rope.rotate(k, k, torch.tensor([n]))
        return (qm * kn).sum()

    torch.testing.assert_close(score(5, 2), score(40, 37))
    torch.testing.assert_close(score(0, 0), score(63, 63))
    torch.testing.assert_close(score(0, 0), (q * k).sum())  # position 0 is the identity rotation
    assert not torch.allclose(score(5, 2), score(5, 4))


def test_gqa_equals_mha_with_shared_kv_heads():
    """A GQA model equals an MHA model whose k/v heads are each GQA head repeated for its query group."""
    gqa = build_model("model=llama", "model.n_kv_head=2").eval()
    mha = build_model("model=llama").eval()
    n_head, n_kv, hd = 4, 2, 32 // 4
    state = gqa.state_dict()
    for name, w in list(state.items()):
        if name.endswith("attn.c_attn.weight"):
            q, k, v = w.split([n_head * hd, n_kv * hd, n_kv * hd])
            k = k.view(n_kv, hd, -1).repeat_interleave(n_head // n_kv, dim=0).reshape(n_head * hd, -1)
            v = v.view(n_kv, hd, -1).repeat_interleave(n_head // n_kv, dim=0).reshape(n_head * hd, -1)
            state[name] = torch.cat([q, k, v])
    mha.load_state_dict(state)
    idx = torch.randint(0, 50, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(gqa(idx), mha(idx))


def test_n_kv_head_equal_to_n_head_is_plain_multi_head():
    a = build_model("model=llama").eval()
    b = build_model("model=llama", "model.n_kv_head=4").eval()
    b.load_state_dict(a.state_dict())
    idx = torch.randint(0, 50, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(a(idx), b(idx))


def test_tied_weights_share_storage_and_untied_do_not():
    tied = build_model()
    assert tied.lm_head.weight.data_ptr() == tied.transformer.wte.weight.data_ptr()
    untied = build_model("model.tie_weights=false")
    assert untied.lm_head.weight.data_ptr() != untied.transformer.wte.weight.data_ptr()
    assert untied.num_params(non_embedding=False) == tied.num_params(non_embedding=False) + 50 * 32


@pytest.mark.parametrize(
    "n_layer,n_head,n_embd,vocab",
    [(4, 4, 128, 65), (6, 6, 384, 65), (8, 8, 512, 8000), (12, 12, 768, 50257)],
)
def test_gpt_non_embedding_parameters_follow_12_L_d_squared(n_layer, n_head, n_embd, vocab):
    cfg = compose_train(f"model.n_layer={n_layer}", f"model.n_head={n_head}", f"model.n_embd={n_embd}")
    with torch.device("meta"):  # shapes only: the 85M model costs no memory or time
        model = instantiate(cfg.model)(vocab_size=vocab)
    expected = 12 * n_layer * n_embd**2
    assert abs(model.num_params() - expected) / expected < 0.02


def test_llama_parts_are_what_the_preset_promises():
    model = build_model("model=llama")
    block = model.transformer.h[0]
    assert isinstance(block.ln_1, torch.nn.RMSNorm)
    assert hasattr(block.mlp, "gate_proj")
    assert isinstance(model.transformer.wpe, RoPE)
    assert block.attn.c_attn.bias is None
    assert isinstance(block.attn.q_norm, torch.nn.RMSNorm)
    swapped = build_model("model=llama", "model/norm=layernorm")
    assert isinstance(swapped.transformer.h[0].ln_1, torch.nn.LayerNorm)
    assert swapped.transformer.h[0].ln_1.bias is None  # llama's bias=false reaches the swapped-in norm


def test_swiglu_hidden_size_rounds_up_like_llama():
    from tinygpt.model.mlp import swiglu_hidden_size

    assert swiglu_hidden_size(128, 64) == 384  # 2/3 * 512 = 341 -> 384
    assert swiglu_hidden_size(4096, 256) == 11008  # Llama-7B's hidden size


@pytest.mark.parametrize(
    "shape",
    [
        ["model.n_embd=30"],
        ["model=llama", "model.n_head=3"],
        ["model=llama", "model.n_head=3", "model.n_embd=129"],
    ],
)
def test_the_suggested_width_satisfies_every_rule(shape):
    with pytest.raises(UserError, match=r"try model.n_embd=(\d+)") as refused:
        build_model(*shape)
    suggested = re.search(r"try model.n_embd=(\d+)", str(refused.value)).group(1)
    model = build_model(*shape, f"model.n_embd={suggested}")  # builds: the advice works
    assert model.transformer.wte.weight.shape[1] == int(suggested)
