"""One place per setting: each command's keys are declared once, and --help, docs/keys.md, the checks,
the resume rules and the step's settings all follow those declarations."""

from dataclasses import fields, make_dataclass

import pytest
from conftest import REPO, compose_train, run_cli
from omegaconf import OmegaConf

from tinygpt.config.commands import SCHEMAS, GenerateSchema, own_keys
from tinygpt.config.help import help_text, own_rows
from tinygpt.config.keys import CHANGEABLE, ON_RESUME, POSITIVE, check_values, checks_of, key
from tinygpt.config.reference import reference
from tinygpt.config.schema import TrainSchema
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
