"""Evaluation: scoring a split or a text (loss, perplexity, bits per byte) and comparing runs."""
