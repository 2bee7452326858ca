"""Broken, hostile or half-finished files around the data: an untrusted tokenizer.json, a killed
tokenizing run or download, a damaged cache entry, a corpus too short to train on, a file where a
cache folder should be. Each gets one clear error, or is cleaned up or rebuilt."""

import json
import logging
import os
import re
import resource
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from conftest import REPO, TINY, run_cli
from test_data import CHAR, entries, write

from tinygpt.data import load_downloaded, load_text_data, load_tokenizer
from tinygpt.data.download import fetch
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


# --- the token cache: what a killed build leaves behind -------------------------------------------

# Starts tokenizing argv[1] into the cache argv[2], writes a little, says so, and hangs there.
HANGING_BUILD = textwrap.dedent(
    """
    import sys, time
    import tinygpt.data.cache as cache
    from tinygpt.data import CharTokenizer, load_text_data

    def write_then_hang(path, *args):
        path.write_bytes(b"ids" * 10_000)
        print("building", flush=True)
        time.sleep(600)

    cache._encode_to = write_then_hang
    load_text_data(CharTokenizer.train, sys.argv[1], cache_dir=sys.argv[2])
    """
)


def test_a_killed_build_is_cleaned_up_later_but_a_live_one_is_left_alone(tmp_path):
    cache = tmp_path / "cache"
    corpus, other = write(tmp_path / "a.txt", "one text\n" * 50), write(tmp_path / "b.txt", "another\n" * 50)
    builder = subprocess.Popen(
        [sys.executable, "-c", HANGING_BUILD, str(corpus), str(cache)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert builder.stdout.readline() == "building\n"
        (temporary,) = entries(cache)  # .<key>.<random>.tmp, holding the ids written so far
        load_text_data(CHAR, other, cache_dir=cache)  # another entry, while the build is alive
        assert (cache / "tokens" / temporary / "train.bin").is_file()
    finally:
        builder.kill()  # SIGKILL: no cleanup of its own
        builder.wait()
    data = load_text_data(CHAR, other, cache_dir=cache)
    (entry,) = entries(cache)  # the leftover is gone
    assert not entry.startswith(".") and data.tokenizer.decode(data.train).startswith("another\n")


# --- the token cache: damaged entries ---------------------------------------------------------------


def replace_with_folder(path):
    path.unlink()
    path.mkdir()


def cut_one_token(path):
    os.truncate(path, path.stat().st_size - 2)


def add_one_token(path):
    with open(path, "ab") as f:
        f.write(b"\0\0")


def replace_entry_with_a_file(entry):
    shutil.rmtree(entry)
    entry.write_text("not an entry")


DAMAGE = {
    "meta.json deleted": lambda entry: (entry / "meta.json").unlink(),
    "meta.json not JSON": lambda entry: (entry / "meta.json").write_text("{"),
    "meta.json without counts": lambda entry: (entry / "meta.json").write_text('{"dtype": "uint16"}'),
    "meta.json a folder": lambda entry: replace_with_folder(entry / "meta.json"),
    "train.bin deleted": lambda entry: (entry / "train.bin").unlink(),
    "train.bin a token short": lambda entry: cut_one_token(entry / "train.bin"),
    "val.bin a token long": lambda entry: add_one_token(entry / "val.bin"),
    "tokenizer.json broken": lambda entry: (entry / "tokenizer.json").write_text("[]"),
    "the entry a file": replace_entry_with_a_file,
}


@pytest.mark.parametrize("case", DAMAGE)
def test_a_damaged_cache_entry_is_built_again(case, tmp_path, caplog):
    corpus, cache = write(tmp_path / "a.txt", "some text to keep\n" * 40), tmp_path / "cache"
    first = load_text_data(CHAR, corpus, cache_dir=cache, memmap=False)
    (entry,) = entries(cache)
    DAMAGE[case](cache / "tokens" / entry)
    with caplog.at_level(logging.WARNING, logger="tinygpt.data.cache"):
        again = load_text_data(CHAR, corpus, cache_dir=cache)
    assert f"token cache entry {cache / 'tokens' / entry} is damaged" in caplog.text
    assert np.array_equal(again.train, first.train) and np.array_equal(again.val, first.val)
    assert entries(cache) == [entry]
    meta = json.loads((cache / "tokens" / entry / "meta.json").read_text())
    assert meta["train_tokens"] == len(first.train)


def test_a_file_where_the_cache_folders_should_be_is_named(tmp_path):
    corpus = write(tmp_path / "a.txt", "some text\n" * 20)
    write(tmp_path / "cache" / "tokens", "")
    with pytest.raises(
        UserError, match=f"{re.escape(str(tmp_path / 'cache' / 'tokens'))} is a file; delete it"
    ):
        load_text_data(CHAR, corpus, cache_dir=tmp_path / "cache")
    write(tmp_path / "not_a_folder", "")
    with pytest.raises(UserError, match="cannot create the token cache folder .*not_a_folder/tokens"):
        load_text_data(CHAR, corpus, cache_dir=tmp_path / "not_a_folder")


# --- a corpus too short to train on --------------------------------------------------------------------


def test_a_corpus_too_short_for_one_window_is_not_cached(tmp_path):
    corpus = write(tmp_path / "a.txt", "short text\n" * 10)  # 110 tokens: 99 train, 11 validation
    message = "the validation split has 11 tokens, too few for one window of model.block_size=64"
    with pytest.raises(UserError, match=message):
        load_text_data(CHAR, corpus, cache_dir=tmp_path, min_tokens=65)
    assert entries(tmp_path) == []  # no entry, no temporary folder
    with pytest.raises(UserError, match="the train split has 1 tokens"):  # even without min_tokens
        load_text_data(CHAR, write(tmp_path / "b.txt", "s"), cache_dir=tmp_path, val_path=corpus)
    assert entries(tmp_path) == []


def test_an_entry_built_for_a_smaller_block_size_is_kept(tmp_path, caplog):
    corpus = write(tmp_path / "a.txt", "short text\n" * 10)
    load_text_data(CHAR, corpus, cache_dir=tmp_path, min_tokens=9)
    with (
        caplog.at_level(logging.INFO, logger="tinygpt.data.cache"),
        pytest.raises(UserError, match="the validation split has 11 tokens"),
    ):
        load_text_data(CHAR, corpus, cache_dir=tmp_path, min_tokens=65)
    assert "using token cache" in caplog.text and "tokenizing" not in caplog.text
    assert len(entries(tmp_path)) == 1


# --- downloads: what a killed download leaves behind, a file where the folder should be -------------

# Fetches the URL argv[1] into the cache argv[2]; from a FIFO that is never closed, it hangs mid-way.
DOWNLOAD = (
    "import sys, pathlib, tinygpt.data.download as d; d.fetch(sys.argv[1], None, pathlib.Path(sys.argv[2]))"
)


def partial_downloads(cache) -> list[str]:
    return sorted(p.name for p in (cache / "downloads").glob(".*.tmp"))


def test_a_killed_download_is_cleaned_up_later_but_a_live_one_is_left_alone(tmp_path):
    cache, source = tmp_path / "cache", tmp_path / "endless.txt"
    other = write(tmp_path / "other.txt", "another text\n" * 50)
    os.mkfifo(source)
    stream = os.open(source, os.O_RDWR)  # a writer that never ends the text: the download waits for more
    os.write(stream, b"the first part of a long text\n")
    downloader = subprocess.Popen([sys.executable, "-c", DOWNLOAD, f"file://{source}", str(cache)], cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while not (cache / "downloads").is_dir() or not partial_downloads(cache):
            assert downloader.poll() is None and time.monotonic() < deadline, "the download did not start"
            time.sleep(0.05)
        (partial,) = partial_downloads(cache)
        fetch(f"file://{other}", None, cache)  # another download, while the first one is alive
        assert partial_downloads(cache) == [partial]
    finally:
        downloader.kill()  # SIGKILL: no cleanup of its own
        downloader.wait()
        os.close(stream)
    copy = fetch(f"file://{other}", None, cache)  # any later fetch, even of a file already there
    assert partial_downloads(cache) == []
    assert [p.name for p in (cache / "downloads").iterdir()] == [copy.name]
    assert copy.read_text() == "another text\n" * 50


def test_a_file_where_the_download_folder_should_be_is_named(tmp_path):
    corpus, cache = write(tmp_path / "corpus.txt", "some text\n" * 20), tmp_path / "cache"
    write(cache / "downloads", "")
    message = f"{cache / 'downloads'} is a file; delete it"
    with pytest.raises(UserError, match=re.escape(message)) as caught:
        load_downloaded(CHAR, url=f"file://{corpus}", sha256=None, cache_dir=cache)
    assert "\n" not in str(caught.value)
    proc = run_cli(
        *TINY,
        "data=shakespeare_char",
        f"data.url=file://{corpus}",
        f"data.cache_dir={cache}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert message in proc.stderr
