"""Every training command in the README is one the command line accepts as written: it composes,
with its flat keys translated and its JSON configs spliced, and names only keys the config has.
(Running each one would take hours; the Python example runs in full in test_generate.py.)"""

import re
import shlex

import pytest
from conftest import REPO
from hydra import compose, initialize_config_dir

from tinygpt.argv import check_keys, translate_argv
from tinygpt.config import conf_dir
from tinygpt.jsonconfig import splice_json_config

COMMAND = re.compile(r"^ {4}python -m tinygpt\.train\b(.*)$", re.MULTILINE)


def readme_commands() -> list[str]:
    lines = [m.group(1).split("#", 1)[0].strip() for m in COMMAND.finditer((REPO / "README.md").read_text())]
    # sweeps (-m) and placeholders (<date>, ...) are exercised by test_sweeps.py and test_jsonconfig.py
    return [line for line in lines if "-m" not in line.split() and "<" not in line and "..." not in line]


def test_the_readme_has_training_commands():
    assert len(readme_commands()) >= 25


@pytest.mark.parametrize("line", readme_commands())
def test_a_readme_command_composes(line, monkeypatch):
    monkeypatch.chdir(REPO)  # config_json paths in the README are relative to the checkout
    args = [a for a in shlex.split(line) if a not in ("--cfg", "job")]
    args = splice_json_config(translate_argv(args))
    check_keys(args)
    with initialize_config_dir(version_base="1.3", config_dir=conf_dir()):
        compose("train", overrides=args)
