"""The key reference, docs/keys.md, written from the same declarations as the checks and ``--help``:

    python -m tinygpt.config.reference > docs/keys.md

Every command's keys come from its schema; the config groups' keys from their files in conf/ (each
option's first comment line, and each key's value and end-of-line comment).
"""

import re
import sys
from pathlib import Path

from tinygpt.config.commands import SCHEMAS, USAGE
from tinygpt.config.components import config_groups
from tinygpt.config.help import notes, own_rows
from tinygpt.config.schema import conf_dir

COMMAND = "python -m tinygpt.config.reference > docs/keys.md"
YAML_KEY = re.compile(r"^(?P<key>[A-Za-z_]\w*):\s*(?P<value>[^#]*?)\s*(?:#\s*(?P<comment>.*))?$")
GROUPS_INTRO = (
    "Pick an option with `group=option`; set its keys with `group.key=value` "
    "(e.g. `model=llama model.n_layer=6 optim.lr=1e-3`)."
)
HIDDEN = ("defaults", "_target_", "_partial_")  # wiring, not settings


def cell(text: str) -> str:
    """``text`` safe inside a Markdown table cell."""
    return text.replace("|", "\\|")


def table(rows: list[tuple[str, str, str]]) -> list[str]:
    lines = ["| key | default | meaning |", "|---|---|---|"]
    return lines + [f"| `{key}` | `{cell(default)}` | {cell(meaning)} |" for key, default, meaning in rows]


def option_rows(path: Path) -> tuple[str, list[tuple[str, str, str]]]:
    """A group option's description (its first comment line) and its top-level keys."""
    lines = path.read_text(encoding="utf-8").splitlines()
    comments = [
        line.lstrip("# ").strip() for line in lines if line.startswith("#") and "@package" not in line
    ]
    about = comments[0] if comments else ""
    rows = []
    for line in lines:
        match = YAML_KEY.match(line)
        if match and match["key"] not in HIDDEN and match["value"]:
            rows.append((match["key"], match["value"], match["comment"] or ""))
    return about, rows


def group_section(group: str) -> list[str]:
    lines = [f"### `{group}`", ""]
    for path in sorted((Path(conf_dir()) / group).glob("*.yaml")):
        about, rows = option_rows(path)
        lines += [f"`{group}={path.stem}`: {about}".rstrip(": "), ""]
        if rows:
            prefix = group.replace("/", ".")
            lines += ["| key | value | meaning |", "|---|---|---|"]
            lines += [f"| `{prefix}.{key}` | `{cell(value)}` | {cell(note)} |" for key, value, note in rows]
            lines.append("")
    return lines


def command_section(command: str) -> list[str]:
    usage, what = USAGE[command].split(": ", 1)
    lines = [f"## {command}", "", f"`{usage}`: {what}.", "", *table(own_rows(command, SCHEMAS[command])), ""]
    extra = notes(command) if command != "train" else []
    return lines + ([*extra, ""] if extra else [])


def reference() -> str:
    lines = [
        "# Keys",
        "",
        "Every key of every command, with its default and meaning. Written by "
        f"`{COMMAND}` from the commands' declarations (tinygpt/config/schema.py, commands.py) and the "
        "config groups in conf/; a test fails when this page and the generator differ. Each command's "
        "`--help` prints its part.",
        "",
    ]
    for command in SCHEMAS:
        lines += command_section(command)
        if command == "train":
            lines += ["### Config groups", "", GROUPS_INTRO, ""]
            for group in config_groups():
                lines += group_section(group)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(reference())
