"""GPT and its swappable parts (norms come straight from torch.nn)."""

from tinygpt.model.build import build_gpt
from tinygpt.model.gpt import GPT, Block, CausalSelfAttention
from tinygpt.model.mlp import GeluMLP, ReLU2MLP, SwiGLU
from tinygpt.model.pos import LearnedPositions, RoPE

__all__ = [
    "build_gpt",
    "GPT",
    "Block",
    "CausalSelfAttention",
    "GeluMLP",
    "ReLU2MLP",
    "SwiGLU",
    "LearnedPositions",
    "RoPE",
]
