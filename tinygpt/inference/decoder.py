"""A batch being decoded, and the step that decodes its next token: the same code on every path.

``Decoder`` holds everything that changes from one token to the next in tensors that stay in place:
the KV cache (``tinygpt.inference.cache``), the newest token, what the repetition penalty applies to,
which rows have ended, and whether any logits were inf or nan. Its ``step`` decodes one token with
model forward and sampling all on the device, and no host sync. The step runs as is (eager), through
torch.compile (``compile``: fewer, fused kernels), or captured once as a CUDA graph and replayed
(``capture``: one launch per token). The loop around it is ``tinygpt.inference.engine.stream_chunks``.
"""

from collections.abc import Callable

import torch

from tinygpt.inference.cache import KVCache
from tinygpt.model import GPT
from tinygpt.runtime import cuda_graphs

Pick = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits (B, V), seen (B, V)) -> ids (B,)
Step = Callable[[], torch.Tensor]  # decodes one token: -> ids (B,)


class Decoder:
    """The prompts (B, T) being continued, with ``cache`` (one ``KVCache`` per layer) or without (None).

    ``restart(context)`` fills the cache from a context (eagerly: its length varies) and samples the
    token after it; without a cache that is how every token is decoded. ``step()`` then decodes the
    token after the newest one. Both return the (B,) ids chosen. Rows that have emitted ``eot_id`` go on
    emitting it. ``finite`` turns false once any logits are inf or nan: the loop checks it when it reads
    tokens back, instead of waiting for the device every token.
    """

    def __init__(
        self, model: GPT, prompt: torch.Tensor, pick: Pick, eot_id: int | None, cache: list[KVCache] | None
    ):
        B, device = prompt.size(0), prompt.device
        self.model, self.prompt, self.pick, self.eot_id, self.cache = model, prompt, pick, eot_id, cache
        self.token = torch.zeros(B, 1, dtype=torch.long, device=device)  # (B, 1) the next step's input
        self.seen = torch.zeros(B, model.lm_head.out_features, dtype=torch.bool, device=device)  # (B, V)
        self.finished = torch.zeros(B, dtype=torch.bool, device=device)  # (B,)
        self.finite = torch.ones((), dtype=torch.bool, device=device)
        self.step: Step = self.decode_one
        self.reset()

    @property
    def fixed_shapes(self) -> bool:
        """Whether the cache has fixed shapes: the step a CUDA graph or torch.compile can take."""
        return any(layer_cache.fixed_shapes for layer_cache in self.cache or [])

    def reset(self) -> None:
        """Back to the state before the first token: nothing sampled yet, only the prompt seen."""
        for state in (self.token, self.seen, self.finished):
            state.zero_()
        self.finite.fill_(True)
        self.seen.scatter_(1, self.prompt, True)

    def restart(self, context: torch.Tensor) -> torch.Tensor:
        """The (B,) ids after context (B, T), which fills the emptied cache at positions 0..T-1."""
        for layer_cache in self.cache or []:
            layer_cache.reset()
        return self.choose(self.model(context, self.cache)[:, -1])  # from logits (B, V)

    def decode_one(self) -> torch.Tensor:
        """The (B,) ids after ``token``, with no host sync; with a fixed-shape cache, the same shapes too."""
        return self.choose(self.model(self.token, self.cache)[:, -1])  # from logits (B, V)

    def choose(self, logits: torch.Tensor) -> torch.Tensor:
        self.finite &= torch.isfinite(logits).all()
        nxt = self.pick(logits, self.seen)  # (B,)
        if self.eot_id is not None:
            nxt = nxt.masked_fill(self.finished, self.eot_id)
            self.finished |= nxt == self.eot_id
        self.seen.scatter_(1, nxt[:, None], True)
        self.token.copy_(nxt[:, None])
        return nxt

    def compile(self) -> None:
        """Make ``step`` a torch.compile'd ``decode_one``: the same tokens, from fewer and fused kernels.

        The cache must have fixed shapes. Compiling waits (seconds to tens of seconds) at the first
        step, so it pays off over long texts; later decoders of the same model and sampling settings
        reuse the compiled code."""
        self.step = torch.compile(self.decode_one)

    def capture(self, generator: torch.Generator | None) -> None:
        """Make ``step`` replay a CUDA graph of itself (``decode_one``, compiled or not); the decoder's
        state is as before.

        The cache (fixed shapes) is allocated first, by a forward over the first prompt token, since a
        graph replays into fixed addresses; warming up and capturing run steps, so the state and the
        random generator are put back afterwards: the text is the one the uncaptured step gives.
        """
        device = self.token.device
        rng = generator if generator is not None else torch.cuda.default_generators[device.index or 0]
        rng_state = rng.get_state()
        self.restart(self.prompt[:, :1])
        self.step = graphed(self.step, generator)
        rng.set_state(rng_state)
        self.reset()


def replays_graphs(device: torch.device) -> bool:
    """Whether a fixed-shape step on ``device`` is captured as a CUDA graph: on CUDA, where graphs exist."""
    return device.type == "cuda"


def graphed(step: Step, generator: torch.Generator | None) -> Step:
    """``step`` captured in a CUDA graph: calling the result replays it and returns its output tensor.
    ``step`` must read and write only tensors that stay in place; two eager runs come first."""
    with cuda_graphs.on_side_stream():
        for _ in range(2):
            step()
    graph, out = cuda_graphs.record(step, generator)

    def replay() -> torch.Tensor:
        graph.replay()
        return out

    return replay
