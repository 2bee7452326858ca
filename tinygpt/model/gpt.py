"""The GPT: token embedding -> n_layer x Block(attention, MLP) -> final norm -> LM head.

One class covers GPT-2 (LayerNorm, learned positions, GELU, biases) and Llama-style models (RMSNorm,
RoPE, SwiGLU, no biases): norm, positions and MLP are passed in as factories built by Hydra from
``conf/model/{norm,pos,mlp}``. Parameter names follow GPT-2 (``transformer.wte``, ``h.N.attn.c_attn``,
``ln_f``, ``lm_head``) so foreign checkpoints map on by name.
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from tinygpt.errors import UserError

NormFactory = Callable[[int], nn.Module]  # dim -> module
PosFactory = Callable[..., nn.Module]  # (block_size, n_embd, head_dim) -> LearnedPositions | RoPE
MlpFactory = Callable[..., nn.Module]  # (n_embd, bias=, dropout=) -> module


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
        self.sliding_window = sliding_window

    def forward(self, x: torch.Tensor, pos: torch.Tensor, rotate: Callable) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(
            [self.n_head * self.head_dim, self.n_kv_head * self.head_dim, self.n_kv_head * self.head_dim],
            dim=-1,
        )
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)
        k = k.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, nkv, T, hd)
        v = v.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, nkv, T, hd)
        q, k = rotate(self.q_norm(q), self.k_norm(k), pos)
        mask = None if self.sliding_window is None else window_mask(pos, pos, self.sliding_window)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=mask is None,
            enable_gqa=self.n_kv_head != self.n_head,
        )  # (B, nh, T, hd)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.resid_dropout(self.c_proj(y))


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

    def forward(self, x: torch.Tensor, pos: torch.Tensor, rotate: Callable) -> torch.Tensor:
        if self.parallel:
            return x + self.attn(self.ln_1(x), pos, rotate) + self.mlp(self.ln_2(x))
        x = x + self.attn(self.ln_1(x), pos, rotate)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
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
    ):
        super().__init__()
        n_kv_head = n_head if n_kv_head is None else n_kv_head
        check_shape(vocab_size, n_layer, n_head, n_kv_head, n_embd, block_size, dropout, sliding_window)
        self.block_size = block_size
        self.n_layer = n_layer
        self.grad_checkpointing = False  # set by the loop: recompute each block in backward to save memory
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(vocab_size, n_embd),
                wpe=pos(block_size, n_embd, n_embd // n_head),  # learned table, or RoPE (no parameters)
                drop=nn.Dropout(dropout),
                h=nn.ModuleList(
                    Block(
                        n_embd,
                        CausalSelfAttention(
                            n_embd, n_head, n_kv_head, norm, bias, dropout, qk_norm, sliding_window
                        ),
                        mlp(n_embd, bias=bias, dropout=dropout),
                        norm,
                        parallel_block,
                    )
                    for _ in range(n_layer)
                ),
                ln_f=norm(n_embd),
            )
        )
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        if tie_weights:
            self.lm_head.weight = self.transformer.wte.weight  # one tensor for input and output embedding
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith(("c_proj.weight", "down_proj.weight")):  # residual projections, GPT-2 paper
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx: (B, T) token ids -> logits (B, T, vocab_size)."""
        T = idx.size(1)
        pos = torch.arange(T, device=idx.device)  # (T,)
        wpe = self.transformer.wpe
        x = self.transformer.drop(wpe.embed(self.transformer.wte(idx), pos))  # (B, T, C)
        for block in self.transformer.h:
            if self.grad_checkpointing and self.training:
                x = checkpoint(block, x, pos, wpe.rotate, use_reentrant=False)
            else:
                x = block(x, pos, wpe.rotate)
        return self.lm_head(self.transformer.ln_f(x))

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count (shared tensors once); ``non_embedding`` leaves out token and position tables."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= sum(p.numel() for p in self.transformer.wte.parameters())
            n -= sum(p.numel() for p in self.transformer.wpe.parameters())
            if self.lm_head.weight is not self.transformer.wte.weight:
                n -= self.lm_head.weight.numel()
        return n

    @torch.no_grad()
    def generate(
        self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None
    ) -> torch.Tensor:
        """Append ``max_new_tokens`` sampled tokens to idx (B, T); the context slides past block_size."""
        for _ in range(max_new_tokens):
            logits = self(idx[:, -self.block_size :])[:, -1, :]  # (B, V)
            if temperature == 0:
                nxt = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                nxt = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)
            idx = torch.cat([idx, nxt], dim=1)
        return idx


def check_shape(
    vocab_size: int,
    n_layer: int,
    n_head: int,
    n_kv_head: int,
    n_embd: int,
    block_size: int,
    dropout: float,
    sliding_window: int | None,
) -> None:
    """Refuse impossible model shapes with a message that names the key and the fix."""
    for key, value in dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size).items():
        if value < 1:
            raise UserError(f"model.{key} must be a positive integer, got {value}")
    if n_kv_head < 1:
        raise UserError(f"model.n_kv_head must be a positive integer or null, got {n_kv_head}")
    if vocab_size < 1:
        raise UserError(f"vocab_size must be positive, got {vocab_size}")
    if n_embd % n_head:
        raise UserError(
            f"model.n_embd ({n_embd}) must be divisible by model.n_head ({n_head}); "
            f"try model.n_embd={n_head * max(1, round(n_embd / n_head))}"
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
