"""TinyGPT: train small GPT-style language models, configured with Hydra, in plain PyTorch."""

__version__ = "0.1.0"
