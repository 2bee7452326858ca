"""``--help`` of every command, written from its schema: the keys, their defaults and meanings, the same
declarations the checks read (tinygpt/config/commands.py, schema.py)."""

from dataclasses import fields
from pathlib import Path

from tinygpt.config.commands import EXAMPLES, SCHEMAS, USAGE
from tinygpt.config.components import config_groups
from tinygpt.config.keys import rows
from tinygpt.config.schema import TrainSchema, conf_dir

WIDE = 34  # the meanings start in this column (a longer "key: default" pushes its own further)


def group_choices() -> list[tuple[str, list[str]]]:
    """(group, its options) for the training config groups, read from conf/."""
    root = Path(conf_dir())
    return [(group, sorted(p.stem for p in (root / group).glob("*.yaml"))) for group in config_groups()]


def own_rows(command: str, schema: type) -> list[tuple[str, str, str]]:
    """The rows of a command's own keys (bench's, without the training keys it inherits)."""
    inherited = {f.name for f in fields(TrainSchema)} if command == "bench" else set()
    return [row for row in rows(schema) if row[0] not in inherited]


def key_lines(table: list[tuple[str, str, str]]) -> list[str]:
    return [f"  {f'{name}: {default}':<{WIDE}} {meaning}".rstrip() for name, default, meaning in table]


def notes(command: str) -> list[str]:
    """What a command takes beyond its own keys."""
    if command == "train":
        groups = [f"  {group}={' | '.join(options)}" for group, options in group_choices()]
        return ["Config groups (group=option; their keys: group.key=value, e.g. optim.lr=1e-3):", "", *groups]
    if command == "bench":
        return ["Every training key and group works here too: python -m tinygpt.train --help lists them."]
    if command == "eval":
        return [
            "data=GROUP with its keys (data=text data.path=FILE): a split of another corpus, tokenized by",
            "the run's tokenizer, instead of the run's own data.",
        ]
    return []


def help_text(command: str, schema: type | None = None) -> str:
    """The ``--help`` of ``command``; ``schema`` defaults to the command's own."""
    table = own_rows(command, schema or SCHEMAS[command])
    lines = [f"{USAGE[command]}.", "", "Keys and their defaults (override any as key=value):", ""]
    lines += key_lines(table)
    extra = notes(command)
    lines += ["", *extra] if extra else []
    lines += ["", "Examples:", "", *(f"  {example}" for example in EXAMPLES[command])]
    lines += ["", f"Every key: docs/keys.md. Hydra's own flags: python -m tinygpt.{command} --hydra-help"]
    return "\n".join(lines) + "\n"
