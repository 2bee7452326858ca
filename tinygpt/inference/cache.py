"""The KV cache, and the context rule that sizes it: how a model goes on once the text is past block_size.

The model asks of a cache only ``tinygpt.model.gpt.LayerCache``; ``KVCache`` is the one implementation,
used by every decode path (CPU and CUDA, eager, compiled or replayed as a CUDA graph).
"""

import logging

import torch

from tinygpt.model import GPT
from tinygpt.model.gpt import document_ids

log = logging.getLogger("tinygpt")


class KVCache:
    """One attention layer's keys and values during generation, in buffers that never move.

    Buffers are (B, n_kv_head, capacity, head_dim), allocated by the first update in the dtype attention
    works in: grouped-query models cache only their n_kv_head heads. The token at position p lives in
    slot p % capacity, so once full the cache is a ring buffer of the newest ``capacity`` tokens (a
    sliding window never needs more). Keys are stored after QK-norm and RoPE, at their own positions.

    ``pos``, a (1,) tensor on the device shared by every layer's cache, is the position of the newest
    token: ``positions`` advances it in place once per forward, so a CUDA graph or a compiled step
    replays the same code every token. A single token reads back either every slot under ``mask()``
    (``fixed_shapes=True``: the same shapes every token, what a graph or torch.compile needs) or only
    the slots written so far (``fixed_shapes=False``: the fewest keys, the CPU's fastest), which it
    counts on the host in ``length``.

    For a ``doc_mask`` model each slot also keeps its key's document id (``docs``, (B, capacity)), so a
    new token sees only the cached keys of its own document, wherever a document token fell (in the
    prompt, or generated).
    """

    def __init__(self, capacity: int, pos: torch.Tensor, fixed_shapes: bool = False):
        self.capacity = capacity
        self.fixed_shapes = fixed_shapes
        self.pos = pos  # (1,) position of the newest token; -1: none yet
        self.length = 0  # tokens written since the prompt; single tokens count only without fixed shapes
        self.slots = torch.arange(capacity, device=pos.device)  # (capacity,)
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.docs: torch.Tensor | None = None  # (B, capacity) each slot's document id, with doc_mask
        self.reset()

    def reset(self) -> None:
        """Empty the cache; the buffers stay, and slots are overwritten before they are read again."""
        self.pos.fill_(-1)
        self.length = 0

    def positions(self, T: int, device: torch.device) -> torch.Tensor:
        """The (T,) positions of the next T tokens, which from now on count as the newest (``pos``)."""
        if T == 1:
            return self.pos.add_(1)  # (1,) unchanged until the next forward's call
        self.pos.fill_(T - 1)  # several tokens start an empty cache (``update`` checks it)
        return torch.arange(T, device=device)

    def documents(self, starts: torch.Tensor) -> torch.Tensor:
        """The (B, T) document ids of the next T tokens from starts (B, T), True at document tokens.

        Several tokens (a prompt) start an empty cache: their ids count from 0. A single token
        continues the document of the newest cached one (its slot, read before ``update`` overwrites
        anything), and starts the next if it is a document token.
        """
        if starts.size(1) > 1 or self.docs is None:  # nothing cached to continue from
            return document_ids(starts)
        newest = (self.pos - 1) % self.capacity  # (1,) ``positions`` already counts the new token
        return self.docs.index_select(1, newest) + starts  # (B, 1)

    def update(
        self, k: torch.Tensor, v: torch.Tensor, docs: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, n_kv_head, T, hd) of the next T tokens (and their document ids, docs (B, T));
        return the keys and values they attend to.

        Several tokens at once (a prompt) must start an empty cache: they attend among themselves,
        under the model's usual causal or window mask. A single token attends to the cached keys, all
        inside its window.
        """
        B, n_kv, T, hd = k.shape
        if T > 1 and self.length > 0:
            raise ValueError("a chunk of several tokens can only start an empty KVCache; reset() it first")
        if self.k is None:
            self.k = k.new_zeros(B, n_kv, self.capacity, hd)  # zeros: slots masked out are still finite
            self.v = v.new_zeros(B, n_kv, self.capacity, hd)
        if docs is not None and self.docs is None:
            self.docs = docs.new_zeros(B, self.capacity)
        keep = min(T, self.capacity)  # a prompt longer than the ring keeps only its newest tokens
        if T == 1:
            slots = self.pos % self.capacity  # (1,)
        else:
            slots = torch.arange(T - keep, T, device=k.device) % self.capacity  # (keep,) positions from 0
        self.k.index_copy_(2, slots, k[:, :, T - keep :])
        self.v.index_copy_(2, slots, v[:, :, T - keep :])
        if docs is not None:
            self.docs.index_copy_(1, slots, docs[:, T - keep :])
        if T > 1:
            self.length = T
            return k, v
        if self.fixed_shapes:
            return self.k, self.v  # (B, nkv, capacity, hd), read under mask()
        self.length += 1
        filled = min(self.length, self.capacity)
        # (B, nkv, filled, hd) in slot order: attention ignores key order, positions are in the keys
        return self.k[:, :, :filled], self.v[:, :, :filled]

    def mask(self, docs: torch.Tensor | None = None) -> torch.Tensor | None:
        """After a single token's update: (1, capacity), the slots written so far; None = all returned.

        With the token's document id docs (B, 1): only the slots of its document, (B, 1, 1, Tk).
        """
        written = (self.slots <= self.pos)[None] if self.fixed_shapes else None  # (1, capacity)
        if docs is None:
            return written
        returned = self.docs if self.fixed_shapes else self.docs[:, : min(self.length, self.capacity)]
        mine = returned == docs  # (B, capacity or filled)
        return (mine if written is None else mine & written)[:, None, None, :]


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


def cache_capacity(model: GPT, window: int | None) -> int:
    """Keys the cache of a layer attending within ``window`` (None: full causal) holds under ``model``'s
    context rule: its window, or at most block_size. A ``window_pattern`` model's short layers get a
    ring of their short window: a new token attends to every key of it."""
    if past_block_size(model) == "ring":
        return window
    return min(window or model.block_size, model.block_size)


def new_cache(model: GPT, fixed_shapes: bool = False) -> list[KVCache]:
    """One empty KVCache per layer of ``model``, on its device, as large as its context rule needs."""
    pos = torch.empty(1, dtype=torch.long, device=model.lm_head.weight.device)  # shared by every layer
    return [KVCache(cache_capacity(model, window), pos, fixed_shapes) for window in model.layer_windows]


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
