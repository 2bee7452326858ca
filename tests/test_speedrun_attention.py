"""The modded-nanogpt options on the attention side: model.zero_init_proj, model.value_embeds,
model.unet_skips, model.window_pattern / model.short_window. Each computes what it says, reaches the
KV cache, trains and resumes; off (the default), the model is the one it was; export refuses them."""

import math

import pytest
import torch
from conftest import (
    TINY,
    assert_compiles_whole,
    assert_same_weights,
    build_model,
    compose_train,
    loss_and_grads,
    run_cli,
    straight_and_resumed,
)

from tinygpt.config.records import MODEL_ADDED, with_added_model_keys
from tinygpt.config.schema import resolved
from tinygpt.errors import UserError
from tinygpt.hf.mapping import to_hf_config
from tinygpt.inference.cache import new_cache
from tinygpt.inference.engine import generate
from tinygpt.model import gpt
from tinygpt.training.flops import flops_per_token

pytestmark = pytest.mark.usefixtures("one_thread")

OPTIONS = ("zero_init_proj", "value_embeds", "unet_skips", "window_pattern", "short_window")
WINDOWS = ["model.window_pattern=SL", "model.short_window=3"]
ALL_ON = ["model.zero_init_proj=true", "model.value_embeds=1", "model.unet_skips=true", *WINDOWS]
ALL_ON_VARIANTS = {  # every option on, with each context rule of the cache
    "rope, long window (ring cache)": ["model=llama", "model.n_kv_head=2", "model.sliding_window=6", *ALL_ON],
    "learned, full causal long layers": [*ALL_ON],
    "the ladder's last stage (relu2, qk_norm, untied, soft-cap)": [
        *("model/pos=rope", "model/mlp=relu2", "model.qk_norm=true", "model.tie_weights=false"),
        *("model.logit_softcap=2.0", *ALL_ON),
    ],
}


def sharp(*overrides: str, vocab_size: int = 50, bos_id: int | None = None) -> gpt.GPT:
    """A model whose matrices and mixing scalars are drawn far from their init (std 0.3; scalars
    around 1): the zero projections of zero_init_proj are filled too, so every part is at work."""
    torch.manual_seed(0)
    model = build_model(*overrides, vocab_size=vocab_size, bos_id=bos_id).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3) if p.dim() == 2 else p.uniform_(0.5, 1.5)
    return model


def block_io(model: gpt.GPT, idx: torch.Tensor, replace: list[torch.Tensor] | None = None):
    """Each block's input and output (B, T, C) for idx; ``replace``: inputs fed to the blocks instead."""
    inputs, outputs = [], []

    def before(i):
        def hook(module, args):
            inputs.append(args[0])
            return None if replace is None else (replace[i], *args[1:])

        return hook

    handles = [b.register_forward_pre_hook(before(i)) for i, b in enumerate(model.transformer.h)]
    handles += [b.register_forward_hook(lambda m, a, out: outputs.append(out)) for b in model.transformer.h]
    with torch.no_grad():
        model(idx)
    for handle in handles:
        handle.remove()
    return inputs, outputs


# ---- off: the model it was ------------------------------------------------------------------------


def test_the_options_are_off_by_default_and_an_old_record_gets_their_off_values():
    composed = resolved(compose_train())["model"]
    assert {key: composed[key] for key in OPTIONS} == {key: MODEL_ADDED[key] for key in OPTIONS}
    assert {key: resolved(compose_train("model=llama"))["model"][key] for key in OPTIONS} == {
        key: MODEL_ADDED[key] for key in OPTIONS
    }
    old = {"model": {k: v for k, v in composed.items() if k not in OPTIONS}}
    assert with_added_model_keys(old)["model"] == composed  # an old run resumes against today's config
    model = build_model()
    assert model.scalar_parameters() == [] and model.layer_windows == [None, None]
    assert not any(name.startswith(("transformer.ve", "skip_weights")) for name in model.state_dict())


# ---- zero_init_proj -------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["gpt", "llama"])
def test_zero_init_proj_starts_each_block_as_the_identity_and_its_projections_still_learn(preset):
    torch.manual_seed(0)
    model = build_model(f"model={preset}", "model.zero_init_proj=true").train()
    idx = torch.randint(0, 50, (2, 12))
    inputs, outputs = block_io(model, idx)
    for x, y in zip(inputs, outputs, strict=True):
        assert torch.equal(x, y)  # a fresh block adds nothing to the residual stream
    model(idx, targets=torch.roll(idx, -1, 1)).backward()
    mlp_proj = "c_proj" if preset == "gpt" else "down_proj"
    for block in model.transformer.h:
        assert block.attn.c_proj.weight.grad.abs().sum() > 0
        assert getattr(block.mlp, mlp_proj).weight.grad.abs().sum() > 0
    torch.manual_seed(0)
    plain = build_model(f"model={preset}")
    plain_in, plain_out = block_io(plain, idx)
    assert not torch.equal(plain_in[0], plain_out[0])  # off: a block adds to the stream from the start


# ---- value_embeds ---------------------------------------------------------------------------------


def test_value_embedding_tables_are_embeddings_of_the_kv_width_given_to_mirrored_layers():
    model = build_model("model=llama", "model.n_layer=4", "model.n_kv_head=2", "model.value_embeds=2")
    tables = model.transformer.ve
    assert all(isinstance(t, torch.nn.Embedding) for t in tables)
    assert [tuple(t.weight.shape) for t in tables] == [(50, 16)] * 2  # (vocab, n_kv_head * head_dim 8)
    assert model.value_tables() == [0, 1, 0, 1]  # table i: layer i and layer n_layer - N + i
    assert [b.attn.ve_mix.tolist() for b in model.transformer.h] == [[1.0, 1.0]] * 4  # a, b at init
    assert (
        model.num_params()
        == build_model("model=llama", "model.n_layer=4", "model.n_kv_head=2").num_params() + 8
    )
    assert set(map(id, model.scalar_parameters())) == {id(b.attn.ve_mix) for b in model.transformer.h}
    three = build_model("model.n_layer=5", "model.value_embeds=1")
    assert three.value_tables() == [0, None, None, None, 0]


@pytest.mark.parametrize("table", [0, 1])
def test_a_value_embedding_table_changes_exactly_the_layers_that_use_it(table):
    """Each block fed the same input as before: only the layers mixing the changed table compute
    something else."""
    model, idx = sharp("model.n_layer=5", "model.value_embeds=2"), torch.randint(0, 50, (2, 12))
    inputs, before = block_io(model, idx)
    with torch.no_grad():
        model.transformer.ve[table].weight.add_(1.0)
    _, after = block_io(model, idx, replace=inputs)
    changed = [i for i in range(5) if not torch.equal(before[i], after[i])]
    assert changed == [table, 3 + table]


def test_gradients_reach_the_value_tables_and_their_mixing_scalars():
    model = sharp("model=llama", "model.n_layer=4", "model.value_embeds=2").train()
    idx = torch.randint(0, 50, (2, 12))
    model(idx, targets=torch.roll(idx, -1, 1)).backward()
    for t in model.transformer.ve:
        assert t.weight.grad.abs().sum() > 0
    for p in model.scalar_parameters():
        assert p.dim() == 1 and (p.grad != 0).all()


# ---- unet_skips -----------------------------------------------------------------------------------


def test_unet_skips_add_each_first_half_output_to_its_mirror_with_its_weight():
    model, idx = sharp("model.n_layer=5", "model.unet_skips=true"), torch.randint(0, 50, (2, 12))
    with torch.no_grad():
        model.skip_weights.copy_(torch.tensor([0.5, 2.0]))  # one per skip: n_layer // 2
    inputs, outputs = block_io(model, idx)
    torch.testing.assert_close(inputs[3], outputs[2] + 2.0 * outputs[1])  # block 3 gets block 1's
    torch.testing.assert_close(inputs[4], outputs[3] + 0.5 * outputs[0])  # block 4 gets block 0's
    assert torch.equal(inputs[2], outputs[1])  # the middle block of an odd count gets none


def test_unet_skip_weights_learn_and_at_zero_the_model_is_the_plain_one():
    skipped, plain = sharp("model.n_layer=4", "model.unet_skips=true"), sharp("model.n_layer=4")
    skipped.load_state_dict(plain.state_dict(), strict=False)  # the same blocks
    idx = torch.randint(0, 50, (2, 12))
    skipped.train()(idx, targets=torch.roll(idx, -1, 1)).backward()
    assert skipped.scalar_parameters() == [skipped.skip_weights] and (skipped.skip_weights.grad != 0).all()
    with torch.no_grad():
        assert not torch.allclose(skipped.eval()(idx), plain(idx))
        skipped.skip_weights.zero_()
        assert torch.equal(skipped(idx), plain(idx))


# ---- window_pattern -------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["gpt", "llama"])
def test_each_layer_attends_within_its_own_window(preset):
    """Pattern SL over 4 layers (short 3, long 6): a token k positions back reaches the short layers
    for k < 3, the long ones for k < 6, and no layer further back."""
    model = sharp(f"model={preset}", "model.n_layer=4", "model.sliding_window=6", *WINDOWS)
    assert model.layer_windows == [3, 6, 3, 6]
    x, pos = torch.randn(1, 12, 32), torch.arange(12)
    reached = {}
    for k in (2, 3, 5, 6):
        other = x.clone()
        other[:, 11 - k] += 1.0
        with torch.no_grad():
            reached[k] = [
                not torch.allclose(b.attn(x, pos, model.transformer.wpe.rotate)[:, 11], out[:, 11])
                for b, out in (
                    (b, b.attn(other, pos, model.transformer.wpe.rotate)) for b in model.transformer.h
                )
            ]
    assert reached == {2: [True] * 4, 3: [False, True] * 2, 5: [False, True] * 2, 6: [False] * 4}


def test_the_short_window_and_the_document_mask_both_apply():
    """A token 2 back is inside every window; a document token between them hides it from every layer."""
    model = sharp("model.n_layer=2", "model.doc_mask=true", *WINDOWS, bos_id=0)
    x, pos = torch.randn(1, 12, 32), torch.arange(12)
    other = x.clone()
    other[:, 9] += 1.0
    for starts_at, reached in ((None, [True, True]), (10, [False, False])):
        starts = torch.zeros(1, 12, dtype=torch.bool)
        if starts_at is not None:
            starts[0, starts_at] = True
        docs = gpt.document_ids(starts)  # (1, 12)
        with torch.no_grad():
            outs = [
                (
                    b.attn(x, pos, model.transformer.wpe.rotate, None, docs),
                    b.attn(other, pos, model.transformer.wpe.rotate, None, docs),
                )
                for b in model.transformer.h
            ]
        assert [not torch.allclose(a[:, 11], b[:, 11]) for a, b in outs] == reached


def test_without_sliding_window_the_long_layers_attend_to_the_whole_context():
    model = build_model("model.n_layer=3", "model.window_pattern=SSL", "model.short_window=4")
    assert model.layer_windows == [4, 4, None]
    assert [c.capacity for c in new_cache(model)] == [4, 4, 32]  # a short layer keeps only its window


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.window_pattern=SXL", "model.short_window=3"], "model.window_pattern must be a string of S"),
        (["model.window_pattern=SL"], "model.window_pattern=SL has S layers but model.short_window is null"),
        (
            ["model.short_window=3"],
            "model.short_window=3 is used only by the S layers of model.window_pattern",
        ),
        (
            ["model.window_pattern=SL", "model.short_window=5", "model.sliding_window=5"],
            "model.short_window must be from 1 to less than the long window, model.sliding_window=5; got 5",
        ),
        (
            ["model.window_pattern=SL", "model.short_window=32"],
            r"less than the long window, model.block_size \(full causal\)=32; got 32",
        ),
        (["model.value_embeds=2"], r"model.value_embeds=2 needs 4 layers .* use model.value_embeds<=1"),
        (["model.value_embeds=-1"], "model.value_embeds must be a non-negative integer"),
        (["model.unet_skips=yes"], "model.unet_skips must be true or false, got 'yes'"),
    ],
)
def test_a_bad_option_is_refused_in_one_line(overrides, message):
    with pytest.raises(UserError, match=message):
        build_model(*overrides)


def test_the_command_line_refuses_a_bad_option_without_a_traceback(tmp_path):
    proc = run_cli(*TINY, "max_steps=1", "model.window_pattern=SL", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "error: model.window_pattern=SL has S layers but model.short_window is null: set it, e.g. "
        )
    )
    assert not (tmp_path / "run" / "ckpt.pt").exists()


# ---- all four together: the KV cache, doc_mask, training and resume, checkpointing, compile ------

PATHS = {"no cache": (False, False), "cache": (True, False), "fixed-shape cache": (True, True)}


@pytest.mark.parametrize("variant", ALL_ON_VARIANTS)
@pytest.mark.parametrize("doc_mask", [False, True])
def test_cached_decoding_equals_the_whole_context_recomputed(variant, doc_mask):
    """40 tokens after a 12-token prompt (past block_size 32), greedy and sampled: every cache path
    gives the tokens of no cache; with doc_mask the short windows combine with the document mask."""
    model = sharp(*ALL_ON_VARIANTS[variant], f"model.doc_mask={doc_mask}", vocab_size=8, bos_id=0)
    idx = torch.randint(1, 8, (2, 12), generator=torch.Generator().manual_seed(1))
    idx[:, 4] = 0  # a document token mid-prompt
    for controls in (dict(top_k=1), dict(temperature=2.0)):
        texts = {
            path: generate(
                model,
                idx,
                40,
                kv_cache=kv,
                static_cache=static,
                generator=torch.Generator().manual_seed(5),
                **controls,
            )
            for path, (kv, static) in PATHS.items()
        }
        for path in PATHS:
            assert torch.equal(texts[path], texts["no cache"]), (path, controls)


def test_a_cache_that_mixed_the_value_embedding_in_after_storing_v_would_be_caught(monkeypatch):
    """The test above fails when the cache holds the values without their value embedding."""
    model = sharp(*ALL_ON_VARIANTS["rope, long window (ring cache)"])
    idx = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(1))
    reference = generate(model, idx, 20, top_k=1, kv_cache=False)
    update = gpt.CausalSelfAttention.forward

    def late_mix(self, x, pos, rotate, cache=None, docs=None, ve=None):
        return update(self, x, pos, rotate, cache, docs, None if cache is not None and x.size(1) == 1 else ve)

    monkeypatch.setattr(gpt.CausalSelfAttention, "forward", late_mix)
    assert torch.equal(generate(model, idx, 20, top_k=1, kv_cache=False), reference)
    assert not torch.equal(generate(model, idx, 20, top_k=1, kv_cache=True), reference)


def test_gradient_checkpointing_computes_the_same_step():
    """Recomputed blocks get their value embeddings, skips and windows again."""
    model = sharp(*ALL_ON_VARIANTS["rope, long window (ring cache)"]).train()
    idx = torch.randint(0, 50, (2, 13), generator=torch.Generator().manual_seed(1))
    eager = loss_and_grads(model, idx)
    model.grad_checkpointing = True
    for a, b in zip(eager, loss_and_grads(model, idx), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.slow  # ~10 s of tracing on one core
def test_the_step_compiles_whole_and_computes_what_eager_does():
    """No data-dependent Python in the forward + backward with every option on, nor in the one-token
    decode step: they trace as one graph each (fullgraph fails on a break; aot_eager traces the backward
    too) and compute what eager does."""
    model = sharp(*ALL_ON_VARIANTS["rope, long window (ring cache)"]).train()
    idx = torch.randint(0, 50, (2, 13), generator=torch.Generator().manual_seed(1))
    assert_compiles_whole(model, idx)


def test_training_with_every_option_on_trains_and_resumes_bitwise(tmp_path):
    """2 steps, then 2 more on resume: equal to 4 straight; the mixing scalars move."""

    a, b = straight_and_resumed([*ALL_ON, "eval_interval=2"], tmp_path, total=4, stop=2)
    assert math.isfinite(a["best_val_loss"]) and b["config"]["model"]["window_pattern"] == "SL"
    assert_same_weights(a, b)
    assert not torch.equal(a["model"]["skip_weights"], torch.ones(1))
    projection = a["model"]["transformer.h.0.attn.c_proj.weight"]
    assert projection.abs().sum() > 0  # zero at the start, learned since


# ---- export ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "option"),
    [
        ("model.value_embeds=1", "model.value_embeds=1"),
        ("model.unet_skips=true", "model.unet_skips=True"),
        ("model.window_pattern=SL", "model.window_pattern=SL"),
    ],
)
def test_export_refuses_an_option_transformers_has_not(override, option):
    extra = ["model.short_window=3"] if "window" in override else []
    model_cfg = resolved(compose_train("model=llama", override, *extra))["model"]
    with pytest.raises(UserError, match=f"^{option} has no transformers architecture; export a run trained"):
        to_hf_config(model_cfg, vocab_size=50)


def test_export_takes_a_zero_init_proj_model_it_only_started_at_zero():
    model_cfg = resolved(compose_train("model=llama", "model.zero_init_proj=true"))["model"]
    assert to_hf_config(model_cfg, vocab_size=50)["model_type"] == "qwen3"


def test_the_flops_estimate_counts_each_layers_window():
    plain, patterned = build_model(), build_model(*WINDOWS)  # TINY: 2 layers, n_embd 32, block_size 32
    assert flops_per_token(plain, 32) - flops_per_token(patterned, 32) == 12 * 32 * (32 - 3)
