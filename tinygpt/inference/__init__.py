"""Inference: loading a run to sample from, the KV cache, the decode loop and the samplers."""
