"""model.doc_mask: a token attends only to earlier tokens of its own document, in training and in every
decode path; off, the model computes what it always did."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
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
from hydra.utils import instantiate

from tinygpt.errors import UserError
from tinygpt.hf.export import DOC_MASK_WARNING, export_run
from tinygpt.inference.engine import generate
from tinygpt.inference.run import load
from tinygpt.model import attention, gpt
from tinygpt.training.checkpoint import load_checkpoint
from tinygpt.training.loop import train

pytestmark = pytest.mark.usefixtures("one_thread")

BOS = 0  # the document token of these tests' models
VOCAB = 8  # small, so that sampling draws the document token now and then
VARIANTS = {
    "gpt (learned)": [],
    "gqa, rope": ["model=llama", "model.n_kv_head=2"],
    "sliding window, learned": ["model.sliding_window=5"],
    "sliding window, rope (ring cache)": ["model=llama", "model.sliding_window=5"],
}


def doc_model(*overrides: str, doc_mask: bool = True) -> gpt.GPT:
    """A TINY model with document token BOS, its matrices drawn wider than at init (std 0.3): an
    untrained model at init repeats one token, this one's greedy choice follows its context."""
    torch.manual_seed(0)
    model = build_model(*overrides, f"model.doc_mask={doc_mask}", vocab_size=VOCAB, bos_id=BOS).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
    return model


def prompts(T: int = 12, starts: tuple[int, ...] = (4,)) -> torch.Tensor:
    """(2, T) ids without the document token, but at ``starts`` (and row 1 also at 9)."""
    idx = torch.randint(1, VOCAB, (2, T), generator=torch.Generator().manual_seed(1))
    idx[:, list(starts)] = BOS
    idx[1, 9] = BOS
    return idx


def seeded() -> torch.Generator:
    return torch.Generator().manual_seed(5)


def test_document_ids_count_document_tokens_and_the_mask_keeps_each_document_apart():
    starts = torch.tensor([[False, False, True, False, True, False]])
    docs = gpt.document_ids(starts)
    assert docs.tolist() == [[0, 0, 1, 1, 2, 2]]
    mask = gpt.attention_mask(torch.arange(6), None, docs)  # (1, 1, 6, 6)
    sees = [[j for j in range(6) if mask[0, 0, i, j]] for i in range(6)]
    assert sees == [[0], [0, 1], [2], [2, 3], [4], [4, 5]]
    windowed = gpt.attention_mask(torch.arange(6), 1, docs)
    assert [[j for j in range(6) if windowed[0, 0, i, j]] for i in range(6)] == [[i] for i in range(6)]


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_token_does_not_see_an_earlier_document(variant):
    idx = prompts(T=12, starts=(6,))
    other = idx.clone()
    other[:, :6] = torch.randint(
        1, VOCAB, (2, 6), generator=torch.Generator().manual_seed(2)
    )  # doc 0 changed
    masked, plain = doc_model(*VARIANTS[variant]), doc_model(*VARIANTS[variant], doc_mask=False)
    with torch.no_grad():
        same, changed = masked(idx), masked(other)  # (2, 12, V)
        torch.testing.assert_close(same[:, 6:], changed[:, 6:], rtol=0, atol=1e-6)
        assert not torch.allclose(same[:, :6], changed[:, :6])  # the changed document's own tokens do
        assert not torch.allclose(plain(idx)[:, 6:], plain(other)[:, 6:])  # without the mask they see it


def test_doc_mask_false_calls_attention_exactly_as_before(monkeypatch):
    """Off, the model is the one it was: causal SDPA with no mask (a window's (T, T) mask), no new
    state, whatever document tokens the batch holds."""
    calls = []
    sdpa = F.scaled_dot_product_attention

    def recording(q, k, v, attn_mask=None, is_causal=False, **kw):
        calls.append((attn_mask, is_causal))
        return sdpa(q, k, v, attn_mask=attn_mask, is_causal=is_causal, **kw)

    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", recording)
    model, windowed = doc_model(doc_mask=False), doc_model("model.sliding_window=5", doc_mask=False)
    with torch.no_grad():
        model(prompts())
        windowed(prompts())
    assert calls[:2] == [(None, True)] * 2  # TINY has 2 layers
    assert [(mask.shape, causal) for mask, causal in calls[2:]] == [((12, 12), False)] * 2
    assert set(model.state_dict()) == set(doc_model().state_dict())  # no new state, old checkpoints load


GREEDY, SAMPLED = dict(top_k=1), dict(temperature=2.0)  # hot: it draws document tokens too
PATHS = {"no cache": (False, False), "cache": (True, False), "fixed-shape cache": (True, True)}


def decode_paths(model: gpt.GPT, idx: torch.Tensor, controls: dict) -> dict[str, torch.Tensor]:
    """40 tokens after idx on each decode path, from the same seed: long enough to go past block_size
    (32), and, sampled, to draw document tokens."""
    return {
        path: generate(model, idx, 40, kv_cache=kv, static_cache=static, generator=seeded(), **controls)
        for path, (kv, static) in PATHS.items()
    }


@pytest.mark.parametrize("variant", VARIANTS)
def test_kv_cache_decodes_the_tokens_of_the_whole_context_recomputed(variant):
    """Greedy (a document token mid-prompt), then sampled (document tokens generated): the cache,
    dynamic or fixed-shape, gives the tokens of no cache."""
    model, idx = doc_model(*VARIANTS[variant]), prompts()
    generated_documents = 0
    for controls in (GREEDY, SAMPLED):
        texts = decode_paths(model, idx, controls)
        for path in PATHS:
            assert torch.equal(texts[path], texts["no cache"]), (path, controls)
        generated_documents += (texts["no cache"][:, idx.size(1) :] == BOS).sum()
    assert generated_documents > 0  # the case of a generated document token is tested too


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_cache_that_ignored_documents_would_be_caught(variant, monkeypatch):
    """The cache test above fails when a new token sees cached keys of other documents."""
    model, idx = doc_model(*VARIANTS[variant]), prompts()
    before = [decode_paths(model, idx, controls)["no cache"] for controls in (GREEDY, SAMPLED)]
    monkeypatch.setattr("tinygpt.inference.cache.KVCache.mask", lambda self, docs=None: None)
    caught = False
    for controls, reference in zip((GREEDY, SAMPLED), before, strict=True):
        broken = decode_paths(model, idx, controls)
        assert torch.equal(broken["no cache"], reference)  # the break is in the cache alone
        caught |= not torch.equal(broken["cache"], reference) or not torch.equal(
            broken["fixed-shape cache"], reference
        )
    assert caught


@pytest.mark.slow
def test_the_masked_step_and_decode_step_compile_whole():
    """No data-dependent Python in the masked forward + backward or the one-token step: they trace as
    one graph each (fullgraph=True fails on a break; aot_eager traces the backward too) and compute
    what the eager ones do."""
    model, idx = doc_model("model=llama", "model.sliding_window=5").train(), prompts()
    assert_compiles_whole(model, idx)


def test_gradient_checkpointing_recomputes_the_same_masked_step():
    model, idx = doc_model().train(), prompts()
    plain = loss_and_grads(model, idx)
    model.grad_checkpointing = True  # the blocks recompute, with their document ids, in backward
    for a, b in zip(plain, loss_and_grads(model, idx), strict=True):
        torch.testing.assert_close(a, b)


def test_a_char_vocabulary_is_refused_in_one_line(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(*TINY, "max_steps=1", "model.doc_mask=true", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: model.doc_mask=true needs a tokenizer with a document token (<|endoftext|>), e.g. "
        "data.tokenizer=bpe; char vocabularies have none"
    )
    assert not (run_dir / "ckpt.pt").exists()


def documents_recipe(tmp_path) -> list[str]:
    """Overrides for a BPE run on three files, so that its token cache holds three documents."""
    corpus = tmp_path / "corpus"
    corpus.mkdir(exist_ok=True)
    for i, line in enumerate(["The cat sat on the mat.", "A dog ran in the park.", "Rain fell all night."]):
        (corpus / f"{i}.txt").write_text((line + f" Story {i}.\n") * 40)
    data = ["data=text", f"data.path={corpus}", "data/tokenizer=bpe", "data.tokenizer.vocab_size=300"]
    return [*data, f"data.cache_dir={tmp_path / 'cache'}", "model.doc_mask=true", "eval_interval=2"]


def test_a_doc_mask_that_is_not_a_boolean_is_refused():
    with pytest.raises(UserError, match="model.doc_mask must be true or false, got 'yes'"):
        build_model("model.doc_mask=yes", bos_id=BOS)


def test_training_with_doc_mask_trains_and_resumes_bitwise(tmp_path):
    """2 steps, then 2 more on resume: equal to 4 straight."""
    common = documents_recipe(tmp_path)
    data = instantiate(compose_train(*common).data, min_tokens=33)
    assert np.count_nonzero(np.asarray(data.train) == data.tokenizer.eot_id) == 2  # windows cross documents
    a, b = straight_and_resumed(common, tmp_path, total=4, stop=2)
    assert math.isfinite(a["best_val_loss"]) and b["config"]["model"]["doc_mask"] is True
    assert_same_weights(a, b)


def test_export_warns_and_matches_on_one_document_and_init_from_may_turn_it_on(tmp_path, caplog):
    """transformers does not mask by document: the export says so, and computes our logits for text of
    one document. A run started from the export may set model.doc_mask."""
    from transformers import AutoModelForCausalLM

    train(compose_train(*documents_recipe(tmp_path), "max_steps=2"), tmp_path / "run")
    with caplog.at_level("WARNING", logger="tinygpt"):
        folder = export_run(tmp_path / "run", tmp_path / "hf")
    assert DOC_MASK_WARNING in caplog.messages
    ours = load(tmp_path / "run", device="cpu")
    idx = torch.tensor([[ours.tokenizer.eot_id, *ours.tokenizer.encode("The cat ran in the park.")]])
    hf = AutoModelForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, ours.model(idx), rtol=1e-4, atol=1e-4)
    started = ["max_steps=1", f"init_from={folder}", "model.doc_mask=true", "data=text"]
    started += [f"data.path={tmp_path / 'corpus'}", f"data.cache_dir={tmp_path / 'cache'}"]
    train(compose_train(*started), tmp_path / "fine", overrides=started)
    assert load_checkpoint(tmp_path / "fine" / "ckpt.pt")["config"]["model"]["doc_mask"] is True
