"""Broken, hostile or half-finished files around the data: an untrusted tokenizer.json, a killed
tokenizing run, a damaged cache entry, a corpus too short to train on. Each gets one clear error, or
is cleaned up or rebuilt."""

import os
import re
import resource
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO, TINY, run_cli
from test_data import write

from tinygpt.data import load_tokenizer
from tinygpt.errors import UserError

# --- tokenizer.json: untrusted input ---------------------------------------------------------------

NOT_CHARS = '"chars" is not a string of distinct characters'
BROKEN_TOKENIZERS = {
    "a JSON list": ("[1, 2]", "is neither a TinyGPT char vocabulary nor a Hugging Face tokenizer"),
    "char without chars": ('{"kind": "char"}', NOT_CHARS),
    "chars a number": ('{"kind": "char", "chars": 5}', NOT_CHARS),
    "chars repeated": ('{"kind": "char", "chars": "abca"}', NOT_CHARS),
    "chars empty": ('{"kind": "char", "chars": ""}', "has an empty vocabulary"),
    "HF model a number": ('{"model": 1}', "is not a valid Hugging Face tokenizer"),
    "HF model without vocab": ('{"model": {"type": "BPE"}}', "is not a valid Hugging Face tokenizer"),
    "HF empty vocab": ('{"model": {"type": "BPE", "vocab": {}, "merges": []}}', "has an empty vocabulary"),
    "JSON nested too deep": ("[" * 100_000 + "]" * 100_000, "cannot read tokenizer"),
}


@pytest.mark.parametrize("case", BROKEN_TOKENIZERS)
def test_a_broken_tokenizer_file_is_one_clear_error(case, tmp_path):
    text, message = BROKEN_TOKENIZERS[case]
    path = write(tmp_path / "tokenizer.json", text)
    with pytest.raises(UserError, match=re.escape(message)) as caught:
        load_tokenizer(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_an_oversized_tokenizer_file_is_refused_unread(tmp_path):
    path = tmp_path / "tokenizer.json"
    with open(path, "wb") as f:
        f.truncate((64 << 20) + 1)  # sparse: takes no disk space
    with pytest.raises(UserError, match=r"more than the 64 MiB allowed"):
        load_tokenizer(path)


LOAD = textwrap.dedent(
    """
    import sys
    from tinygpt.data import load_tokenizer
    from tinygpt.errors import UserError

    try:
        load_tokenizer(sys.argv[1])
    except UserError as exc:
        print(exc)
        sys.exit(2)
    """
)


def load_in_child(path) -> subprocess.CompletedProcess:
    """load_tokenizer(path) in a child with 30 s and 2 GiB of address space, so a regression that
    blocks or reads forever fails the test instead of hanging it or filling the memory."""

    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    return subprocess.run(
        [sys.executable, "-c", LOAD, str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=limit_memory,
    )


NOT_FILES = {"a FIFO": os.mkfifo, "a link to /dev/zero": lambda path: path.symlink_to("/dev/zero")}


@pytest.mark.parametrize("case", NOT_FILES)
def test_a_tokenizer_that_is_not_a_regular_file_is_refused_without_reading(case, tmp_path):
    path = tmp_path / "tokenizer.json"
    NOT_FILES[case](path)
    proc = load_in_child(path)
    assert proc.returncode == 2, proc.stderr
    assert f"cannot read tokenizer {path} (not a regular file)" in proc.stdout


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A real (tiny) training run directory."""
    path = tmp_path_factory.mktemp("run")
    proc = run_cli(*TINY, "max_steps=2", "eval_interval=1", f"hydra.run.dir={path}")
    assert proc.returncode == 0, proc.stderr
    return path


@pytest.mark.parametrize("case", ["a JSON list", "HF model without vocab"])
def test_generate_from_a_run_with_a_broken_tokenizer(case, run_dir):
    text, message = BROKEN_TOKENIZERS[case]
    write(run_dir / "tokenizer.json", text)
    proc = run_cli(f"run={run_dir}", "prompt=a", module="tinygpt.generate")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: tokenizer ") and message in line
