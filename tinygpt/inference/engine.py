"""Inference: token ids in, sampled token ids out, and text in, text out, for any ``GPT``.

One decode loop (``decode``, behind ``stream_chunks``) serves every path: it feeds a ``Decoder``
(``tinygpt.inference.decoder``: the batch's KV cache and sampling state, and its one-token step, eager,
compiled or a CUDA graph) that ``new_decoder`` makes, follows the context rule past block_size
(``tinygpt.inference.cache``), and reads tokens back to the host every token, or every ``CHUNK`` where
the step has fixed shapes. The sampler is
``tinygpt.inference.sampling``. ``stream_text`` / ``generate_text`` are the path behind
``python -m tinygpt.generate``; the samples the training loop logs take the same steps (``new_decoder``,
``decode``, ``texts_of``) with one decoder kept between them (``tinygpt.inference.repeated``).
"""

from collections.abc import Iterable, Iterator
from functools import partial
from typing import Any

import torch

from tinygpt.errors import UserError
from tinygpt.inference.cache import fit_context, new_cache, past_block_size, slide_keep
from tinygpt.inference.decoder import Decoder, replays_graphs
from tinygpt.inference.sampling import check_sampling, sample_next
from tinygpt.model import GPT

NOT_FINITE = (
    "the model's logits are inf or nan: its weights are too large (training diverged, "
    "e.g. optim.lr too high); sample from ckpt=best or an earlier run's checkpoint"
)
CHUNK = 16  # tokens a fixed-shape step decodes between two reads back to the host


def use_static_cache(static_cache: bool | None, kv_cache: bool, device: torch.device) -> bool:
    """Whether the cache has fixed shapes (on CUDA: a graph per token); None = on CUDA, where it is faster."""
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

    ``static_cache`` (None: on CUDA only) gives the cache fixed shapes, and on CUDA replays the
    one-token step as a CUDA graph; its tokens come in chunks of up to ``CHUNK``, the others one by
    one. The same seed gives the same tokens either way, up to float rounding. ``compile_step`` puts
    the fixed-shape step through torch.compile (``Decoder.compile``).
    """
    controls = dict(temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty)
    paths = dict(kv_cache=kv_cache, static_cache=static_cache, compile_step=compile_step)
    decoder = new_decoder(model, idx, max_new_tokens, eot_id=eot_id, generator=generator, **controls, **paths)
    yield from decode(decoder, max_new_tokens)


def new_decoder(
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
) -> Decoder:
    """The ``Decoder`` that ``stream_chunks`` (same arguments) decodes with: its cache, compiled and/or
    captured as a CUDA graph where the path asks, in its state before the first token (``decode``)."""
    check_sampling(temperature, top_k, top_p, repetition_penalty)
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise UserError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    static = use_static_cache(static_cache, kv_cache, idx.device)
    if compile_step and not static:
        raise UserError(
            "compile=true compiles the static cache's one-token step: use it with static_cache=true "
            "(static_cache=auto is true on CUDA only)"
        )
    fit_context(model, idx.size(1), max_new_tokens)  # before a capture: a graph reads the tables it finds
    controls = dict(temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty)
    pick = partial(sample_next, generator=generator, **controls)
    decoder = Decoder(model, idx, pick, eot_id, new_cache(model, fixed_shapes=static) if kv_cache else None)
    if compile_step:
        decoder.compile()
    if static and replays_graphs(idx.device):
        decoder.capture(generator)  # each token: one graph replay
    return decoder


def decode(decoder: Decoder, max_new_tokens: int) -> Iterator[torch.Tensor]:
    """The decode loop from the decoder's state before its first token: (B, n) ids every ``CHUNK`` tokens
    with a fixed-shape cache, else every token; those are the only reads back to the host.

    The first token, and the first after a "slide" restart, come from ``restart`` over the context
    (every token does without a cache); the others from ``step``.
    """
    model, idx, eot_id = decoder.model, decoder.prompt, decoder.eot_id
    ring, chunk = past_block_size(model) == "ring", CHUNK if decoder.fixed_shapes else 1
    B, prompt_len = idx.shape
    total = prompt_len + max_new_tokens
    tokens = torch.empty(B, total, dtype=torch.long, device=idx.device)
    tokens[:, :prompt_len] = idx
    start, sent = 0, prompt_len  # the context is tokens[:, start:n]; tokens[:, sent:n] are not yielded yet
    for n in range(prompt_len, total):
        slide = not ring and n - start > model.block_size
        if slide:
            start = n - slide_keep(model)
        fresh = slide or n == prompt_len or decoder.cache is None
        tokens[:, n] = decoder.restart(tokens[:, start:n]) if fresh else decoder.step()
        if n + 1 - sent < chunk and n + 1 < total:
            continue
        new, sent = tokens[:, sent : n + 1], n + 1  # (B, up to chunk)
        if not bool(decoder.finite):
            raise UserError(NOT_FINITE)
        ended = [] if eot_id is None else (new == eot_id).all(dim=0).nonzero().flatten().tolist()
        if ended:  # every row has ended: the stream stops after that token
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
    yield from texts_of(chunks, tokenizer, prompt, num_samples, stop, eot_id)


def texts_of(
    chunks: Iterable[torch.Tensor],
    tokenizer: Any,
    prompt: str,
    num_samples: int,
    stop: str | None,
    eot_id: int | None,
) -> Iterator[list[str]]:
    """The texts of ``stream_text`` after each step of the (B, n) id chunks ``decode`` yields (one row
    per sample): a sample ends at ``eot_id`` or just before ``stop``, and the texts stop coming once all
    have ended."""
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
    return final_texts(stream_text(model, tokenizer, prompt, **controls), prompt)


def final_texts(texts: Iterable[list[str]], prompt: str) -> list[str]:
    """The last of a stream of texts (``stream_text``, ``texts_of``): the final ones; [prompt] if none."""
    final = [prompt]
    for latest in texts:
        final = latest
    return final


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
