"""Configuration: every command's keys declared once (keys.py: the ``key`` helper; schema.py: training;
commands.py: the other commands), and what is derived from them (checks, --help in help.py, docs/keys.md
in reference.py); the command line before Hydra reads it (argv.py; typos answered with the nearest key
or option in typos.py), JSON configs, and reading stored (untrusted) configs."""
