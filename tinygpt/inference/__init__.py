"""Inference: loading a run to sample from, the KV cache, the decode loop, the samplers, and the decoder
the training loop's repeated samples keep."""
