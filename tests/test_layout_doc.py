"""docs/layout.md's tree stays true: every folder it lists exists, and every package folder of tinygpt/
is listed, so a newcomer reading it never looks for a folder that is gone or misses one that came."""

import re
from pathlib import Path

from conftest import REPO

LAYOUT = REPO / "docs" / "layout.md"
FOLDER_LINE = re.compile(r"^(?P<indent> *)(?P<name>[\w.-]+)/\s+\S")  # "  model/    what lives there"


def tree_lines() -> list[str]:
    """The lines of the page's first fenced block: the tree."""
    text = LAYOUT.read_text(encoding="utf-8")
    found = re.search(r"^```[^\n]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert found, f"{LAYOUT} has no fenced block with the tree"
    return found[1].splitlines()


def listed_folders() -> list[Path]:
    """The folders of the tree, as paths relative to the checkout; two spaces of indent per level."""
    folders, stack = [], []
    for line in tree_lines():
        match = FOLDER_LINE.match(line)
        assert match, f"not a `folder/  what lives there` line in {LAYOUT.name}: {line!r}"
        depth = len(match["indent"]) // 2
        assert depth <= len(stack), f"{line!r} is indented deeper than the folder above it"
        stack = [*stack[:depth], match["name"]]
        folders.append(Path(*stack))
    return folders


def package_folders() -> set[Path]:
    """Every folder of the package that is a Python package (holds an __init__.py), tinygpt/ included."""
    return {p.parent.relative_to(REPO) for p in (REPO / "tinygpt").rglob("__init__.py")}


def test_every_folder_in_the_layout_exists():
    folders = listed_folders()
    assert Path("tinygpt") in folders and len(folders) > len(package_folders())
    missing = [str(f) for f in folders if not (REPO / f).is_dir()]
    assert not missing, f"{LAYOUT.name} lists folders that do not exist: {missing}"


def test_every_package_folder_is_in_the_layout():
    unlisted = sorted(str(f) for f in package_folders() - set(listed_folders()))
    assert not unlisted, f"package folders missing from {LAYOUT.name}'s tree: {unlisted}"


def test_the_layout_states_the_command_rule():
    text = " ".join(LAYOUT.read_text(encoding="utf-8").split())
    assert "holds its entry point and argument handling" in text
    assert "No command imports another" in text
