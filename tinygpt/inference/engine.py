"""Inference: the KV cache, the context rule past block_size, and the decode loop, for any ``GPT``.

The model file holds only the model: its attention takes one cache per layer and asks no more of it
than ``tinygpt.model.gpt.LayerCache``. Everything else about producing text is here, top to bottom:

- ``KVCache``: one layer's keys and values, a ring buffer once full;
- the context rule (``past_block_size``, ``slide_keep``, ``new_cache``): how a model goes on past
  block_size, and the caches that rule needs;
- ``stream_chunks`` / ``stream`` / ``generate``: token ids in, sampled token ids out (the sampler is
  ``tinygpt.inference.sampling``), by one of two loops: ``stream_dynamic`` (the growing ``KVCache``, or none;
  the CPU default) and ``stream_static`` (``tinygpt.inference.static_cache``: fixed shapes, a CUDA graph per
  token, tokens read back in chunks; the CUDA default);
- ``stream_text`` / ``generate_text``: text in, text out, the one path behind both
  ``python -m tinygpt.generate`` and the samples the training loop logs.
"""

import logging
from collections.abc import Iterator
from functools import partial
from typing import Any

import torch

from tinygpt.errors import UserError
from tinygpt.inference.sampling import check_sampling, sample_next
from tinygpt.inference.static_cache import Pick, StaticDecoder
from tinygpt.model import GPT

log = logging.getLogger("tinygpt")


class KVCache:
    """One attention layer's keys and values during generation, allocated once at full size.

    Buffers are (B, n_kv_head, capacity, head_dim): grouped-query models cache only their n_kv_head
    heads. The token at position p lives in slot p % capacity, so once full, the cache is a ring
    buffer of the newest ``capacity`` tokens (a sliding window never needs more). Keys are stored
    after QK-norm and RoPE, at their own positions, so they never need recomputing.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.length = 0  # tokens written so far = the position of the next token
        self.k: torch.Tensor | None = None  # allocated by the first update, in the model's dtype
        self.v: torch.Tensor | None = None

    def reset(self) -> None:
        self.length = 0  # the buffers stay; slots are overwritten before they are read again

    def positions(self, T: int, device: torch.device) -> torch.Tensor:
        return torch.arange(self.length, self.length + T, device=device)  # (T,)

    def mask(self) -> None:
        return None  # the slice update() returns holds exactly the keys a new token sees

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, n_kv_head, T, hd) of the next T tokens; return the keys and values they attend to.

        Several tokens at once (a prompt) must start an empty cache: they attend among themselves,
        under the model's usual causal or window mask. A single token attends to every cached key:
        the cache holds only keys inside its window.
        """
        B, n_kv, T, hd = k.shape
        if T > 1 and self.length > 0:
            raise ValueError("a chunk of several tokens can only start an empty KVCache; reset() it first")
        if self.k is None:
            self.k = k.new_empty(B, n_kv, self.capacity, hd)
            self.v = v.new_empty(B, n_kv, self.capacity, hd)
        keep = min(T, self.capacity)  # a prompt longer than the ring keeps only its newest tokens
        slots = torch.arange(self.length + T - keep, self.length + T, device=k.device) % self.capacity
        self.k.index_copy_(2, slots, k[:, :, T - keep :])
        self.v.index_copy_(2, slots, v[:, :, T - keep :])
        self.length += T
        if T > 1:
            return k, v
        filled = min(self.length, self.capacity)
        # (B, nkv, filled, hd) in slot order: attention ignores key order, positions are in the keys
        return self.k[:, :, :filled], self.v[:, :, :filled]


def past_block_size(model: GPT) -> str:
    """How generation goes on once the text is longer than block_size: ``"ring"`` or ``"slide"``.

    ``"ring"`` (sliding window with RoPE): the model was built to see only the last
    ``sliding_window`` tokens, at any position, so it simply keeps going; its KV cache is a ring
    buffer of that many entries. ``"slide"`` (full attention, or learned positions, which end at
    block_size): the context never exceeds block_size tokens; when it would, it restarts from its
    newest ``slide_keep`` tokens and the cache is recomputed over them.
    """
    if model.sliding_window is not None and model.transformer.wpe.max_positions is None:
        return "ring"
    return "slide"


def slide_keep(model: GPT) -> int:
    """Tokens a "slide" context keeps when it overflows: the newest three quarters of block_size.

    Keeping fewer recomputes the cache less often; keeping more gives each token more context.
    """
    return model.block_size - model.block_size // 4


def cache_capacity(model: GPT) -> int:
    """Keys a layer's cache holds under ``model``'s context rule: its window, or at most block_size."""
    if past_block_size(model) == "ring":
        return model.sliding_window
    return min(model.sliding_window or model.block_size, model.block_size)


def new_cache(model: GPT) -> list[KVCache]:
    """One empty KVCache per layer of ``model``, as large as its context rule needs."""
    return [KVCache(cache_capacity(model)) for _ in range(model.n_layer)]


def fit_context(model: GPT, prompt_len: int, max_new_tokens: int) -> bool:
    """Ready ``model`` for a text of prompt_len + max_new_tokens tokens; True if it goes on as a ring.

    A "ring" model grows its RoPE tables to the whole length; a "slide" model warns when the prompt
    alone is past block_size, since it will see only the prompt's newest ``slide_keep`` tokens.
    """
    if past_block_size(model) == "ring":
        model.transformer.wpe.extend(prompt_len + max_new_tokens)
        return True
    if prompt_len > model.block_size:
        log.warning(
            "the prompt is %d tokens, more than block_size=%d: the model sees its newest %d",
            prompt_len,
            model.block_size,
            slide_keep(model),
        )
    return False


NOT_FINITE = (
    "the model's logits are inf or nan: its weights are too large (training diverged, "
    "e.g. optim.lr too high); sample from ckpt=best or an earlier run's checkpoint"
)
CHUNK = 16  # tokens the static path decodes between two reads back to the host


def last_logits(model: GPT, idx: torch.Tensor, cache: list[KVCache] | None) -> torch.Tensor:
    """The (B, V) next-token logits after idx (B, T); with ``cache``, idx is only the uncached tokens."""
    logits = model(idx, cache)[:, -1]
    if not bool(torch.isfinite(logits).all()):
        raise UserError(NOT_FINITE)
    return logits


def use_static_cache(static_cache: bool | None, kv_cache: bool, device: torch.device) -> bool:
    """Whether to decode with ``tinygpt.inference.static_cache``: None = where it is faster, on CUDA."""
    if static_cache is None:
        return kv_cache and device.type == "cuda"
    if static_cache and not kv_cache:
        raise UserError("static_cache=true is a kind of KV cache: use it with kv_cache=true")
    return bool(static_cache)


@torch.no_grad()
def stream_chunks(
    model: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    eot_id: int | None = None,
    kv_cache: bool = True,
    static_cache: bool | None = None,
    compile_step: bool = False,
    generator: torch.Generator | None = None,
) -> Iterator[torch.Tensor]:
    """Sample up to ``max_new_tokens`` tokens after the prompts idx (B, T); yield them as (B, n) ids.

    Sampling controls are those of ``tinygpt.inference.sampling.sample_next``. A row that emits ``eot_id``
    is finished: it yields ``eot_id`` from then on, and the stream ends once every row has.
    ``kv_cache=False`` recomputes the whole context at every step, under the same context rule
    (``past_block_size``), so it gives the same tokens, only slower. A prompt is context like any
    other: a "slide" model given one longer than block_size sees only its newest ``slide_keep``.

    ``static_cache`` (None: on CUDA only) decodes with fixed-shape caches and, on CUDA, a CUDA graph
    per token (``tinygpt.inference.static_cache``); its tokens come in chunks of up to ``CHUNK``, the others
    one by one. The same seed gives the same tokens either way, up to float rounding. ``compile_step``
    puts the static path's one-token step through torch.compile (``StaticDecoder.compile``).
    """
    check_sampling(temperature, top_k, top_p, repetition_penalty)
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise UserError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    static = use_static_cache(static_cache, kv_cache, idx.device)
    if compile_step and not static:
        raise UserError(
            "compile=true compiles the static cache's one-token step: use it with static_cache=true "
            "(static_cache=auto is true on CUDA only)"
        )
    ring = fit_context(model, idx.size(1), max_new_tokens)
    pick = partial(
        sample_next,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        generator=generator,
    )
    if static:
        decoder = StaticDecoder(model, idx, cache_capacity(model), pick, eot_id)
        if compile_step:
            decoder.compile()
        if idx.device.type == "cuda":
            decoder.capture(generator)  # each token: one graph replay
        yield from stream_static(decoder, max_new_tokens, ring)
        return
    for nxt in stream_dynamic(model, idx, max_new_tokens, ring, pick, eot_id, kv_cache):
        yield nxt[:, None]


def stream_dynamic(
    model: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    ring: bool,
    pick: Pick,
    eot_id: int | None,
    kv_cache: bool,
) -> Iterator[torch.Tensor]:
    """The decode loop with the growing ``KVCache`` (or none): (B,) ids per step, checked on the host."""
    B, prompt_len = idx.shape
    tokens = torch.empty(B, prompt_len + max_new_tokens, dtype=torch.long, device=idx.device)
    tokens[:, :prompt_len] = idx
    seen = torch.zeros(B, model.lm_head.out_features, dtype=torch.bool, device=idx.device)
    seen.scatter_(1, idx, True)  # (B, V): what the repetition penalty applies to
    finished = torch.zeros(B, dtype=torch.bool, device=idx.device)
    cache = new_cache(model) if kv_cache else None
    start = 0  # the context is tokens[:, start:n]
    for n in range(prompt_len, prompt_len + max_new_tokens):
        if not ring and n - start > model.block_size:
            start = n - slide_keep(model)
            for layer_cache in cache or []:
                layer_cache.reset()
        cached = 0 if cache is None else cache[0].length
        logits = last_logits(model, tokens[:, start + cached : n], cache)  # only the uncached tokens
        nxt = pick(logits, seen)  # (B,)
        if eot_id is not None:
            nxt = nxt.masked_fill(finished, eot_id)
            finished |= nxt == eot_id
        tokens[:, n] = nxt
        seen.scatter_(1, nxt[:, None], True)
        yield nxt
        if eot_id is not None and bool(finished.all()):
            return


def stream_static(decoder: StaticDecoder, max_new_tokens: int, ring: bool) -> Iterator[torch.Tensor]:
    """The decode loop of a ``StaticDecoder``: (B, n) ids every ``CHUNK`` tokens, the only host syncs."""
    model, idx, eot_id = decoder.model, decoder.prompt, decoder.eot_id
    B, prompt_len = idx.shape
    total = prompt_len + max_new_tokens
    tokens = torch.empty(B, total, dtype=torch.long, device=idx.device)
    tokens[:, :prompt_len] = idx
    start, sent = 0, prompt_len  # the context is tokens[:, start:n]; tokens[:, sent:n] are not yielded yet
    for n in range(prompt_len, total):
        slide = not ring and n - start > model.block_size
        if slide:
            start = n - slide_keep(model)
        tokens[:, n] = decoder.restart(tokens[:, start:n]) if slide or n == prompt_len else decoder.step()
        if n + 1 - sent < CHUNK and n + 1 < total:
            continue
        new, sent = tokens[:, sent : n + 1], n + 1  # (B, up to CHUNK)
        if bool(decoder.bad):
            raise UserError(NOT_FINITE)
        ended = [] if eot_id is None else (new == eot_id).all(dim=0).nonzero().flatten().tolist()
        if ended:  # every row has ended: the stream stops after that token, as the per-token loop does
            yield new[:, : ended[0] + 1]
            return
        yield new


def stream(model: GPT, idx: torch.Tensor, max_new_tokens: int, **sampling: Any) -> Iterator[torch.Tensor]:
    """``stream_chunks`` (same arguments) one step at a time: yield each step's (B,) ids."""
    for chunk in stream_chunks(model, idx, max_new_tokens, **sampling):
        yield from chunk.unbind(dim=1)


def generate(model: GPT, idx: torch.Tensor, max_new_tokens: int, **sampling: Any) -> torch.Tensor:
    """idx (B, T) -> (B, T + new): the sampled tokens appended; keywords are those of ``stream_chunks``."""
    return torch.cat([idx, *stream_chunks(model, idx, max_new_tokens, **sampling)], dim=1)


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """Prompt ids; an empty prompt starts from <|endoftext|> where the tokenizer has one."""
    if not prompt:
        eot_id = getattr(tokenizer, "eot_id", None)
        if eot_id is None:
            raise UserError(
                "the prompt is empty and this tokenizer has no <|endoftext|> to start from; give some text"
            )
        return [eot_id]
    try:
        return [int(i) for i in tokenizer.encode(prompt)]
    except UserError as exc:
        raise UserError(f"cannot encode the prompt: {exc}") from exc


def stream_text(
    model: GPT,
    tokenizer: Any,
    prompt: str,
    max_new_tokens: int = 200,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    num_samples: int = 1,
    seed: int | None = None,
    stop: str | None = None,
    kv_cache: bool = True,
    static_cache: bool | None = None,
    compile_step: bool = False,
) -> Iterator[list[str]]:
    """Yield the texts (prompt + continuation) of all ``num_samples`` samples after every new token.

    The samples are one batch. Each ends at <|endoftext|> (if the tokenizer has one; not included)
    or just before ``stop``; the stream ends when all have ended, or after ``max_new_tokens``.
    The last texts yielded are the final ones. ``seed`` makes the samples reproducible.
    ``kv_cache``, ``static_cache`` and ``compile_step`` choose the decode path (``stream_chunks``), never
    the text.
    """
    if not isinstance(num_samples, int) or num_samples < 1:
        raise UserError(f"num_samples must be a positive integer, got {num_samples!r}")
    if seed is not None and not isinstance(seed, int):
        raise UserError(f"seed must be an integer or null, got {seed!r}")
    eot_id = getattr(tokenizer, "eot_id", None)
    device = model.lm_head.weight.device
    idx = torch.tensor([encode_prompt(tokenizer, prompt)], device=device).repeat(num_samples, 1)  # (B, T)
    generator = None if seed is None else torch.Generator(device).manual_seed(seed)
    chunks = stream_chunks(
        model,
        idx,
        max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        eot_id=eot_id,
        kv_cache=kv_cache,
        static_cache=static_cache,
        compile_step=compile_step,
        generator=generator,
    )
    new_ids: list[list[int]] = [[] for _ in range(num_samples)]
    texts, ended = [prompt] * num_samples, [False] * num_samples
    steps = (step for chunk in chunks for step in chunk.T.tolist())  # one host read per chunk
    for nxt in steps:
        for i, token in enumerate(nxt):
            if ended[i] or token == eot_id:
                ended[i] = True
                continue
            new_ids[i].append(token)
            # decode all new ids, not token by token: a byte-level token can end inside a character
            continuation = tokenizer.decode(new_ids[i])
            if stop and stop in continuation:
                continuation, ended[i] = continuation[: continuation.index(stop)], True
            texts[i] = prompt + continuation
        yield list(texts)
        if all(ended):
            return


def generate_text(model: GPT, tokenizer: Any, prompt: str, **controls: Any) -> list[str]:
    """The final texts of ``stream_text`` (same keywords): prompt + continuation, one per sample."""
    texts = [prompt]
    for latest in stream_text(model, tokenizer, prompt, **controls):
        texts = latest
    return texts


def describe_context(model: GPT) -> str:
    """One line on how this model goes on past block_size (see ``past_block_size``)."""
    if past_block_size(model) == "ring":
        return (
            f"context: the last sliding_window={model.sliding_window} tokens at any length "
            f"(ring-buffer KV cache; block_size={model.block_size} is no limit)"
        )
    return (
        f"context: at most block_size={model.block_size} tokens; past that it restarts from the "
        f"newest {slide_keep(model)} (KV cache recomputed over them)"
    )
