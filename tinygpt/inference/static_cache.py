"""A static KV cache and a decode step with the same shapes every token, so a CUDA graph can replay it.

The growing ``engine.KVCache`` hands attention a slice one key longer each token, and its loop
reads every token back to the host: at batch 1 a small model on a GPU spends its time launching a
dozen small kernels and waiting, not computing. Here instead:

- ``StaticKVCache``: one layer's keys and values in buffers of a fixed size, and the position of the
  next token as a tensor on the device; a new token attends over every slot, under a mask of those
  written so far, so no shape and no Python number changes from one token to the next;
- ``StaticDecoder``: a batch being decoded (its caches, newest token, position and sampling state) and
  ``step``, which decodes one token: model forward + sampling, all on the device. On CUDA the step is
  captured once in a CUDA graph (``graphed``) and each token is one replay; elsewhere it runs as is,
  the same code. ``compile()`` first puts it through torch.compile (fewer, fused kernels per token, for
  a wait up front). The loop around it is ``tinygpt.inference.engine.stream``.
"""

from collections.abc import Callable

import torch

from tinygpt.model import GPT

Pick = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits (B, V), seen (B, V)) -> ids (B,)
Step = Callable[[], torch.Tensor]  # decodes one token: -> ids (B,)


class StaticKVCache:
    """One attention layer's keys and values in (B, n_kv_head, capacity, head_dim) buffers that never move.

    The token at position p lives in slot p % capacity, as in ``KVCache``; ``pos``, a (1,) tensor shared by
    every layer, is the position of the next token, and the decoder advances it on the device.
    """

    def __init__(self, capacity: int, pos: torch.Tensor):
        self.capacity = capacity
        self.pos = pos
        self.slots = torch.arange(capacity, device=pos.device)  # (capacity,)
        self.k: torch.Tensor | None = None  # allocated by the first update, in the dtype attention works in
        self.v: torch.Tensor | None = None

    def positions(self, T: int, device: torch.device) -> torch.Tensor:
        return self.pos if T == 1 else self.pos + torch.arange(T, device=device)  # (T,)

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, n_kv_head, T, hd) at positions pos.. ; T > 1 (a context) starts the cache afresh
        and attends among itself; one token gets the whole buffers back, to read under ``mask``."""
        B, n_kv, T, hd = k.shape
        if self.k is None:
            self.k = k.new_zeros(B, n_kv, self.capacity, hd)  # zeros: unwritten slots are masked, and finite
            self.v = v.new_zeros(B, n_kv, self.capacity, hd)
        keep = min(T, self.capacity)  # a context longer than the ring keeps only its newest tokens
        if T == 1:
            slots = self.pos % self.capacity  # (1,)
        else:
            slots = (self.pos + torch.arange(T - keep, T, device=k.device)) % self.capacity  # (keep,)
        self.k.index_copy_(2, slots, k[:, :, T - keep :])
        self.v.index_copy_(2, slots, v[:, :, T - keep :])
        return (k, v) if T > 1 else (self.k, self.v)

    def mask(self) -> torch.Tensor:
        """(1, capacity): the slots written so far; once the ring is full, every one."""
        return (self.slots <= self.pos)[None]


class StaticDecoder:
    """A batch of texts being decoded, all of its state in tensors that stay in place.

    ``restart(context)`` fills the caches from a context (eagerly: its length varies) and samples the
    token after it; ``step()`` then decodes one token at a time. Both return the (B,) ids chosen. Rows
    that have emitted ``eot_id`` go on emitting it. ``bad`` turns true once any logits are inf or nan:
    the loop checks it when it reads tokens back, instead of waiting for the device every token.
    """

    def __init__(self, model: GPT, prompt: torch.Tensor, capacity: int, pick: Pick, eot_id: int | None):
        B = prompt.size(0)
        device = prompt.device
        self.model, self.prompt, self.pick, self.eot_id = model, prompt, pick, eot_id
        self.pos = torch.zeros(1, dtype=torch.long, device=device)  # (1,) position of ``token``
        self.token = torch.zeros(B, 1, dtype=torch.long, device=device)  # (B, 1) the next step's input
        self.seen = torch.zeros(B, model.lm_head.out_features, dtype=torch.bool, device=device)  # (B, V)
        self.finished = torch.zeros(B, dtype=torch.bool, device=device)  # (B,)
        self.bad = torch.zeros((), dtype=torch.bool, device=device)
        self.cache = [StaticKVCache(capacity, self.pos) for _ in range(model.n_layer)]
        self.step: Step = self.decode_one
        self.reset()

    def reset(self) -> None:
        """Back to the state before the first token: nothing sampled yet, only the prompt seen."""
        for state in (self.pos, self.token, self.seen, self.finished, self.bad):
            state.zero_()
        self.seen.scatter_(1, self.prompt, True)  # what the repetition penalty applies to

    def restart(self, context: torch.Tensor) -> torch.Tensor:
        """Fill the caches from context (B, T) at positions 0..T-1; return the (B,) ids that follow it."""
        self.pos.zero_()
        logits = self.model(context, self.cache)[:, -1]  # (B, V)
        self.pos.fill_(context.size(1))
        return self.choose(logits)

    def decode_one(self) -> torch.Tensor:
        """Decode the token after ``token``: (B,) ids. Same shapes and no host sync, every call."""
        logits = self.model(self.token, self.cache)[:, -1]  # (B, V)
        self.pos += 1
        return self.choose(logits)

    def choose(self, logits: torch.Tensor) -> torch.Tensor:
        self.bad |= ~torch.isfinite(logits).all()
        nxt = self.pick(logits, self.seen)  # (B,)
        if self.eot_id is not None:
            nxt = nxt.masked_fill(self.finished, self.eot_id)
            self.finished |= nxt == self.eot_id
        self.seen.scatter_(1, nxt[:, None], True)
        self.token.copy_(nxt[:, None])
        return nxt

    def compile(self) -> None:
        """Make ``step`` a torch.compile'd ``decode_one``: the same tokens, from fewer and fused kernels.

        Compiling waits (seconds to tens of seconds) at the first step, so it pays off over long texts;
        later decoders of the same model and sampling settings reuse the compiled code."""
        self.step = torch.compile(self.decode_one)

    def capture(self, generator: torch.Generator | None) -> None:
        """Make ``step`` replay a CUDA graph of itself (``decode_one``, compiled or not); the decoder's
        state is as before.

        The caches are allocated first (a forward over the first prompt token), since a graph
        replays into fixed addresses; warming up and capturing run steps, so the state and the
        random generator are put back afterwards: the text is the one the uncaptured step gives.
        """
        device = self.pos.device
        rng = generator if generator is not None else torch.cuda.default_generators[device.index or 0]
        rng_state = rng.get_state()
        self.restart(self.prompt[:, :1])
        self.step = graphed(self.step, generator)
        rng.set_state(rng_state)
        self.reset()


def graphed(step: Step, generator: torch.Generator | None) -> Step:
    """``step`` captured in a CUDA graph: calling the result replays it and returns its output tensor.

    ``step`` must read and write only tensors that stay in place. A few eager runs on a side stream
    come first (torch's recipe: lazy initialisation, e.g. of cuBLAS, must not happen while capturing).
    """
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    if generator is not None:
        graph.register_generator_state(generator)  # replays draw from it, and advance it, as eager steps do
    with torch.cuda.graph(graph):
        out = step()

    def replay() -> torch.Tensor:
        graph.replay()
        return out

    return replay
