"""The GPT: token embedding -> n_layer x Block(attention, MLP) -> final norm -> LM head.

One class covers GPT-2 (LayerNorm, learned positions, GELU, biases) and Llama-style models (RMSNorm,
RoPE, SwiGLU, no biases): norm, positions and MLP are passed in as factories built by Hydra from
``conf/model/{norm,pos,mlp}``. Parameter names follow GPT-2 (``transformer.wte``, ``h.N.attn.c_attn``,
``ln_f``, ``lm_head``) so foreign checkpoints map on by name.

The forward takes an optional KV cache per layer (the model's math only needs ``LayerCache``), so each
new token costs one position instead of the whole context; the cache, the context rule past block_size
and the decode loop live in ``tinygpt.inference``.

With ``doc_mask`` a token attends only to earlier tokens of its own document: the document token
(``bos_id``, the tokenizer's <|endoftext|>) starts a new document, so a token's document is the count of
document tokens up to and including it (``document_ids``). The mask is a boolean (B, 1, T, T) for
scaled-dot-product attention, built from the ids by tensor ops alone (no host sync: compile and CUDA
graphs record it).

Four options from the modded-nanogpt speedrun, all off by default (off, the model is the one it was):
``zero_init_proj`` starts the residual projections at zero (each block starts as the identity);
``value_embeds`` mixes N extra token tables into the values of the first and last N layers;
``unet_skips`` adds the first half's block outputs, weighted, to the mirrored second-half inputs;
``window_pattern`` gives each layer a short (S) or long (L) attention window. The mixing scalars
these add are listed by ``GPT.scalar_parameters`` (the optimizer groups them apart).

Every logit comes out of ``GPT.head``: with ``logit_softcap`` c they are c*tanh(z/c), in training,
evaluation and generation alike; with ``fp8_head`` the training forward runs the head's matmul in FP8
(``model.fp8``), evaluation and generation the plain one.
"""

import math
from collections.abc import Callable
from functools import partial
from typing import Protocol

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from tinygpt.errors import UserError
from tinygpt.model.attention import attend
from tinygpt.model.fp8 import fp8_linear
from tinygpt.model.loss import chunked_lm_loss, lm_loss

NormFactory = Callable[[int], nn.Module]  # dim -> module
PosFactory = Callable[..., nn.Module]  # (block_size, n_embd, head_dim) -> LearnedPositions | RoPE
MlpFactory = Callable[..., nn.Module]  # (n_embd, bias=, dropout=) -> module


class LayerCache(Protocol):
    """What attention needs of one layer's KV cache during generation (``inference.cache.KVCache``)."""

    def positions(self, T: int, device: torch.device) -> torch.Tensor:
        """The (T,) positions of the next T tokens: they continue from the cached ones.

        Asked once per forward, of the first layer's cache, before any update: a cache may count the
        T tokens as written from here on.
        """

    def documents(self, starts: torch.Tensor) -> torch.Tensor:
        """The (B, T) document ids of the next T tokens, given which of them are document tokens (B, T).

        Asked once per forward of a ``doc_mask`` model, of the first layer's cache, after ``positions``
        and before any update: a single token continues the newest cached token's document.
        """

    def update(
        self, k: torch.Tensor, v: torch.Tensor, docs: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, n_kv_head, T, hd) of the next T tokens, and with ``doc_mask`` their (B, T)
        document ids; return the keys and values they see.

        A chunk of T > 1 tokens starts an empty cache and gets its own k, v back (the usual mask
        applies). A single token gets the cached keys, which hold only keys inside its window.
        """

    def mask(self, docs: torch.Tensor | None = None) -> torch.Tensor | None:
        """After a single token's update: which returned keys it sees, (1, Tk) bool; None = all of them.
        With its document id ``docs`` (B, 1): only the keys of that document, (B, 1, 1, Tk)."""


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention with grouped-query heads, optional QK-norm and sliding window."""

    def __init__(
        self,
        n_embd: int,
        n_head: int,
        n_kv_head: int,
        norm: NormFactory,
        bias: bool,
        dropout: float,
        qk_norm: bool,
        sliding_window: int | None,
        value_embed: bool = False,
    ):
        super().__init__()
        self.n_head, self.n_kv_head = n_head, n_kv_head
        self.head_dim = n_embd // n_head
        self.c_attn = nn.Linear(n_embd, (n_head + 2 * n_kv_head) * self.head_dim, bias=bias)  # fused q, k, v
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.q_norm = norm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = norm(self.head_dim) if qk_norm else nn.Identity()
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)
        self.sliding_window = sliding_window  # this layer's window (window_pattern: short or long)
        # value_embeds: v = a*v + b*ve, (a, b) learned, both 1 at init: the plain sum v + ve, whose
        # table starts as small as the token embedding (std 0.02) and gets v's whole gradient
        self.ve_mix = nn.Parameter(torch.ones(2)) if value_embed else None

    def forward(
        self,
        x: torch.Tensor,
        pos: torch.Tensor,
        rotate: Callable,
        cache: LayerCache | None = None,
        docs: torch.Tensor | None = None,
        ve: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, T, C) at positions pos (T,) -> (B, T, C); ``docs`` (B, T): document ids, or None;
        ``ve`` (B, T, n_kv_head * head_dim): these tokens' value embedding, or None."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(
            [self.n_head * self.head_dim, self.n_kv_head * self.head_dim, self.n_kv_head * self.head_dim],
            dim=-1,
        )
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)
        k = k.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, nkv, T, hd)
        v = v.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, nkv, T, hd)
        if ve is not None:  # mixed in before the cache stores v
            ve = ve.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, nkv, T, hd)
            v = self.ve_mix[0] * v + self.ve_mix[1] * ve
        q, k = rotate(self.q_norm(q), self.k_norm(k), pos)
        if cache is not None:
            k, v = cache.update(k, v, docs)  # (B, nkv, T or every cached token, hd)
        if cache is not None and T == 1:
            mask, causal = cache.mask(docs), False  # the cached keys inside its window (and document)
        else:
            mask = attention_mask(pos, self.sliding_window, docs)
            causal = mask is None
        y = attend(q, k, v, mask, causal, self.dropout if self.training else 0.0)  # (B, nh, T, hd)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.resid_dropout(self.c_proj(y))


def attention_mask(pos: torch.Tensor, window: int | None, docs: torch.Tensor | None) -> torch.Tensor | None:
    """Which keys each of T tokens at positions pos (T,) sees among themselves; None = plain causal.

    Causal, or within the sliding ``window``: (T, T) bool; and with document ids ``docs`` (B, T), only
    keys of the query's own document: (B, 1, T, T). Every token sees at least itself.
    """
    if window is None and docs is None:
        return None
    mask = window_mask(pos, pos, pos.numel() if window is None else window)  # (T, T)
    return mask if docs is None else mask & same_document(docs, docs)


def same_document(q_docs: torch.Tensor, k_docs: torch.Tensor) -> torch.Tensor:
    """Boolean (B, 1, Tq, Tk): query and key in the same document, from ids q_docs (B, Tq), k_docs (B, Tk)."""
    return (q_docs[:, :, None] == k_docs[:, None, :])[:, None]


def document_ids(starts: torch.Tensor) -> torch.Tensor:
    """(B, T) document ids from starts (B, T) bool, True at document tokens: the count of them so far.

    A document token belongs to the document it starts; tokens before the first one are document 0.
    """
    return starts.cumsum(dim=1)


def window_mask(q_pos: torch.Tensor, k_pos: torch.Tensor, window: int) -> torch.Tensor:
    """Boolean (Tq, Tk) mask: a query at position i sees keys j with i - window < j <= i.

    So every token attends to at most ``window`` tokens: itself and the window-1 before it.
    """
    dist = q_pos[:, None] - k_pos[None, :]
    return (dist >= 0) & (dist < window)


class Block(nn.Module):
    """Pre-norm transformer block; ``parallel`` adds attention and MLP of the same input (GPT-J/NeoX)."""

    def __init__(
        self, n_embd: int, attn: CausalSelfAttention, mlp: nn.Module, norm: NormFactory, parallel: bool
    ):
        super().__init__()
        self.ln_1 = norm(n_embd)
        self.attn = attn
        self.ln_2 = norm(n_embd)
        self.mlp = mlp
        self.parallel = parallel

    def forward(
        self,
        x: torch.Tensor,
        pos: torch.Tensor,
        rotate: Callable,
        cache: LayerCache | None = None,
        docs: torch.Tensor | None = None,
        ve: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.parallel:
            return x + self.attn(self.ln_1(x), pos, rotate, cache, docs, ve) + self.mlp(self.ln_2(x))
        x = x + self.attn(self.ln_1(x), pos, rotate, cache, docs, ve)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """The model; keys as in conf/model/*.yaml. ``bos_id``: the tokenizer's document token
    (<|endoftext|>; None if it has none), which ``doc_mask`` needs: build through
    ``tinygpt.model.build.build_gpt``, which passes it."""

    def __init__(
        self,
        vocab_size: int,
        norm: NormFactory,
        pos: PosFactory,
        mlp: MlpFactory,
        n_layer: int = 4,
        n_head: int = 4,
        n_embd: int = 128,
        block_size: int = 128,
        n_kv_head: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        tie_weights: bool = True,
        qk_norm: bool = False,
        parallel_block: bool = False,
        sliding_window: int | None = None,
        doc_mask: bool = False,
        zero_init_proj: bool = False,
        value_embeds: int = 0,
        unet_skips: bool = False,
        window_pattern: str | None = None,
        short_window: int | None = None,
        bos_id: int | None = None,
        logit_softcap: float | None = None,
        fp8_head: bool = False,
    ):
        super().__init__()
        n_kv_head = n_head if n_kv_head is None else n_kv_head
        head_multiple = getattr(getattr(pos, "func", pos), "head_multiple", 1)  # RoPE: an even head size
        check_shape(
            vocab_size, n_layer, n_head, n_kv_head, n_embd, block_size, dropout, sliding_window, head_multiple
        )
        self.block_size = block_size
        self.n_layer = n_layer
        self.sliding_window = sliding_window  # the long window (the model's context rule)
        self.layer_windows = layer_windows(n_layer, block_size, sliding_window, window_pattern, short_window)
        check_doc_mask(doc_mask, bos_id)
        check_speedrun_options(n_layer, zero_init_proj, value_embeds, unet_skips)
        self.doc_mask, self.bos_id = doc_mask, bos_id
        self.value_embeds = value_embeds
        # set by the loop: recompute each block, and the head + loss a chunk at a time, in backward
        self.grad_checkpointing = False
        head_dim = n_embd // n_head
        attention = partial(CausalSelfAttention, n_embd, n_head, n_kv_head, norm, bias, dropout, qk_norm)
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(vocab_size, n_embd),
                wpe=pos(block_size, n_embd, head_dim),  # learned table, or RoPE (no parameters)
                drop=nn.Dropout(dropout),
                h=self.make_blocks(
                    n_embd, attention, partial(mlp, n_embd, bias=bias, dropout=dropout), norm, parallel_block
                ),
                ln_f=norm(n_embd),
            )
        )
        self.add_mixing_parts(vocab_size, n_kv_head * head_dim, unet_skips)
        self.make_head(n_embd, vocab_size, tie_weights, logit_softcap, fp8_head)
        self.apply(self._init_weights)
        self.init_residual_projections(zero_init_proj)

    def init_residual_projections(self, zero: bool) -> None:
        """The projections back into the residual stream: GPT-2's scaled normal, or with ``zero``
        (``zero_init_proj``, modded-nanogpt) zeros, so that each block starts as the identity."""
        for name, p in self.named_parameters():
            if name.endswith(("c_proj.weight", "down_proj.weight")):  # attention's and the MLP's
                if zero:
                    nn.init.zeros_(p)
                else:
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * self.n_layer))

    def make_blocks(
        self,
        n_embd: int,
        attention: Callable[..., CausalSelfAttention],
        mlp: Callable[[], nn.Module],
        norm: NormFactory,
        parallel: bool,
    ) -> nn.ModuleList:
        """The n_layer blocks: ``attention(window, value_embed)`` gets each layer's window and whether
        it mixes a value embedding in."""
        return nn.ModuleList(
            Block(n_embd, attention(window, table is not None), mlp(), norm, parallel)
            for window, table in zip(self.layer_windows, self.value_tables(), strict=True)
        )

    def add_mixing_parts(self, vocab_size: int, kv_dim: int, unet_skips: bool) -> None:
        """The value_embeds tables (``transformer.ve``, each (vocab_size, kv_dim): n_kv_head * head_dim)
        and the unet_skips weights (``skip_weights``: block i's output goes into block n_layer-1-i's
        input times weight i); nothing when both are off, so the model's state is the one it was."""
        if self.value_embeds:
            self.transformer["ve"] = nn.ModuleList(
                nn.Embedding(vocab_size, kv_dim) for _ in range(self.value_embeds)
            )
        self.skip_weights = nn.Parameter(torch.ones(self.n_layer // 2)) if unet_skips else None

    def value_tables(self) -> list[int | None]:
        """Which value-embedding table each layer mixes into its values, None for none: table i goes
        to layer i and to its mirror n_layer - value_embeds + i (the first and the last layers)."""
        n, first_mirror = self.value_embeds, self.n_layer - self.value_embeds
        return [i if i < n else i - first_mirror if i >= first_mirror else None for i in range(self.n_layer)]

    def scalar_parameters(self) -> list[nn.Parameter]:
        """The learned mixing scalars (U-net skip weights, value-embedding mixes); [] when none."""
        mixes = [block.attn.ve_mix for block in self.transformer.h if block.attn.ve_mix is not None]
        return ([] if self.skip_weights is None else [self.skip_weights]) + mixes

    def make_head(
        self, n_embd: int, vocab_size: int, tie_weights: bool, logit_softcap: float | None, fp8_head: bool
    ) -> None:
        """The LM head (``lm_head``, n_embd -> vocab_size; tied: the embedding's tensor) and how it runs."""
        check_head(logit_softcap, fp8_head)
        self.logit_softcap, self.fp8_head = logit_softcap, fp8_head
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        if tie_weights:
            self.lm_head.weight = self.transformer.wte.weight  # one tensor for input and output embedding

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(
        self,
        idx: torch.Tensor,
        cache: list[LayerCache] | None = None,
        targets: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
        z_loss: float = 0.0,
    ) -> torch.Tensor:
        """idx: (B, T) token ids -> logits (B, T, vocab_size), or with ``targets`` (B, T) the () loss.

        Without ``cache`` (training), idx is the whole context, at positions 0..T-1. With it (one
        cache per layer, from ``inference.cache.new_cache``), idx holds only the tokens after the
        cached ones, and their positions continue from there. The loss
        (``model.loss.lm_loss``) is computed here so that ``torch.compile`` of the model compiles it in
        the same graph as the head: the upcast and log-softmax of the (B, T, V) logits fuse instead of
        going through memory.
        """
        T = idx.size(1)
        positions = torch.arange if cache is None else cache[0].positions  # cached: continue from them
        pos = positions(T, device=idx.device)  # (T,)
        wpe = self.transformer.wpe
        docs = self.documents(idx, cache)  # (B, T) or None
        x = self.transformer.drop(wpe.embed(self.transformer.wte(idx), pos))  # (B, T, C)
        x = self.transformer.ln_f(self.blocks(x, idx, pos, cache, docs))  # (B, T, C)
        if targets is None:
            return self.head(x)
        if self.grad_checkpointing and self.training:  # the (B*T, V) logits are the largest tensor
            return chunked_lm_loss(x, self.head, self.lm_head.out_features, targets, label_smoothing, z_loss)
        return lm_loss(self.head(x), targets, label_smoothing, z_loss)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """The logits of final hidden states x (..., C) -> (..., V): the LM head (its matmul in FP8 while
        training with ``fp8_head``), then capped to (-c, c) with ``logit_softcap`` c."""
        fp8 = self.fp8_head and self.training  # eval and generation: the plain head, on any device
        logits = fp8_linear(x, self.lm_head.weight) if fp8 else self.lm_head(x)
        return logits if self.logit_softcap is None else softcap(logits, self.logit_softcap)

    def blocks(
        self,
        x: torch.Tensor,
        idx: torch.Tensor,
        pos: torch.Tensor,
        cache: list[LayerCache] | None,
        docs: torch.Tensor | None,
    ) -> torch.Tensor:
        """x (B, T, C), the embedded tokens idx (B, T), through every block -> (B, T, C).

        With ``unet_skips`` the first n_layer // 2 blocks' outputs are kept, and block n_layer-1-i's
        input gets block i's output times its skip weight.
        """
        rotate = self.transformer.wpe.rotate
        values = [table(idx) for table in self.transformer["ve"]] if self.value_embeds else []  # (B, T, kv)
        kept: list[torch.Tensor] = []  # unet_skips: the first half's outputs, (B, T, C) each
        layer_caches = cache or [None] * self.n_layer
        for i, (block, layer_cache, table) in enumerate(
            zip(self.transformer.h, layer_caches, self.value_tables(), strict=True)
        ):
            mirror = self.n_layer - 1 - i  # the first-half block whose output this one gets
            if self.skip_weights is not None and mirror < len(kept):
                x = x + self.skip_weights[mirror] * kept[mirror]
            ve = None if table is None else values[table]
            if self.grad_checkpointing and self.training:
                x = checkpoint(block, x, pos, rotate, layer_cache, docs, ve, use_reentrant=False)
            else:
                x = block(x, pos, rotate, layer_cache, docs, ve)
            if self.skip_weights is not None and i < self.n_layer // 2:
                kept.append(x)
        return x

    def documents(self, idx: torch.Tensor, cache: list[LayerCache] | None) -> torch.Tensor | None:
        """The (B, T) document ids of idx (B, T) with ``doc_mask``, else None; cached: they continue."""
        if not self.doc_mask:
            return None
        starts = idx == self.bos_id  # (B, T)
        return document_ids(starts) if cache is None else cache[0].documents(starts)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count (shared tensors once); ``non_embedding`` leaves out token and position tables."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= sum(p.numel() for p in self.transformer.wte.parameters())
            n -= sum(p.numel() for p in self.transformer.wpe.parameters())
            if self.value_embeds:  # value_embeds tables: token tables too
                n -= sum(p.numel() for p in self.transformer["ve"].parameters())
            if self.lm_head.weight is not self.transformer.wte.weight:
                n -= self.lm_head.weight.numel()
        return n


def softcap(logits: torch.Tensor, cap: float) -> torch.Tensor:
    """cap * tanh(logits / cap), in fp32: about the identity for |z| << cap, never past +-cap (Gemma 2;
    modded-nanogpt's speedrun records)."""
    return cap * torch.tanh(logits.float() / cap)


def check_head(logit_softcap: float | None, fp8_head: bool) -> None:
    """Refuse a cap that is not a positive number, and an fp8_head that is not a boolean."""
    number = isinstance(logit_softcap, int | float) and not isinstance(logit_softcap, bool)
    if logit_softcap is not None and not (number and logit_softcap > 0):
        raise UserError(
            f"model.logit_softcap must be a positive number (e.g. 15.0) or null, got {logit_softcap!r}"
        )
    if not isinstance(fp8_head, bool):
        raise UserError(f"model.fp8_head must be true or false, got {fp8_head!r}")


def check_doc_mask(doc_mask: bool, bos_id: int | None) -> None:
    """Document masking finds documents by their token: refuse it for a vocabulary without one."""
    if not isinstance(doc_mask, bool):
        raise UserError(f"model.doc_mask must be true or false, got {doc_mask!r}")
    if doc_mask and bos_id is None:
        raise UserError(
            "model.doc_mask=true needs a tokenizer with a document token (<|endoftext|>), e.g. "
            "data.tokenizer=bpe; char vocabularies have none"
        )


def check_speedrun_options(n_layer: int, zero_init_proj: bool, value_embeds: int, unet_skips: bool) -> None:
    """Refuse values of zero_init_proj, value_embeds and unet_skips the model cannot be built with."""
    for key, value in dict(zero_init_proj=zero_init_proj, unet_skips=unet_skips).items():
        if not isinstance(value, bool):
            raise UserError(f"model.{key} must be true or false, got {value!r}")
    if isinstance(value_embeds, bool) or not isinstance(value_embeds, int) or value_embeds < 0:
        raise UserError(f"model.value_embeds must be a non-negative integer (0 = off), got {value_embeds!r}")
    if value_embeds > n_layer // 2:
        raise UserError(
            f"model.value_embeds={value_embeds} needs {2 * value_embeds} layers (its tables go to the "
            f"first and the last {value_embeds}), model.n_layer is {n_layer}: "
            f"use model.value_embeds<={n_layer // 2}"
        )


def layer_windows(
    n_layer: int, block_size: int, sliding_window: int | None, pattern: str | None, short_window: int | None
) -> list[int | None]:
    """Each layer's attention window (None: full causal): ``pattern``'s letters tiled over the layers,
    S = ``short_window``, L = ``sliding_window``; every layer ``sliding_window`` without a pattern."""
    check_window_pattern(block_size, sliding_window, pattern, short_window)
    if pattern is None:
        return [sliding_window] * n_layer
    return [short_window if pattern[i % len(pattern)] == "S" else sliding_window for i in range(n_layer)]


def check_window_pattern(
    block_size: int, sliding_window: int | None, pattern: str | None, short_window: int | None
) -> None:
    """Refuse a window_pattern / short_window pair that does not give every layer a window."""
    if pattern is not None and (not isinstance(pattern, str) or not pattern or set(pattern) - {"S", "L"}):
        raise UserError(
            f"model.window_pattern must be a string of S (short window) and L (long) tiled over the layers, "
            f"e.g. SL or SSSL, or null; got {pattern!r}"
        )
    if short_window is not None and (isinstance(short_window, bool) or not isinstance(short_window, int)):
        raise UserError(f"model.short_window must be a positive integer or null, got {short_window!r}")
    has_short = pattern is not None and "S" in pattern
    if has_short and short_window is None:
        raise UserError(
            f"model.window_pattern={pattern} has S layers but model.short_window is null: set it, "
            f"e.g. model.short_window={max(1, (sliding_window or block_size) // 4)}"
        )
    if short_window is not None and not has_short:
        raise UserError(
            f"model.short_window={short_window} is used only by the S layers of model.window_pattern: "
            "set model.window_pattern (e.g. SL), or model.short_window=null"
        )
    long_window, long_name = (
        (sliding_window, "model.sliding_window")
        if sliding_window is not None
        else (block_size, "model.block_size (full causal)")
    )
    if short_window is not None and not 1 <= short_window < long_window:
        raise UserError(
            f"model.short_window must be from 1 to less than the long window, {long_name}={long_window}; "
            f"got {short_window}"
        )


def check_shape(
    vocab_size: int,
    n_layer: int,
    n_head: int,
    n_kv_head: int,
    n_embd: int,
    block_size: int,
    dropout: float,
    sliding_window: int | None,
    head_multiple: int = 1,
) -> None:
    """Refuse impossible model shapes with a message that names the key and a fix that satisfies every
    rule (``head_multiple``: what the head size must be a multiple of, 2 for RoPE)."""
    for key, value in dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size).items():
        if value < 1:
            raise UserError(f"model.{key} must be a positive integer, got {value}")
    if n_kv_head < 1:
        raise UserError(f"model.n_kv_head must be a positive integer or null, got {n_kv_head}")
    if vocab_size < 1:
        raise UserError(f"vocab_size must be positive, got {vocab_size}")
    if n_embd % n_head or (n_embd // n_head) % head_multiple:
        head = head_multiple * max(1, round(n_embd / n_head / head_multiple))
        rope = f", with a head size divisible by {head_multiple} for RoPE" if head_multiple > 1 else ""
        raise UserError(
            f"model.n_embd ({n_embd}) must be divisible by model.n_head ({n_head}){rope}; "
            f"try model.n_embd={n_head * head}"
        )
    if n_head % n_kv_head:
        raise UserError(
            f"model.n_head ({n_head}) must be divisible by model.n_kv_head ({n_kv_head}) "
            "for grouped-query attention"
        )
    if not 0.0 <= dropout < 1.0:
        raise UserError(f"model.dropout must be in [0, 1), got {dropout}")
    if sliding_window is not None and sliding_window < 1:
        raise UserError(f"model.sliding_window must be a positive integer or null, got {sliding_window}")
