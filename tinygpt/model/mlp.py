"""Feed-forward blocks: GPT-2's GELU MLP, the squared-ReLU MLP (Primer, modded-nanogpt), Llama's SwiGLU."""

import torch
import torch.nn.functional as F
from torch import nn


class GeluMLP(nn.Module):
    """GPT-2 MLP: n_embd -> expansion*n_embd -> GELU -> n_embd (names ``c_fc``, ``c_proj`` as in GPT-2)."""

    def __init__(self, n_embd: int, bias: bool = True, dropout: float = 0.0, expansion: int = 4):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, expansion * n_embd, bias=bias)
        self.c_proj = nn.Linear(expansion * n_embd, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, T, C)
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class ReLU2MLP(GeluMLP):
    """Squared-ReLU MLP: n_embd -> expansion*n_embd -> relu(.)^2 -> n_embd, GeluMLP's layers and names
    with another activation (So et al. 2021, "Primer"; the activation of modded-nanogpt's records)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, T, C)
        return self.dropout(self.c_proj(F.relu(self.c_fc(x)).square()))


def swiglu_hidden_size(n_embd: int, multiple_of: int) -> int:
    """Llama's rule: 2/3 of 4*n_embd (same parameter budget as a 4x GELU MLP), rounded up."""
    hidden = int(2 * 4 * n_embd / 3)
    return multiple_of * -(-hidden // multiple_of)


class SwiGLU(nn.Module):
    """Llama MLP: down(silu(gate(x)) * up(x)), named ``gate_proj``, ``up_proj``, ``down_proj`` as in Llama."""

    def __init__(self, n_embd: int, bias: bool = False, dropout: float = 0.0, multiple_of: int = 64):
        super().__init__()
        hidden = swiglu_hidden_size(n_embd, multiple_of)
        self.gate_proj = nn.Linear(n_embd, hidden, bias=bias)
        self.up_proj = nn.Linear(n_embd, hidden, bias=bias)
        self.down_proj = nn.Linear(hidden, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, T, C)
        return self.dropout(self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x)))
