"""Parity with transformers: with our weights copied across (hf/mapping.py), each preset computes the same
logits as the transformers architecture it exports to, and greedy generation with our KV cache picks
the same 40 tokens as transformers' ``generate``; their config and weights map back to ours (what
``init_from=`` reads). Tiny random configs built here, no hub access, fp32.

The weights are re-drawn at O(1) scale (the training init's 0.02 would make every logit ~0, so a wrong
formula could hide under the 1e-5 tolerance). The max abs logit difference of each case is printed
(``pytest -s``) for the record.
"""

import math

import pytest
import torch
from conftest import build_model, compose_train
from omegaconf import OmegaConf

from tinygpt.errors import UserError
from tinygpt.hf.export import hf_model
from tinygpt.hf.mapping import from_hf_config, from_hf_state, to_hf_config, to_hf_state
from tinygpt.inference.engine import generate

VOCAB = 61
PROMPT, NEW = 8, 40
LLAMA = ["model=llama", "model.qk_norm=false"]
NEOX = ["model=llama", "model/norm=layernorm", "model/mlp=gelu", "model.bias=true", "model.qk_norm=false"]
CASES = {  # name: (overrides, the transformers model_type they must map to)
    "gpt2": ([], "gpt2"),
    "gpt2 untied, 2 layers of 8 heads": (["model.tie_weights=false", "model.n_head=8"], "gpt2"),
    "llama gqa tied": ([*LLAMA, "model.n_kv_head=2"], "llama"),
    "llama gqa untied": ([*LLAMA, "model.n_kv_head=2", "model.tie_weights=false"], "llama"),
    "llama with biases": ([*LLAMA, "model.bias=true", "model.n_kv_head=1"], "llama"),
    "qwen3 (qk-norm) gqa": (["model=llama", "model.n_kv_head=2"], "qwen3"),
    "qwen3 sliding window": (["model=llama", "model.sliding_window=5"], "qwen3"),
    "mistral sliding window": ([*LLAMA, "model.sliding_window=5", "model.n_kv_head=2"], "mistral"),
    "neox parallel block": ([*NEOX, "model.parallel_block=true"], "gpt_neox"),
    "neox sequential, untied": ([*NEOX, "model.tie_weights=false"], "gpt_neox"),
}


pytestmark = pytest.mark.usefixtures("one_thread")


def model_config(*overrides: str) -> dict:
    return OmegaConf.to_container(compose_train(*overrides, "model.block_size=64").model, resolve=True)


def redrawn_model(*overrides: str):
    """Our model with every weight at O(1): matrices (embeddings too) normal(0, 1/sqrt(row length)),
    norm weights normal(1, 0.5), biases normal(0, 0.5). Logits come out at O(1-10)."""
    torch.manual_seed(0)
    model = build_model(*overrides, "model.block_size=64", vocab_size=VOCAB).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 1 / math.sqrt(p.size(1)))
            elif name.endswith("bias"):
                p.normal_(0.0, 0.5)
            else:
                p.normal_(1.0, 0.5)
    return model


def max_logit_diff(ours, theirs, idx: torch.Tensor) -> float:
    with torch.no_grad():
        return (ours(idx) - theirs(idx).logits).abs().max().item()


@pytest.mark.parametrize("case", CASES)
def test_logits_and_greedy_tokens_equal_transformers_and_map_back(case):
    overrides, model_type = CASES[case]
    model = redrawn_model(*overrides)
    cfg = model_config(*overrides)
    assert to_hf_config(cfg, VOCAB)["model_type"] == model_type
    theirs = hf_model(cfg, model)
    idx = torch.randint(0, VOCAB, (2, 48), generator=torch.Generator().manual_seed(1))
    diff = max_logit_diff(model, theirs, idx)
    scale = model(idx).abs().max().item()
    print(f"\nparity {case} ({model_type}): max abs logit diff {diff:.2e} (max abs logit {scale:.1f})")
    assert diff <= 1e-5

    prompt = idx[:1, :PROMPT]
    ours = generate(model, prompt, NEW, temperature=0)
    with torch.no_grad():
        expected = theirs.generate(
            prompt, max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False, eos_token_id=None, pad_token_id=0
        )
    assert ours.tolist() == expected.tolist()

    # what init_from= reads: their config and state dict give back our config and tensors
    assert from_hf_config(theirs.config.to_dict(), "config.json") == cfg
    back, state = from_hf_state(theirs.state_dict(), cfg, "model.safetensors"), model.state_dict()
    assert back.keys() == state.keys()
    assert all(torch.equal(back[name], state[name]) for name in state)


def test_gpt2_files_of_the_hub_layout_map_too():
    """The Hub's GPT-2 files name weights without "transformer." and carry attention-mask buffers."""
    model, cfg = redrawn_model(), model_config()
    hub = {name.removeprefix("transformer."): t for name, t in to_hf_state(model.state_dict(), cfg).items()}
    hub["h.0.attn.bias"] = torch.ones(1, 1, 64, 64).tril()
    del hub["lm_head.weight"]  # tied: transformers leaves it out
    back, state = from_hf_state(hub, cfg, "model.safetensors"), model.state_dict()
    assert back.keys() == state.keys()
    assert all(torch.equal(back[name], state[name]) for name in state)


def test_import_refuses_what_tinygpt_cannot_compute_exactly():
    cfg = hf_model(model_config(*NEOX), redrawn_model(*NEOX)).config.to_dict()
    cfg["rope_parameters"]["partial_rotary_factor"] = 0.25  # Pythia's
    with pytest.raises(UserError, match="rotates a part of each head"):
        from_hf_config(cfg, "config.json")
    cfg["rope_parameters"]["partial_rotary_factor"] = 1.0
    cfg["hidden_act"] = "gelu"
    with pytest.raises(UserError, match="its activation is gelu"):
        from_hf_config(cfg, "config.json")


@pytest.mark.parametrize("arch", ["mistral", "qwen3"])
def test_sliding_window_maps_one_to_one(arch):
    """Our window W (a token sees itself and W-1 before it) is transformers' sliding_window=W: W-1 and
    W+1 there give other logits, so an off-by-one in the mapping cannot pass the parity test."""
    overrides = [*(LLAMA if arch == "mistral" else ["model=llama"]), "model.sliding_window=5"]
    model = redrawn_model(*overrides)
    idx = torch.randint(0, VOCAB, (1, 24), generator=torch.Generator().manual_seed(2))
    diffs = {}
    for window in (4, 5, 6):
        cfg = model_config(*overrides[:-1], f"model.sliding_window={window}")
        diffs[window] = max_logit_diff(model, hf_model(cfg, model), idx)
    assert diffs[5] <= 1e-5
    assert diffs[4] > 1e-2 and diffs[6] > 1e-2


@pytest.mark.parametrize(
    "overrides, option",
    [
        (["model=llama", "model.parallel_block=true"], "model.parallel_block=true"),
        (["model.qk_norm=true"], "model.qk_norm=true"),
        (["model.n_kv_head=2"], "model.n_kv_head=2"),
        (["model.sliding_window=4"], "model.sliding_window=4"),
        (["model/norm=rmsnorm"], "model/norm=rmsnorm"),
        (["model=llama", "model/mlp=gelu"], "model/mlp=gelu"),
        (["model=llama", "model.bias=true"], "model.bias=true"),
        ([*NEOX, "model.bias=false"], "model.bias=false"),
    ],
)
def test_combinations_no_architecture_has_are_refused_naming_the_option(overrides, option):
    with pytest.raises(UserError, match="no transformers architecture") as err:
        to_hf_config(model_config(*overrides), VOCAB)
    assert option in str(err.value)
