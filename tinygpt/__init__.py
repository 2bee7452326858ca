"""TinyGPT: train small GPT-style language models, configured with Hydra, in plain PyTorch."""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``tinygpt.load`` (model + tokenizer of a run), imported on first use: it pulls in torch and Hydra."""
    if name == "load":
        from tinygpt.inference.run import load

        return load
    raise AttributeError(f"module 'tinygpt' has no attribute {name!r}")
