"""``python -m tinygpt.prepare``: text, JSONL and parquet in, FineWeb-format shards out. The shards hold
exactly the ids of encoding each document whole, each after the document token; the validation set is
the first whole documents; the output does not depend on the worker count; a killed run continues
from its last shard to the same bytes; every bad input is one clear error that leaves nothing behind."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_cli

from tinygpt.data.prepare import PROGRESS, PrepareSettings, prepare
from tinygpt.data.shards import open_shard, read_doc_starts, read_meta
from tinygpt.data.sources import read_pieces
from tinygpt.data.tokenizers import BPETokenizer, load_tokenizer
from tinygpt.errors import UserError

WORDS = "the a king queen sword rose night day love death crown river ship storm sea fire".split()  # noqa: SIM905
EXTRA = ["héllo wörld", "emoji 🙂 here", "tabs\tand  spaces", "ROMEO: Nay, 'tis so!"]


def documents(n: int, seed: int = 0, words: int = 40) -> list[str]:
    """``n`` made-up documents of a few lines each (some non-ASCII), reproducible from ``seed``."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        lines = [
            " ".join(rng.choices(WORDS, k=rng.randint(3, 12))) for _ in range(rng.randint(1, words // 8 + 1))
        ]
        docs.append("\n".join(lines + [EXTRA[i % len(EXTRA)]]))
    return docs


def run(tmp_path: Path, input, out="out", **keys) -> Path:
    settings = {"tokenizer": "bpe", "vocab_size": 300, "val_tokens": 0, "shard_tokens": 500, **keys}
    prepare(PrepareSettings(input=str(input), out=str(tmp_path / out), **settings))
    return tmp_path / out


def shard_documents(folder: Path, split: str) -> list[np.ndarray]:
    """The split's token stream cut at its document starts (documents may span shards)."""
    meta = read_meta(folder)
    stream, starts, offset = [], [], 0
    for shard in meta.split(split):
        ids = open_shard(folder / shard.file)
        assert len(ids) == shard.tokens
        doc_starts = read_doc_starts(folder / shard.docs_file, shard.tokens)
        assert len(doc_starts) == shard.documents
        stream.append(np.asarray(ids, dtype=np.int64))
        starts += [offset + int(s) for s in doc_starts]
        offset += shard.tokens
    ids = np.concatenate(stream) if stream else np.zeros(0, np.int64)
    assert not len(ids) or starts[0] == 0  # a split starts with a document
    return np.split(ids, starts[1:])


def expected_ids(tokenizer, docs: list[str]) -> list[list[int]]:
    """Each document encoded whole by the tokenizer itself, after its document token."""
    if isinstance(tokenizer, BPETokenizer):
        encode = tokenizer.hf_tokenizer.encode
        bos = [] if tokenizer.eot_id is None else [tokenizer.eot_id]
        return [bos + encode(d, add_special_tokens=False).ids for d in docs]
    return [tokenizer.encode(d).tolist() for d in docs]


def assert_holds(folder: Path, docs: list[str], n_val: int = 0) -> None:
    tokenizer = load_tokenizer(folder / "tokenizer.json")
    want = expected_ids(tokenizer, docs)
    got = [d.tolist() for d in shard_documents(folder, "val") + shard_documents(folder, "train")]
    got = [d for d in got if d]
    assert got == want
    assert len(shard_documents(folder, "val")) == n_val or n_val == 0
    meta = read_meta(folder)
    total = sum(len(d.encode()) for d in docs)
    assert sum(s.bytes for s in meta.shards) == total  # bytes of the text, document tokens excluded


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


def test_a_text_file_of_paragraphs_becomes_shards_of_each_document_encoded_whole(tmp_path):
    docs = documents(60)
    (tmp_path / "a.txt").write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    folder = run(tmp_path, tmp_path / "a.txt", documents="blank_line")
    meta = read_meta(folder)
    assert meta.bos_id == load_tokenizer(folder / "tokenizer.json").eot_id is not None
    assert meta.dtype == "uint16" and len(meta.split("train")) > 3  # several shards of 500 tokens
    assert all(s.tokens == 500 for s in meta.split("train")[:-1])
    assert_holds(folder, docs)
    assert (
        meta.sources[0]["bytes"] == (tmp_path / "a.txt").stat().st_size
        and len(meta.sources[0]["sha256"]) == 64
    )
    assert not (folder / PROGRESS).exists()


def test_a_long_document_read_in_blocks_and_encoded_in_pieces_has_the_ids_of_its_whole(tmp_path, monkeypatch):
    monkeypatch.setattr("tinygpt.data.sources.BLOCK_BYTES", 1000)  # many blocks, characters split across them
    monkeypatch.setattr(BPETokenizer, "PIECE_CHARS", 200)  # and many pieces per block
    doc = "\n".join(documents(200, seed=5)) + "\n  indented \n\n\n   spaces before the end  "
    (tmp_path / "a.txt").write_text(doc, encoding="utf-8")
    folder = run(tmp_path, tmp_path / "a.txt", shard_tokens=1000)
    assert len(doc.encode()) > 20_000 and len(read_meta(folder).shards) > 5
    assert_holds(folder, [doc])


def paragraphs_line_by_line(text: str) -> list[str]:
    """What documents=blank_line means, read line by line: runs of lines with more than whitespace,
    each joined by its own line endings, the last one dropped."""
    found, lines = [], []
    for line in text.split("\n") + [""]:
        if line.strip():
            lines.append(line)
        elif lines:
            found.append("\n".join(lines).removesuffix("\r"))
            lines = []
    return found


@pytest.mark.parametrize("block", [1, 3, 7, 64])
def test_blank_line_documents_are_the_paragraphs_whatever_the_block_size(tmp_path, monkeypatch, block):
    monkeypatch.setattr("tinygpt.data.sources.BLOCK_BYTES", block)
    rng = random.Random(block)
    text = "".join(
        rng.choice(["ab", "é", " ", "\t", "\n", "\n", "\r\n", "\u2028", "\n  \n"]) for _ in range(3000)
    )
    write(tmp_path / "a.txt", text)
    pieces = list(read_pieces([tmp_path / "a.txt"], "text", "blank_line", cuttable=True))
    assert [p.text for p in pieces if p.starts] == paragraphs_line_by_line(text)
    assert all(p.starts for p in pieces if p.text)
    assert sum(p.read for p in pieces) == len(text.encode())


def test_a_shard_reads_back_as_the_llm_c_layout_with_the_ids(tmp_path):
    (tmp_path / "a.txt").write_text("one two three\n", encoding="utf-8")
    folder = run(tmp_path, tmp_path / "a.txt", tokenizer="char")
    raw = (folder / "train_000000.bin").read_bytes()
    header = np.frombuffer(raw[:1024], dtype="<i4")
    ids = load_tokenizer(folder / "tokenizer.json").encode("one two three\n")
    assert header[:3].tolist() == [20240520, 1, len(ids)] and not header[3:].any()
    assert np.frombuffer(raw[1024:], dtype="<u2").tolist() == ids.tolist()
    assert open_shard(folder / "train_000000.bin").tolist() == ids.tolist()


def test_a_folder_of_files_each_one_document_char_tokenizer_without_document_token(tmp_path):
    docs = documents(5)
    for name, doc in zip(["b.txt", "a.txt", "sub/c.txt", "sub/d.txt", "z.txt"], docs, strict=True):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_text(doc, encoding="utf-8")
    (tmp_path / "in" / "notes.md").write_text("not read", encoding="utf-8")
    folder = run(tmp_path, tmp_path / "in", tokenizer="char", val_tokens=1)
    meta = read_meta(folder)
    assert meta.bos_id is None and meta.settings["tokenizer"] == "char"
    in_order = [docs[1], docs[0], docs[2], docs[3], docs[4]]  # a.txt, b.txt, sub/c.txt, sub/d.txt, z.txt
    assert_holds(folder, in_order, n_val=1)
    assert [Path(s["path"]).name for s in meta.sources] == ["a.txt", "b.txt", "c.txt", "d.txt", "z.txt"]


def test_out_inside_the_input_folder_is_not_read_as_input(tmp_path):
    docs = documents(4)
    for i, doc in enumerate(docs):
        write(tmp_path / "books" / f"{i}.txt", doc)
    folder = run(tmp_path, tmp_path / "books", "books/prepared", tokenizer="char")  # writes .json files there
    assert_holds(folder, docs)
    again = PrepareSettings(
        input=str(tmp_path / "books"), out=str(folder), tokenizer="char", shard_tokens=500
    )
    assert "already prepared" in prepare(replace(again, val_tokens=0, vocab_size=1234))  # bpe's key: unused


def test_more_than_65536_characters_make_uint32_shards(tmp_path):
    chars = [chr(c) for c in range(0x100, 0x100 + 70_000) if not 0xD800 <= c < 0xE000]
    (tmp_path / "a.txt").write_text("".join(chars), encoding="utf-8")
    folder = run(tmp_path, tmp_path / "a.txt", tokenizer="char", shard_tokens=100_000)
    meta = read_meta(folder)
    assert meta.vocab_size == len(chars) and meta.dtype == "uint32"
    assert open_shard(folder / "train_000000.bin").dtype == np.dtype("<u4")
    assert_holds(folder, ["".join(chars)])


@pytest.fixture(scope="module")
def gpt2_like(tmp_path_factory) -> Path:
    """A byte-level BPE tokenizer.json trained elsewhere, standing for GPT-2's."""
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    BPETokenizer.train(documents(40, seed=9), 400).save(path)
    return path


def test_jsonl_and_parquet_with_a_given_tokenizer_hold_the_same_shards(tmp_path, gpt2_like):
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    docs = documents(30, seed=1)
    lines = [json.dumps({"id": i, "body": d}) for i, d in enumerate(docs)]
    (tmp_path / "a.jsonl").write_text("\n".join(lines[:20]) + "\n\n", encoding="utf-8")  # a blank line
    (tmp_path / "b.json").write_text("\n".join(lines[20:]) + "\n", encoding="utf-8")
    pq.write_table(pa.table({"id": list(range(30)), "body": docs}), tmp_path / "c.parquet", row_group_size=7)
    from_jsonl = run(
        tmp_path, tmp_path / "*.json*", "j", text_key="body", tokenizer=str(gpt2_like), val_tokens=200
    )
    from_parquet = run(
        tmp_path, tmp_path / "c.parquet", "p", text_key="body", tokenizer=str(gpt2_like), val_tokens=200
    )
    assert_holds(from_jsonl, docs)
    assert (from_jsonl / "tokenizer.json").read_bytes() == (from_parquet / "tokenizer.json").read_bytes()
    assert (
        load_tokenizer(from_jsonl / "tokenizer.json").fingerprint() == load_tokenizer(gpt2_like).fingerprint()
    )
    shards = {k: v for k, v in file_bytes(from_jsonl).items() if k.endswith((".bin", ".npy"))}
    assert shards == {k: v for k, v in file_bytes(from_parquet).items() if k.endswith((".bin", ".npy"))}


@pytest.mark.parametrize("past", [0, 1])
def test_line_documents_and_validation_from_the_first_whole_documents(tmp_path, gpt2_like, past):
    docs = [" ".join(d.split()) for d in documents(80, seed=2)]  # one line each
    (tmp_path / "a.txt").write_text(
        "\n".join(docs[:40]) + "\n   \n\n" + "\r\n".join(docs[40:]), encoding="utf-8"
    )
    want = expected_ids(load_tokenizer(gpt2_like), docs)
    val_tokens = sum(map(len, want[:12])) + past  # document 12 starts at val_tokens - past
    folder = run(
        tmp_path,
        tmp_path / "a.txt",
        documents="line",
        tokenizer=str(gpt2_like),
        val_tokens=val_tokens,
        shard_tokens=300,
    )
    val, train = shard_documents(folder, "val"), shard_documents(folder, "train")
    assert [d.tolist() for d in val + train] == want
    assert len(val) == 12 + past  # whole documents, until val_tokens is reached
    assert len(read_meta(folder).split("val")) == (sum(map(len, val)) + 299) // 300  # cut into shards too


def test_the_output_is_the_same_for_one_worker_and_two(tmp_path):
    (tmp_path / "a.txt").write_text("\n\n".join(documents(400, seed=3, words=200)), encoding="utf-8")
    keys = {"documents": "blank_line", "val_tokens": 3000, "shard_tokens": 7000}
    one = run(tmp_path, tmp_path / "a.txt", "one", workers=1, **keys)
    two = run(tmp_path, tmp_path / "a.txt", "two", workers=2, **keys)
    assert file_bytes(one) == file_bytes(two)


def big_input(tmp_path: Path) -> Path:
    """About 3 MB of paragraphs: a few seconds of encoding, long enough to kill a run mid-way."""
    path = tmp_path / "big.txt"
    path.write_text("\n\n".join(documents(6000, seed=4, words=80)), encoding="utf-8")
    return path


def test_a_killed_run_continues_from_its_last_shard_to_the_same_bytes(tmp_path):
    path = big_input(tmp_path)
    keys = ["documents=blank_line", "vocab_size=300", "tokenizer_sample_bytes=50000", "val_tokens=5000"]
    keys += ["shard_tokens=40000", "workers=1"]
    out = tmp_path / "killed"
    child = subprocess.Popen(
        [sys.executable, "-m", "tinygpt.prepare", f"input={path}", f"out={out}", *keys],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and child.poll() is None and not mid_document(out / PROGRESS):
        time.sleep(0.002)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert mid_document(out / PROGRESS) and not (out / "meta.json").exists(), "the run was not killed mid-way"
    first = (out / "val_000000.bin").stat()
    (out / ".train_000009.bin.a1b2c3.tmp").write_bytes(b"half a shard")  # what a kill mid-write leaves
    settings = dict(k.split("=", 1) for k in keys)
    settings = {k: v if k == "documents" else int(v) for k, v in settings.items()}
    assert "prepared" in prepare(PrepareSettings(input=str(path), out=str(out), **settings))
    assert (out / "val_000000.bin").stat().st_ino == first.st_ino  # kept, not written again
    assert not list(out.glob(".*.tmp"))
    whole = run(tmp_path, path, "whole", **settings)
    assert file_bytes(out) == file_bytes(whole)
    assert "already prepared" in prepare(PrepareSettings(input=str(path), out=str(out), **settings))


def mid_document(progress: Path) -> bool:
    """Whether the progress record says a training shard ended inside a document: the next run must
    then skip the part of it already written."""
    try:
        record = json.loads(progress.read_text())
    except (OSError, ValueError):
        return False
    return record.get("split") == "train" and record.get("next_offset", 0) > 0


def test_the_command_line_prepares_then_says_prepared_and_refuses_other_settings(tmp_path):
    (tmp_path / "a.txt").write_text("\n".join(documents(20)), encoding="utf-8")
    args = [f"input={tmp_path / 'a.txt'}", f"out={tmp_path / 'out'}", "tokenizer=char", "documents=line"]
    first = run_cli(*args, "val_tokens=100", module="tinygpt.prepare")
    assert first.returncode == 0, first.stderr
    assert "prepared" in first.stdout and "wrote val_000000.bin" in first.stderr
    again = run_cli(*args, "val_tokens=100", "workers=2", module="tinygpt.prepare")
    assert again.returncode == 0 and "already prepared" in again.stdout
    other = run_cli(*args, "val_tokens=50", module="tinygpt.prepare")
    assert other.returncode != 0 and other.stderr.count("error:") == 1 and "Traceback" not in other.stderr
    assert "val_tokens=100 (now 50)" in other.stderr and "another out" in other.stderr
    bad = run_cli(f"input={tmp_path / 'missing'}", f"out={tmp_path / 'o2'}", module="tinygpt.prepare")
    assert (
        bad.returncode != 0
        and bad.stderr.strip().startswith("error:")
        and "missing does not exist" in bad.stderr
    )
    assert not (tmp_path / "o2").exists()


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


BAD_INPUTS = {
    "missing": (lambda d: d / "nothing.txt", "nothing.txt does not exist"),
    "glob": (lambda d: d / "*.jsonl", r"matches no"),
    "empty folder": (lambda d: write(d / "f" / "x.md", "text").parent, r"folder with no \.txt"),
    "unknown suffix": (lambda d: write(d / "a.csv", "x"), r"a\.csv is not a \.txt"),
    "empty": (lambda d: write(d / "e.txt", ""), "holds no text"),
    "not json": (
        lambda d: write(d / "a.jsonl", '{"text": "a"}\n{"text": \n'),
        r"a\.jsonl:2 is not a JSON line",
    ),
    "no field": (
        lambda d: write(d / "a.jsonl", '{"text": "a"}\n{"body": "b"}\n'),
        r'a\.jsonl:2 has no "text" field',
    ),
    "not a string": (
        lambda d: write(d / "a.jsonl", '{"text": 3}\n'),
        r'a\.jsonl:1: "text" is int, not a string',
    ),
    "jsonl not utf-8": (
        lambda d: write(d / "a.jsonl", b'{"text": "a"}\n{"text": "\xff"}\n'),
        r"a\.jsonl:2 is not valid UTF-8",
    ),
    "txt not utf-8": (
        lambda d: write(d / "a.txt", b"good text\n" * 5 + b"\xe9t\xe9"),
        r"a\.txt is not valid UTF-8 \(byte offset 50\)",
    ),
    "one document": (
        lambda d: write(d / "a.txt", "one long document " * 50),
        r"leaving none to train on; lower val_tokens",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_error_naming_the_file_and_nothing_is_written(tmp_path, case):
    make, message = BAD_INPUTS[case]
    source = make(tmp_path / "in")
    with pytest.raises(UserError, match=message):
        run(tmp_path, source, tokenizer="char", val_tokens=10)
    assert not (tmp_path / "out").exists()


def test_parquet_without_the_column_and_without_pyarrow(tmp_path, monkeypatch):
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"content": ["a b c"]}), tmp_path / "a.parquet")
    with pytest.raises(UserError, match=r'a\.parquet has no column "text" \(its columns: content\)'):
        run(tmp_path, tmp_path / "a.parquet")
    pq.write_table(pa.table({"text": ["a b c", None]}), tmp_path / "b.parquet")
    with pytest.raises(UserError, match=r'b\.parquet row 2: "text" is NoneType'):
        run(tmp_path, tmp_path / "b.parquet")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # import pyarrow.parquet now fails
    with pytest.raises(UserError, match=r"reading parquet needs pyarrow: pip install -e '\.\[parquet\]'"):
        run(tmp_path, tmp_path / "a.parquet")
    assert not (tmp_path / "out").exists()


def test_bad_tokenizer_and_bad_out_are_refused_before_anything_is_written(tmp_path):
    source = write(tmp_path / "a.txt", "some text\n")
    write(tmp_path / "tok.json", "{not json")
    with pytest.raises(UserError, match=r"cannot read tokenizer .*tok\.json"):
        run(tmp_path, source, tokenizer=str(tmp_path / "tok.json"))
    with pytest.raises(UserError, match=r"tokenizer .*nope\.json is not a file"):
        run(tmp_path, source, tokenizer=str(tmp_path / "nope.json"))
    assert not (tmp_path / "out").exists()
    write(tmp_path / "out", "a file")
    with pytest.raises(UserError, match="out .* is a file"):
        run(tmp_path, source)
    write(tmp_path / "full" / "mine.txt", "the user's own file")
    with pytest.raises(UserError, match="holds files but no prepare progress"):
        run(tmp_path, source, out="full")
    assert (tmp_path / "full" / "mine.txt").exists()
