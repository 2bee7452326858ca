"""Hugging Face transformers interop: the config and weight mapping, export to a folder, init_from."""
