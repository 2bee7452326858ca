"""One place per setting: each command's keys are declared once, and --help, docs/keys.md, the checks,
the resume rules and the step's settings all follow those declarations."""

import importlib
import os
import shlex
import subprocess
import sys
from dataclasses import fields, make_dataclass

import pytest
from conftest import REPO, compose_train, run_cli
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from tinygpt.config.argv import report_args, training_args
from tinygpt.config.commands import EXAMPLES, SCHEMAS, GenerateSchema, own_keys
from tinygpt.config.help import help_text, own_rows
from tinygpt.config.keys import CHANGEABLE, ON_RESUME, POSITIVE, check_values, checks_of, key
from tinygpt.config.reference import reference
from tinygpt.config.schema import TrainSchema, conf_dir
from tinygpt.errors import UserError
from tinygpt.training.resume import changeable
from tinygpt.training.step import StepSettings


@pytest.mark.parametrize("command", SCHEMAS)
def test_help_lists_every_key_with_its_default_and_meaning(command):
    proc = run_cli("--help", module=f"tinygpt.{command}")
    assert proc.returncode == 0, proc.stderr
    rows = own_rows(command, SCHEMAS[command])
    assert rows and {name for name, _, _ in rows} <= set(own_keys(command))
    for name, default, meaning in rows:
        line = next(line for line in proc.stdout.splitlines() if line.strip().startswith(f"{name}: "))
        assert line.split()[1] == default.split()[0] and line.endswith(meaning), line


@pytest.mark.parametrize("command", SCHEMAS)
def test_help_comes_without_importing_torch_and_ends_with_three_examples_that_compose(command):
    """--help in well under a second: the command's module imports torch only to do its work."""
    program = (
        "import contextlib, io, runpy, sys\n"
        f"sys.argv = ['{command}', '--help']\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        f"    runpy.run_module('tinygpt.{command}', run_name='__main__')\n"
        "print(out.getvalue() + ('torch imported' if 'torch' in sys.modules else 'no torch'))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", program], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith("no torch\n") and "_target_" not in proc.stdout
    examples = proc.stdout.split("\nExamples:\n\n")[1].split("\n\n")[0].splitlines()
    assert [line.strip() for line in examples] == EXAMPLES[command]
    for example in EXAMPLES[command]:
        words = shlex.split(example.split("|")[-1].split("#")[0])[3:]  # after python -m tinygpt.X
        typed = training_args(words) if command == "train" else own_arguments(command, words)
        compose_command(command, [w for w in typed if w != "-m"], multirun="-m" in words)


def own_arguments(command: str, words: list[str]) -> list[str]:
    if command == "report":
        return report_args(words)
    module = importlib.import_module(f"tinygpt.{command}")
    return module.bench_args(words) if command == "bench" else module.arguments(words)


def compose_command(command: str, overrides: list[str], multirun: bool) -> None:
    """Compose the command's config with ``overrides`` (a sweep's: each job's) as the command would."""
    with initialize_config_dir(version_base="1.3", config_dir=conf_dir()):
        if not multirun:
            compose(command, overrides=overrides)
            return
        for job in BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(overrides), None)[0]:
            compose(command, overrides=job)


def test_a_key_added_to_a_schema_shows_in_help_and_is_checked():
    extended = make_dataclass(
        "Extended",
        [("beams", int, key(4, "beams kept by beam search", POSITIVE))],
        bases=(GenerateSchema,),
    )
    assert "  beams: 4" in help_text("generate", extended) and "beams kept by beam search" in help_text(
        "generate", extended
    )
    with pytest.raises(UserError, match="beams must be a positive integer, got 0"):
        check_values(OmegaConf.create({"beams": 0}), {"beams": checks_of(extended)["beams"]})


def test_docs_keys_md_is_what_the_generator_prints():
    assert (REPO / "docs" / "keys.md").read_text(encoding="utf-8") == reference(), (
        "docs/keys.md is out of date: python -m tinygpt.config.reference > docs/keys.md"
    )


def test_the_reference_has_every_commands_keys_and_the_groups_keys():
    text = reference()
    for command in SCHEMAS:
        assert f"## {command}" in text
        assert all(f"| `{name}` |" in text for name, _, _ in own_rows(command, SCHEMAS[command]))
    assert "| `model.n_layer` | `4` |" in text and "| `optim.lr` | `3.0e-4` |" in text


def test_the_step_settings_default_to_the_training_configs_values():
    cfg = compose_train(tiny=False)
    step_keys = [f.name for f in fields(StepSettings)]
    assert set(step_keys) >= {"grad_accum_steps", "precision", "grad_clip", "ema_decay"}
    assert {k: getattr(StepSettings(), k) for k in step_keys} == {k: cfg[k] for k in step_keys}


def test_what_a_resume_may_change_follows_the_declarations():
    declared = {f.name for f in fields(TrainSchema) if f.metadata.get(ON_RESUME) == CHANGEABLE}
    assert {"max_steps", "eval_interval", "device", "logger"} <= declared
    assert all(changeable(name) for name in declared) and changeable("logger.project")
    assert not any(
        changeable(name) for name in ("seed", "batch_size", "precision", "model.n_layer", "optim.lr")
    )
