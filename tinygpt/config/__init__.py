"""Configuration: where the config tree lives and its schemas, the command line before Hydra reads it,
JSON configs, and reading stored (untrusted) configs."""
