"""Position information: a learned table (GPT-2) or rotary embeddings (RoPE, Llama).

Both expose the same two hooks so the model never branches on which one it has:
- ``embed(x, pos)`` adds position information to the token embeddings (learned) or not (RoPE);
- ``rotate(q, k, pos)`` rotates queries and keys inside attention (RoPE) or not (learned).

``max_positions`` says how far positions can go: a learned table stops at block_size; RoPE has no
limit (``extend`` grows its tables), which is what lets generation run on past block_size.
"""

import torch
from torch import nn

from tinygpt.errors import UserError


class LearnedPositions(nn.Embedding):
    """GPT-2's ``wpe``: one learned vector per absolute position."""

    def __init__(self, block_size: int, n_embd: int, head_dim: int):
        super().__init__(block_size, n_embd)
        self.max_positions: int | None = block_size  # a table has no row for position block_size

    def embed(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return x + super().forward(pos)  # (B, T, C) + (T, C)

    def rotate(
        self, q: torch.Tensor, k: torch.Tensor, pos: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return q, k


class RoPE(nn.Module):
    """Rotary position embedding (Su et al. 2021), half-split layout as in Llama/HF ``rotate_half``.

    No parameters: the cos/sin tables are non-persistent buffers, so checkpoints do not carry them.
    """

    max_positions: int | None = None  # any position can be rotated once ``extend`` has built its table
    head_multiple = 2  # it rotates pairs of a head's dimensions: GPT checks the head size against this

    def __init__(self, block_size: int, n_embd: int, head_dim: int, base: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise UserError(f"RoPE needs an even head size (model.n_embd / model.n_head), got {head_dim}")
        self.base = base
        self.head_dim = head_dim
        cos, sin = self._tables(block_size)
        self.register_buffer("cos", cos, persistent=False)  # (block_size, head_dim)
        self.register_buffer("sin", sin, persistent=False)

    def _tables(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        inv_freq = 1.0 / self.base ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim)
        angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)  # (L, hd/2)
        angles = torch.cat([angles, angles], dim=-1)  # (L, hd)
        return angles.cos(), angles.sin()

    def extend(self, length: int) -> None:
        """Grow the tables to cover positions < ``length`` (generation past block_size); never shrinks."""
        if length > self.cos.size(0):
            cos, sin = self._tables(length)
            self.cos = cos.to(self.cos.device, self.cos.dtype)
            self.sin = sin.to(self.sin.device, self.sin.dtype)

    def embed(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return x

    def rotate(
        self, q: torch.Tensor, k: torch.Tensor, pos: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """q: (B, nh, T, hd), k: (B, nkv, T, hd), pos: (T,) absolute positions."""
        cos, sin = self.cos[pos].to(q.dtype), self.sin[pos].to(q.dtype)  # (T, hd)
        return _apply_rotary(q, cos, sin), _apply_rotary(k, cos, sin)


def _apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return x * cos + rotated * sin
