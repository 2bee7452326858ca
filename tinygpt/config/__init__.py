"""Configuration: every command's keys declared once (keys.py: the ``key`` helper; schema.py: training;
commands.py: the other commands), and what is derived from them (checks, --help in help.py, docs/keys.md
in reference.py); the command line before Hydra reads it (argv.py; typos answered with the nearest key
or option in typos.py), JSON configs, and reading stored (untrusted) configs."""

# Importing the package registers the schemas conf/*.yaml name first in their defaults (train_schema,
# generate_schema, ...), so ``import tinygpt.config`` is all that composing conf/ from one's own Python
# needs before ``hydra.compose`` (docs/configuration.md).
from tinygpt.config import commands, schema  # noqa: E402, F401
