"""Generation: the KV cache changes nothing but speed, sampling is reproducible, the CLI prints only
text, and every user mistake gets one clear line."""

import io
import json
import logging
import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import (
    ATTENTION_VARIANTS,
    REPO,
    TINY,
    build_model,
    compose_train,
    edited_copy,
    graph_by_running,
    run_cli,
)
from hydra import compose, initialize_config_dir

from tinygpt.config.schema import conf_dir
from tinygpt.data import CharTokenizer
from tinygpt.errors import UserError, exit_on_user_error
from tinygpt.generate import cli, write_samples
from tinygpt.inference.cache import KVCache, new_cache, past_block_size, slide_keep
from tinygpt.inference.engine import generate, generate_text
from tinygpt.inference.run import load
from tinygpt.inference.sampling import draw
from tinygpt.training.checkpoint import load_checkpoint, save_checkpoint
from tinygpt.training.loop import train
from tinygpt.training.periodic import sample_text, training_sample

VARIANTS = ATTENTION_VARIANTS  # 40 new tokens run far past block_size=16 for each
BLOCK = 16
# Prompts of 5 tokens, and of 30 (> block_size): a long prompt follows the same context rule.
CASES = [(v, n) for n in (5, 30) for v in VARIANTS]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models decode fastest on one thread


def sharp_model(*overrides: str):
    """A random model with large weights: peaky attention and logits, so a wrong key, value or
    position changes which token wins, and near-ties that float noise could flip are rare."""
    torch.manual_seed(0)
    model = build_model(*overrides, f"model.block_size={BLOCK}").eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    return model


def reference_greedy(model, prompt: torch.Tensor, steps: int) -> torch.Tensor:
    """Greedy decoding with one full forward over the context per token, following the documented
    context rule: "ring" sees the whole text (the window mask does the rest); "slide" restarts from
    the newest ``slide_keep`` tokens whenever the context would exceed block_size."""
    tokens, start = prompt, 0
    if past_block_size(model) == "ring":
        model.transformer.wpe.extend(prompt.size(1) + steps)
    for _ in range(steps):
        if past_block_size(model) == "slide" and tokens.size(1) - start > model.block_size:
            start = tokens.size(1) - slide_keep(model)
        with torch.no_grad():
            nxt = model(tokens[:, start:])[:, -1].argmax(dim=-1, keepdim=True)
        tokens = torch.cat([tokens, nxt], dim=1)
    return tokens


@pytest.mark.parametrize("variant,prompt_len", CASES)
def test_greedy_with_kv_cache_equals_full_recompute_past_block_size(variant, prompt_len):
    model = sharp_model(*VARIANTS[variant])
    prompt = torch.randint(0, 50, (2, prompt_len))
    steps = 40
    expected = reference_greedy(model, prompt, steps)
    cached = generate(model, prompt, steps, temperature=0, kv_cache=True)
    recomputed = generate(model, prompt, steps, temperature=0, kv_cache=False)
    assert torch.equal(cached, expected), variant
    assert torch.equal(recomputed, expected), variant
    assert len(set(expected[0, prompt_len:].tolist())) > 5  # a varied text, not one repeated token


STATIC_CASES = [
    ("gpt (learned)", 30),
    ("gqa", 5),
    ("sliding window, learned", 5),
    ("sliding window, rope", 30),
]


@pytest.mark.parametrize("variant,prompt_len", STATIC_CASES)
def test_static_cache_gives_the_tokens_of_the_growing_cache(variant, prompt_len):
    """The static path (on CPU: the CUDA path's code, uncaptured) past block_size: slide restarts,
    a ring that wraps, grouped-query heads; greedy and seeded sampling with every filter on."""
    model = sharp_model(*VARIANTS[variant])
    prompt = torch.randint(0, 50, (2, prompt_len))
    greedy = generate(model, prompt, 40, temperature=0, static_cache=False)
    assert torch.equal(generate(model, prompt, 40, temperature=0, static_cache=True), greedy)

    def seeded(static: bool) -> torch.Tensor:
        rng = torch.Generator().manual_seed(1)
        controls = dict(temperature=2.0, top_k=20, top_p=0.95, repetition_penalty=1.3)
        return generate(model, prompt, 40, static_cache=static, generator=rng, **controls)

    sampled = seeded(False)
    assert torch.equal(seeded(True), sampled)
    assert not torch.equal(sampled, greedy)


@pytest.mark.slow
def test_the_compiled_static_step_gives_the_same_tokens_and_compiles_once():
    """compile=true: the static path's one-token step through torch.compile (on a GPU, then captured):
    greedy and seeded sampling give the uncompiled step's tokens, past block_size too, and a second
    generation with the same model and settings reuses the compiled code instead of compiling again."""
    model = sharp_model(*VARIANTS["gpt (learned)"])
    prompt = torch.randint(0, 50, (2, 5))
    controls = dict(temperature=2.0, top_k=20, top_p=0.95, repetition_penalty=1.3)

    def sampled(compiled: bool) -> torch.Tensor:
        rng = torch.Generator().manual_seed(1)
        return generate(model, prompt, 40, compile_step=compiled, generator=rng, **static, **controls)

    static = dict(static_cache=True)
    greedy = generate(model, prompt, 40, temperature=0, **static)
    assert torch.equal(generate(model, prompt, 40, temperature=0, compile_step=True, **static), greedy)
    torch._dynamo.utils.counters.clear()
    assert torch.equal(sampled(True), sampled(False))
    first = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert torch.equal(sampled(True), sampled(False))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == first  # nothing compiled again


@pytest.mark.parametrize("variant,prompt_len", [("gpt (learned)", 5), ("sliding window, rope", 30)])
def test_the_step_replayed_as_a_graph_gives_the_eager_steps_tokens(variant, prompt_len, monkeypatch):
    """static_cache on CUDA, its CUDA parts replaced: the step is run as the capture runs it (warm-ups
    and the recording), then each "replay" reruns it into the one output tensor a graph overwrites.
    Capturing must put the decoder's state and the random generator back, so the tokens are the eager
    ones: greedy, seeded with a generator and with the default one, through slide restarts and a ring
    that wraps. On a GPU: ``benchmarks/generate_speed.py --device cuda`` ("same tokens")."""

    model = sharp_model(*VARIANTS[variant])
    prompt = torch.randint(0, 50, (2, prompt_len))
    controls = dict(temperature=2.0, top_k=20, top_p=0.95, repetition_penalty=1.3)

    def texts(**path) -> list[torch.Tensor]:
        greedy = generate(model, prompt, 40, temperature=0, **path)
        seeded = generate(model, prompt, 40, generator=torch.Generator().manual_seed(1), **controls, **path)
        torch.manual_seed(2)
        default_rng = generate(model, prompt, 40, **controls, **path)
        return [greedy, seeded, default_rng]

    eager = texts(static_cache=False)
    captures = graph_by_running(monkeypatch)
    replayed = texts(static_cache=True)
    assert len(captures) == 3 and captures[0] is None and captures[2] is None
    for got, expected in zip(replayed, eager, strict=True):
        assert torch.equal(got, expected)
    assert not torch.equal(eager[1], eager[0]) and not torch.equal(eager[2], eager[1])


def test_sampling_draws_what_multinomial_draws_from_the_same_generator():
    probs = torch.rand(3, 40).softmax(dim=-1)
    ours, theirs = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for _ in range(20):
        expected = torch.multinomial(probs, 1, generator=theirs).squeeze(1)
        assert torch.equal(draw(probs, ours), expected)


def test_each_model_says_how_it_goes_past_block_size():
    rules = {variant: past_block_size(sharp_model(*VARIANTS[variant])) for variant in VARIANTS}
    assert {v for v, rule in rules.items() if rule == "ring"} == {"sliding window, rope"}


@pytest.mark.parametrize("fixed_shapes", [False, True])
def test_cache_is_allocated_once_holds_only_the_kv_heads_and_gives_the_full_forwards_logits(fixed_shapes):
    """Both ways a single token reads the cache back (the written slots; every slot under a mask), on
    a ring of 5 slots over 37 tokens: the buffers never move, and the last logits are the uncached ones."""
    model = sharp_model("model=llama", "model.n_kv_head=2", "model.sliding_window=5")  # head_dim 32/4
    model.transformer.wpe.extend(37)  # RoPE tables past block_size, as stream() does
    cache = new_cache(model, fixed_shapes)
    text = torch.randint(0, 50, (3, 37))
    with torch.no_grad():
        model(text[:, :7], cache)
        buffers = [(layer.k.data_ptr(), layer.v.data_ptr()) for layer in cache]
        for n in range(7, 37):
            last = model(text[:, n : n + 1], cache)[:, -1]  # (3, V)
        full = model(text)[:, -1]  # the window mask over the whole text
    assert all(layer.k.shape == (3, 2, 5, 8) for layer in cache)  # (B, n_kv_head, window, head_dim)
    assert [(layer.k.data_ptr(), layer.v.data_ptr()) for layer in cache] == buffers
    assert cache[0].pos.tolist() == [36]  # the newest token's position
    torch.testing.assert_close(last, full)


@pytest.mark.parametrize("fixed_shapes", [False, True])
def test_a_multi_token_chunk_cannot_follow_cached_tokens(fixed_shapes):
    cache = KVCache(capacity=8, pos=torch.empty(1, dtype=torch.long), fixed_shapes=fixed_shapes)
    cache.update(torch.zeros(1, 1, 3, 4), torch.zeros(1, 1, 3, 4))
    with pytest.raises(ValueError, match="empty KVCache"):
        cache.update(torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 2, 4))
    cache.reset()
    cache.update(torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 2, 4))  # a restart


class EndOfText(CharTokenizer):
    """The char tokenizer with one of its characters standing in for <|endoftext|>."""

    def __init__(self, chars: str, eot_char: str):
        super().__init__(chars)
        self.eot_id = chars.index(eot_char)


@pytest.mark.parametrize("static", [False, True])
def test_rows_end_at_eot_and_pad_with_it_while_the_others_go_on(static):
    model = sharp_model()
    prompt = torch.stack([torch.arange(5), torch.arange(5, 10)])  # two different prompts
    free = generate(model, prompt, 12, temperature=0, static_cache=static)
    eot = free[0, 8].item()  # a token row 0 emits at step 3
    assert eot not in free[0, 5:8].tolist() and eot not in free[1, 5:].tolist()
    ended = generate(model, prompt, 12, temperature=0, eot_id=eot, static_cache=static)
    assert ended[0, 8:].tolist() == [eot] * 9  # padded once it ended
    assert torch.equal(ended[1], free[1])  # the other row is untouched, and decides the length

    both = torch.stack([prompt[0], prompt[0]])  # all ended at step 3: stop there, mid-chunk too
    assert generate(model, both, 12, temperature=0, eot_id=eot, static_cache=static).size(1) == 5 + 4


# ---- the library and the CLI on a real (tiny) training run ----


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    train(compose_train("max_steps=4", "eval_interval=2"), run)
    return run


def compose_generate(*overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=conf_dir()):
        return compose("generate", overrides=list(overrides))


def test_same_seed_same_text_other_seed_other_text(run_dir):
    model, tok = load(run_dir, device="cpu")

    def sample(seed: int, **kw) -> list[str]:
        return generate_text(model, tok, "The", max_new_tokens=30, num_samples=2, seed=seed, **kw)

    first = sample(7)
    assert len(first) == 2 and first[0] != first[1]  # one batch, independent samples
    assert all(text.startswith("The") and len(text) == 33 for text in first)
    assert sample(7) == first
    assert sample(8) != first
    assert sample(7, kv_cache=False) == first  # the cache changes nothing but speed
    assert sample(7, static_cache=True) == first  # nor does the static one
    assert sample(7, top_k=3, top_p=0.9, repetition_penalty=1.3) != first


def test_eot_and_stop_end_a_sample_without_appearing_in_it(run_dir):
    model, tok = load(run_dir, device="cpu")
    free = generate_text(model, tok, "The", max_new_tokens=20, temperature=0)[0]
    new = free[3:]
    eot_char = new[6]
    eot_tok = EndOfText(tok.chars, eot_char)
    assert (
        generate_text(model, eot_tok, "The", max_new_tokens=20, temperature=0)[0]
        == free[: 3 + new.index(eot_char)]
    )
    stop = new[4:6]
    assert (
        generate_text(model, tok, "The", max_new_tokens=20, temperature=0, stop=stop)[0]
        == free[: 3 + new.index(stop)]
    )

    start = eot_tok.eot_id  # an empty prompt starts from <|endoftext|>
    ids = generate(model, torch.tensor([[start]]), 8, temperature=0)[0, 1:].tolist()
    ids = ids[: ids.index(start)] if start in ids else ids
    assert generate_text(model, eot_tok, "", max_new_tokens=8, temperature=0)[0] == eot_tok.decode(ids)


def test_training_samples_come_from_the_same_sampler(run_dir):
    model, tok = load(run_dir, device="cpu")
    torch.manual_seed(3)
    during_training = sample_text(model, training_sample(tok, 25))
    torch.manual_seed(3)
    from_generate = generate_text(model, tok, "\n", max_new_tokens=25, temperature=0.8, top_k=50)[0]
    assert during_training == from_generate[1:] and len(during_training) == 25


def test_load_picks_best_or_ema_weights_and_falls_back_to_the_json_config(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    state = load_checkpoint(copy / "ckpt.pt")
    state["ema"] = {k: v + 1.0 for k, v in state["model"].items()}
    del state["config"]  # an older checkpoint: the model config comes from effective_config.json
    save_checkpoint(state, copy / "ckpt.pt")

    ema_model = load(copy, ema=True, device="cpu").model
    torch.testing.assert_close(ema_model.lm_head.weight, state["ema"]["lm_head.weight"])
    raw_model = load(copy, device="cpu").model
    torch.testing.assert_close(raw_model.lm_head.weight, state["model"]["lm_head.weight"])
    best = load_checkpoint(copy / "ckpt_best.pt")["model"]
    torch.testing.assert_close(
        load(copy, ckpt="best", device="cpu").model.lm_head.weight, best["lm_head.weight"]
    )


def test_a_prompt_longer_than_the_context_keeps_its_newest_tokens(run_dir, caplog):
    model, tok = load(run_dir, device="cpu")  # learned positions, block_size=32
    prompt = "The " * 25  # 100 tokens

    def sample(text: str, **kw) -> str:
        return generate_text(model, tok, text, max_new_tokens=20, seed=3, **kw)[0]

    keep = slide_keep(model)
    with caplog.at_level(logging.INFO, logger="tinygpt"):
        cached = sample(prompt)
    assert [r.getMessage() for r in caplog.records] == [
        f"the prompt is 100 tokens, more than block_size=32: the model sees its newest {keep}"
    ]
    assert cached.startswith(prompt) and len(cached) == 120
    assert sample(prompt, kv_cache=False) == cached
    assert cached.removeprefix(prompt) == sample(prompt[-keep:])[keep:]


def test_cli_prints_the_sample_and_nothing_else_and_writes_no_files(run_dir, tmp_path):
    proc = run_cli(
        f"run={run_dir}",
        "prompt=Once upon a time",
        "max_new_tokens=40",
        "seed=5",
        module="tinygpt.generate",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    model, tok = load(run_dir, device="cpu")
    expected = generate_text(model, tok, "Once upon a time", max_new_tokens=40, seed=5)[0]
    assert proc.stdout == expected + "\n"
    assert proc.stdout.startswith("Once upon a time")
    assert "context: at most block_size=32 tokens" in proc.stderr
    assert list(tmp_path.iterdir()) == []  # no outputs/, no .hydra/, no log file


def test_cli_reads_the_prompt_from_stdin_and_separates_samples(run_dir, tmp_path):
    proc = run_cli(
        f"run={run_dir}",
        "prompt=-",
        "max_new_tokens=10",
        "num_samples=3",
        "seed=1",
        "ckpt=best",
        "kv_cache=false",
        module="tinygpt.generate",
        cwd=tmp_path,
        input="To be\n",
    )
    assert proc.returncode == 0, proc.stderr
    samples = proc.stdout.removesuffix("\n").split("\n---\n")
    assert len(samples) == 3
    assert all(s.startswith("To be") and len(s) == 15 for s in samples)


def test_a_prompt_on_stdin_that_is_not_utf8_is_one_clear_line(run_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run(
        [sys.executable, "-m", "tinygpt.generate", f"run={run_dir}", "prompt=-"],
        input="To bé\n".encode("latin-1"),
        capture_output=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 2
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: the prompt on stdin is not valid UTF-8 (byte offset 4); "
    ), proc.stderr
    assert proc.stdout == b""


class Pieces(io.StringIO):
    """A stream that records each write."""

    def __init__(self):
        super().__init__()
        self.pieces: list[str] = []

    def write(self, s: str) -> int:
        self.pieces.append(s)
        return super().write(s)


def test_live_output_holds_back_what_a_stop_string_may_still_cut():
    # the texts stream_text yields with stop="you": after "Hi, yo" a "u" completes it and the text is cut
    steps = [["Hi"], ["Hi, "], ["Hi, y"], ["Hi, yo"], ["Hi, "]]
    out = Pieces()
    write_samples(iter(steps), out, live=True, hold=len("you") - 1)
    assert out.pieces == ["Hi", ",", " ", "\n"]  # as it grew, never a character the stop later cut


def test_output_without_a_terminal_comes_at_the_end():
    out = Pieces()
    write_samples(iter([["a", "b"], ["ab", "bc"]]), out, live=False)
    assert out.pieces == ["ab\n", "---\nbc\n"]


# ---- user mistakes ----


def test_an_unsafe_target_anywhere_in_the_config_is_refused_before_it_runs(run_dir, tmp_path):
    for target in ("os.system", "torch.hub.load", "tinygpt.model.gpt.torch.hub.load"):
        copy = tmp_path / target
        shutil.copytree(run_dir, copy)
        state = load_checkpoint(copy / "ckpt.pt")
        marker = tmp_path / f"{target}.ran"
        state["config"]["model"]["mlp"] = {"_target_": target, "_args_": [f"touch {marker}"]}
        save_checkpoint(state, copy / "ckpt.pt")
        with pytest.raises(
            UserError,
            match=f"asks to build .{target}., which is not one of TinyGPT.s model components",
        ):
            load(copy, device="cpu")
        assert not marker.exists()


# overrides ({run}: the trained run, {empty}: a run directory without checkpoints, {inf}: one whose
# ckpt.pt holds an inf weight, {huge}: one whose weights are finite but overflow) -> message
ERRORS = {
    "missing run dir": (["run=/nonexistent/run"], "run directory /nonexistent/run does not exist"),
    "no run given": ([], "run is required"),
    "no checkpoint": (["run={empty}"], "no checkpoint at"),
    "no EMA weights": (["run={run}", "ema=true"], "holds no EMA weights"),
    "unknown ckpt": (["run={run}", "ckpt=first"], "ckpt must be one of latest, best"),
    "prompt outside the vocabulary": (
        ["run={run}", 'prompt="naïve"'],
        "cannot encode the prompt: character 'ï'",
    ),
    "empty prompt without eot": (["run={run}", "prompt="], "the prompt is empty"),
    "prompt read as a number": (["run={run}", "prompt=42"], "quote it"),
    "negative temperature": (["run={run}", "temperature=-1"], "temperature must be a number >= 0"),
    "top_p zero": (["run={run}", "top_p=0"], "top_p must be in (0, 1]"),
    "top_p above one": (["run={run}", "top_p=1.5"], "top_p must be in (0, 1]"),
    "top_k zero": (["run={run}", "top_k=0"], "top_k must be a positive integer"),
    "repetition penalty zero": (["run={run}", "repetition_penalty=0"], "repetition_penalty must be > 0"),
    "no samples": (["run={run}", "num_samples=0"], "num_samples must be a positive integer"),
    "no new tokens": (["run={run}", "max_new_tokens=0"], "max_new_tokens must be a positive integer"),
    "bad device": (["run={run}", "device=tpu"], "device must be one of"),
    "weights not finite": (
        ["run={inf}"],
        "are not finite (transformer.h.0.attn.c_attn.weight holds inf or nan); training diverged",
    ),
    "weights that overflow": (["run={huge}", "prompt=a"], "the model's logits are inf or nan"),
    "config claims a huge model": (
        ["run={bomb}"],
        "the weights in {bomb}/ckpt.pt do not fit the model the config in {bomb}/ckpt.pt describes: "
        "transformer.wte.weight is (74, 32) there but (74, 65536) in the model (and ",
    ),
    "tokenizer with fewer tokens": (
        ["run={fewer_tokens}"],
        "{fewer_tokens}/tokenizer.json has 71 tokens but the weights in {fewer_tokens}/ckpt.pt have 74 "
        "(transformer.wte.weight is (74, 32)); put back the tokenizer.json the run was trained with",
    ),
    "weights that overflow, static cache": (
        ["run={huge}", "prompt=a", "static_cache=true"],
        "the model's logits are inf or nan",
    ),
    "static cache not a boolean": (
        ["run={run}", "static_cache=yes"],
        "static_cache must be auto, true or false",
    ),
    "static cache without kv cache": (
        ["run={run}", "kv_cache=false", "static_cache=true"],
        "use it with kv_cache=true",
    ),
    "compile without the static cache": (
        ["run={run}", "compile=true", "device=cpu"],
        "compile=true compiles the static cache's one-token step: use it with static_cache=true",
    ),
    "compile not a boolean": (["run={run}", "compile=fast"], "compile must be true or false"),
}


@pytest.fixture(scope="module")
def empty_run(run_dir, tmp_path_factory):
    empty = tmp_path_factory.mktemp("empty_run")
    shutil.copy(run_dir / "tokenizer.json", empty)
    return empty


def spoiled_copy(run_dir, path, spoil) -> str:
    """A copy of the run whose ckpt.pt weights went through ``spoil``, as a diverged training leaves them."""
    return str(edited_copy(run_dir, path, lambda state: spoil(state["model"])))


@pytest.fixture(scope="module")
def diverged_runs(run_dir, tmp_path_factory) -> dict[str, str]:
    def inf(weights):
        weights["transformer.h.0.attn.c_attn.weight"][3, 5] = float("inf")

    def huge(weights):
        for tensor in {t.data_ptr(): t for t in weights.values()}.values():  # tied ones once
            tensor.mul_(1e30)  # finite, but attention scores overflow

    def claims_a_huge_model(state):  # ~13 TB in fp32 if it were built
        state["config"]["model"].update(n_layer=64, n_embd=1 << 16)

    root = tmp_path_factory.mktemp("diverged")
    fewer_tokens = edited_copy(run_dir, root / "fewer_tokens", lambda state: None)
    chars = json.loads((fewer_tokens / "tokenizer.json").read_text())["chars"]
    (fewer_tokens / "tokenizer.json").write_text(json.dumps({"kind": "char", "chars": chars[:-3]}))
    return {
        "inf": spoiled_copy(run_dir, root / "inf", inf),
        "huge": spoiled_copy(run_dir, root / "huge", huge),
        "bomb": str(edited_copy(run_dir, root / "bomb", claims_a_huge_model)),
        "fewer_tokens": str(fewer_tokens),
    }


def error_case(case: str, run_dir, empty_run, diverged_runs) -> tuple[list[str], str]:
    overrides, message = ERRORS[case]
    places = dict(run=run_dir, empty=empty_run, **diverged_runs)
    return [o.format(**places) for o in overrides], message.format(**places)


@pytest.mark.parametrize("case", ERRORS)
def test_user_mistakes_get_one_clear_line(case, run_dir, empty_run, diverged_runs, capsys):
    overrides, message = error_case(case, run_dir, empty_run, diverged_runs)
    cfg = compose_generate(*overrides)
    with pytest.raises(SystemExit) as exit_info:
        exit_on_user_error(cli)(cfg)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err


@pytest.mark.parametrize(
    "case",
    [
        "missing run dir",
        "no checkpoint",
        "prompt outside the vocabulary",
        "top_p zero",
        "weights not finite",
        "weights that overflow",
        "config claims a huge model",
        "tokenizer with fewer tokens",
    ],
)
def test_the_command_line_reports_mistakes_without_a_traceback(
    case, run_dir, empty_run, diverged_runs, tmp_path
):
    overrides, message = error_case(case, run_dir, empty_run, diverged_runs)
    proc = run_cli(*overrides, module="tinygpt.generate", cwd=tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_a_sweep_directory_names_its_runs(tmp_path):
    for job in ("0", "1"):
        (tmp_path / job).mkdir()
        (tmp_path / job / "ckpt.pt").write_bytes(b"")
    proc = run_cli(f"run={tmp_path}", "prompt=a", module="tinygpt.generate")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        f"is a sweep's directory, not a run; pass one of its 2 runs: {tmp_path / '0'}, {tmp_path / '1'}"
        in proc.stderr
    )


def test_help_shows_the_sampling_keys_not_the_training_groups():
    proc = run_cli("--help", module="tinygpt.generate")
    assert proc.returncode == 0
    assert "max_new_tokens: 200" in proc.stdout and "top_p" in proc.stdout
    assert "optim" not in proc.stdout and "model/norm" not in proc.stdout


def test_the_readmes_python_example_runs_as_written(tmp_path):
    """The README's "From Python" block, run on a real run directory in place of out/my_model."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("From Python:\n\n", 1)[1].split("\n\nSamples logged", 1)[0]
    code = "\n".join(line[4:] for line in block.splitlines())  # the block is indented by 4
    run_dir = tmp_path / "run"
    corpus = tmp_path / "plays.txt"
    corpus.write_text("ROMEO: speak, speak.\nJULIET: ay me.\n" * 400)
    proc = run_cli(*TINY, "max_steps=2", "data=text", f"data.path={corpus}", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(
        [sys.executable, "-c", code.replace("out/my_model", str(run_dir)) + "\nassert out.shape == (1, 106)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ROMEO:") and "Warning" not in proc.stderr


@pytest.mark.parametrize("prompt", ["Hello, world!", "It's me", "The "])
def test_an_ordinary_prompt_is_continued_exactly_as_typed(run_dir, prompt, tmp_path):
    """Commas, quotes, ``!`` and a trailing space reach the model: no override-grammar error, no trim."""
    proc = run_cli(
        f"run={run_dir}", f"prompt={prompt}", "max_new_tokens=8", "seed=3", module="tinygpt.generate"
    )
    assert proc.returncode == 0, proc.stderr
    model, tok = load(run_dir, device="cpu")
    assert proc.stdout == generate_text(model, tok, prompt, max_new_tokens=8, seed=3)[0] + "\n"
    assert proc.stdout.startswith(prompt)


def test_a_letter_the_run_never_saw_is_named_not_a_parse_error(run_dir):
    proc = run_cli(f"run={run_dir}", "prompt=Café", module="tinygpt.generate")
    assert proc.returncode == 2 and "error: cannot encode the prompt: character 'é'" in proc.stderr
    assert "Lexer" not in proc.stderr and "hydra.cc" not in proc.stderr
