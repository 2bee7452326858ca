"""An installed wheel carries the config tree and the embedded corpus, not the build-time tools: it
trains from any directory, and building it leaves the checkout as it was."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, TINY


def not_source(folder: str, names: list[str]) -> set[str]:
    """What a checkout may hold beside its source (.git and the .gitignore patterns), not copied; a
    pattern that starts with "/" (``/hf/``) holds at the top of the checkout only, as in git."""
    lines = [line.strip() for line in (REPO / ".gitignore").read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    top = Path(folder) == REPO
    anywhere = [".git", *(p.rstrip("/") for p in patterns if not p.startswith("/"))]
    at_top = [p.strip("/") for p in patterns if p.startswith("/")] if top else []
    return shutil.ignore_patterns(*anywhere, *at_top)(folder, names)


def build_outputs() -> set[str]:
    """The setuptools build folders in the checkout: build/ and *.egg-info."""
    return {p.name for p in [REPO / "build", *REPO.glob("*.egg-info")] if p.exists()}


@pytest.mark.slow
def test_wheel_trains_from_another_directory(tmp_path):
    source, wheels = tmp_path / "source", tmp_path / "wheels"
    site, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    before = build_outputs()
    shutil.copytree(REPO, source, ignore=not_source)  # setuptools builds in-tree
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", wheels, source],
        check=True,
        capture_output=True,
    )
    assert build_outputs() == before, "building the wheel wrote into the checkout"
    (wheel,) = wheels.glob("tinygpt-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"tinygpt/corpus/tiny_corpus.txt", "tinygpt/conf/train.yaml"} <= set(names)
    assert not [n for n in names if "tiny_corpus.py" in n or n.startswith("tools/")], names
    subprocess.run([*pip, "install", "--no-deps", "--target", site, wheel], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import tinygpt.config.schema as c, tinygpt.data as d; print(c.conf_dir()); "
            "print(d.embedded_corpus_path())",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert all(path.startswith(str(site)) for path in where), where
    proc = subprocess.run(
        [sys.executable, "-m", "tinygpt.train", *TINY, "max_steps=2", "hydra.run.dir=run"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert (elsewhere / "run" / "ckpt.pt").is_file()


def test_a_clone_in_a_folder_named_tinygpt_does_not_shadow_the_package(tmp_path):
    """Python started from the clone's parent folder finds the folder `tinygpt` first; as a namespace
    package it would hide the real one (`cannot import name ... (unknown location)`)."""
    (tmp_path / "tinygpt").symlink_to(REPO, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the environment as installed
    code = "from tinygpt.data import load_tokenizer; import tinygpt; print(tinygpt.__file__)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("__init__.py")


FAKE_PYTHON = """#!/bin/sh
# `python -m venv DIR`: DIR/bin/python, which notes in its log that pip ran
mkdir -p "$3/bin"
printf '#!/bin/sh\\necho "pip ran: $*"\\n' > "$3/bin/python"
chmod +x "$3/bin/python"
"""


def test_make_says_what_the_install_is_doing_before_pip_runs(tmp_path):
    """`make train` on a fresh clone spends minutes in pip --quiet: a line says so before it starts (the
    Makefile's own recipe, run with a stand-in python so nothing is installed)."""
    fake = tmp_path / "python3"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    venv = tmp_path / "venv"
    proc = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(REPO),
            f"VENV={venv}",
            f"PYTHON={fake}",
            f"{venv}/.installed",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("installing", "pip ran"))]
    assert (
        lines[0]
        == f"installing TinyGPT, torch and the other dependencies into {venv} (a few minutes the first time)"
    )
    assert lines[1].startswith("pip ran: -m pip install") and len(lines) == 2
    assert proc.stdout.splitlines()[-1] == f"installed into {venv}"
