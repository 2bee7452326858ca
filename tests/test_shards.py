"""Token shards: the FineWeb format byte for byte, reading many shards as one stream, training on
them (a prepared folder and foreign shards), document-aligned windows, and every bad input."""

import json
import struct

import numpy as np
import pytest
import torch
from conftest import (
    assert_same_weights,
    compose_eval,
    compose_train,
    corpus_documents,
    embedded_corpus_path,
    fineweb_folder,
    llm_c_bytes,
    prepared_folder,
    straight_and_resumed,
)

import tinygpt.config.commands  # noqa: F401  (registers the commands' schemas for compose_eval)
from tinygpt.data import get_batch, load_shards
from tinygpt.data.shards import (
    open_shard,
    write_shard,
)
from tinygpt.data.stream import TokenStream
from tinygpt.data.tokenizers import BPETokenizer, CharTokenizer
from tinygpt.errors import UserError
from tinygpt.evaluation.evaluate import evaluate_run
from tinygpt.training.loop import train


def read_metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def bpe():
    text = embedded_corpus_path().read_text(encoding="utf-8")[:200_000]
    return BPETokenizer.train([text], vocab_size=300)


def documents(n: int = 60) -> list[str]:
    return corpus_documents(n)


def foreign_shards(folder, tok: BPETokenizer, docs: list[str]):
    fineweb_folder(folder, tok, docs)
    return folder


def test_a_shard_written_as_llm_c_writes_it_reads_back_and_ours_are_the_same_bytes(tmp_path):
    ids = np.random.default_rng(0).integers(0, 50257, size=1000)
    (tmp_path / "theirs.bin").write_bytes(llm_c_bytes(ids))
    assert np.array_equal(open_shard(tmp_path / "theirs.bin"), ids)
    write_shard(tmp_path / "ours.bin", ids, np.dtype(np.uint16))
    assert (tmp_path / "ours.bin").read_bytes() == (tmp_path / "theirs.bin").read_bytes()


def test_a_vocabulary_past_16_bits_is_written_as_uint32_with_its_own_magic(tmp_path):
    ids = np.array([0, 70_000, 128_255])
    write_shard(tmp_path / "big.bin", ids, np.dtype(np.uint32))
    header = np.fromfile(tmp_path / "big.bin", dtype="<i4", count=3)
    assert header.tolist() == [20240801, 7, 3]
    assert open_shard(tmp_path / "big.bin").tolist() == ids.tolist()


def test_many_shards_give_the_windows_of_one_array_holding_them_all(tmp_path):
    rng = np.random.default_rng(1)
    shards = [rng.integers(0, 100, size=n).astype(np.uint16) for n in (50, 7, 80, 33)]
    whole = np.concatenate(shards)
    paths = [tmp_path / f"s{i}.bin" for i in range(4)]
    for path, ids in zip(paths, shards, strict=True):
        write_shard(path, ids, np.dtype(np.uint16))
    stream = TokenStream([open_shard(p) for p in paths], paths, 100, "test")
    assert len(stream) == len(whole) and np.array_equal(stream[40:140], whole[40:140])
    for sampling in ("random", "epoch"):
        for step in range(5):  # windows that cross shard boundaries included
            a = get_batch(whole, 16, 12, (3, 0), step, sampling=sampling)
            b = get_batch(stream, 16, 12, (3, 0), step, sampling=sampling)
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_ranks_split_the_global_batch_of_shards_without_sharing_a_window(tmp_path, bpe):
    data = load_shards(path=prepared_folder(tmp_path / "p", bpe, documents()), align="bos")
    for doc_starts in (None, data.train_doc_starts):
        whole, _ = get_batch(data.train, 8, 16, (0, 0), 3, doc_starts=doc_starts)
        parts = [
            get_batch(data.train, 8, 16, (0, 0), 3, rank=r, world_size=2, doc_starts=doc_starts)[0]
            for r in (0, 1)
        ]
        assert torch.equal(torch.cat(parts), whole)


def test_training_on_fineweb_layout_shards_runs_without_bits_per_byte(tmp_path, bpe):
    folder = foreign_shards(tmp_path / "fineweb", bpe, documents())
    cfg = compose_train(
        "data=shards",
        f"data.train={folder}/fineweb_train_*.bin",
        f"data.val={folder}/fineweb_val_*.bin",
        f"data.tokenizer_json={folder}/tokenizer.json",
        "max_steps=2",
        "eval_interval=2",
    )
    train(cfg, tmp_path / "run")
    records = read_metrics(tmp_path / "run")
    assert any("val_loss" in r for r in records)
    assert not any("val_bpb" in r for r in records)  # the shards do not say how many bytes they hold
    assert (tmp_path / "run" / "tokenizer.json").read_text() == (folder / "tokenizer.json").read_text()


def test_a_prepared_folder_trains_with_bits_per_byte_from_its_stored_counts(tmp_path, bpe):
    docs = documents()
    folder = prepared_folder(tmp_path / "prepared", bpe, docs)
    cfg = compose_train("data=shards", f"data.path={folder}", "max_steps=2", "eval_interval=2")
    train(cfg, tmp_path / "run")
    record = next(r for r in read_metrics(tmp_path / "run") if "val_bpb" in r)
    val_tokens = sum(len(bpe.encode(d)) + 1 for d in docs[:20])
    val_bytes = sum(len(d.encode()) for d in docs[:20])
    assert record["val_bpb"] == pytest.approx(
        record["val_loss"] / np.log(2) * val_tokens / val_bytes, rel=1e-6
    )


def test_resume_on_shards_is_bitwise_the_uninterrupted_run(tmp_path, bpe):
    folder = prepared_folder(tmp_path / "prepared", bpe, documents())
    keys = ("data=shards", f"data.path={folder}", "data.align=bos", "eval_interval=4")
    assert_same_weights(*straight_and_resumed(list(keys), tmp_path, total=6, stop=3))


@pytest.mark.parametrize("sampling", ["random", "epoch"])
def test_aligned_windows_start_at_a_documents_first_token(tmp_path, bpe, sampling):
    data = load_shards(path=prepared_folder(tmp_path / "p", bpe, documents()), align="bos", sampling=sampling)
    seen = []
    for step in range(6):
        x, _ = get_batch(data.train, 8, 16, (0, 0), step, sampling=sampling, doc_starts=data.train_doc_starts)
        assert (x[:, 0] == bpe.eot_id).all()
        seen.append(x[:, 0])
    unaligned, _ = get_batch(data.train, 8, 16, (0, 0), 0, sampling=sampling)
    assert not (unaligned[:, 0] == bpe.eot_id).all()


def test_epochs_of_aligned_windows_visit_every_document_once(tmp_path, bpe):
    data = load_shards(path=prepared_folder(tmp_path / "p", bpe, documents()), align="bos", sampling="epoch")
    starts = data.train_doc_starts  # (40,): every one more than 17 tokens before the end
    every_document = sorted(data.train.windows(starts, 16).tolist())
    for epoch in range(2):
        drawn = []
        for step in range(epoch * 10, epoch * 10 + 10):
            x, _ = get_batch(data.train, 4, 16, (0, 0), step, sampling="epoch", doc_starts=starts)
            drawn.extend(x.tolist())
        assert sorted(drawn) == every_document


def test_foreign_shards_are_aligned_by_finding_their_document_tokens(tmp_path, bpe):
    folder = foreign_shards(tmp_path / "fineweb", bpe, documents())
    data = load_shards(
        train=f"{folder}/fineweb_train_*.bin",
        val=f"{folder}/fineweb_val_*.bin",
        tokenizer_json=folder / "tokenizer.json",
        align="bos",
    )
    assert len(data.train_doc_starts) == 40
    assert all(data.train[int(s) : int(s) + 1][0] == bpe.eot_id for s in data.train_doc_starts)


def damaged(tmp_path, bpe, how: str):
    folder = foreign_shards(tmp_path / "f", bpe, documents())
    shard = folder / "fineweb_train_000001.bin"
    raw = bytearray(shard.read_bytes())
    if how == "truncated":
        shard.write_bytes(raw[:-3])
    elif how == "magic":
        raw[0:4] = struct.pack("<i", 12345)
        shard.write_bytes(raw)
    elif how == "version":
        raw[4:8] = struct.pack("<i", 2)
        shard.write_bytes(raw)
    elif how == "big id":
        raw[1024 + 20 : 1024 + 22] = struct.pack("<H", 60000)
        shard.write_bytes(raw)
    return folder, shard


@pytest.mark.parametrize(
    "how, says",
    [
        ("truncated", "truncated or damaged"),
        ("magic", "starts with magic 12345"),
        ("version", "format version 2"),
        ("big id", "holds token id 60000 at token 10"),
    ],
)
def test_a_bad_shard_is_named_in_one_line(tmp_path, bpe, how, says):
    folder, shard = damaged(tmp_path, bpe, how)
    with pytest.raises(UserError, match=says) as err:
        data = load_shards(
            train=str(folder / "fineweb_train_*.bin"),
            val=str(folder / "fineweb_val_*.bin"),
            tokenizer_json=folder / "tokenizer.json",
        )
        get_batch(data.train, 64, 16, (0, 0), 0, sampling="epoch")  # reaches every window's ids
    assert str(shard) in str(err.value)


def test_shard_lists_that_cannot_work_are_refused_with_the_fix(tmp_path, bpe):
    folder = foreign_shards(tmp_path / "f", bpe, documents())
    with pytest.raises(UserError, match=r"data.train=.*nothing_\*.bin matches no shard file"):
        load_shards(train=f"{folder}/nothing_*.bin", val=f"{folder}/fineweb_val_*.bin")
    with pytest.raises(UserError, match="give the tokenizer.json they were made with: data.tokenizer_json="):
        load_shards(train=f"{folder}/fineweb_train_*.bin", val=f"{folder}/fineweb_val_*.bin")
    with pytest.raises(UserError, match="data.val is not set"):
        load_shards(train=f"{folder}/fineweb_train_*.bin", tokenizer_json=folder / "tokenizer.json")
    with pytest.raises(UserError, match="has no meta.json"):
        load_shards(path=folder)


def test_a_tokenizer_other_than_the_prepared_one_is_refused(tmp_path, bpe):
    folder = prepared_folder(tmp_path / "p", bpe, documents())
    CharTokenizer("abc").save(tmp_path / "other.json")
    with pytest.raises(UserError, match="is not the tokenizer the shards in .* were prepared with"):
        load_shards(path=folder, tokenizer_json=tmp_path / "other.json")


def test_a_damaged_meta_json_is_one_line_naming_it(tmp_path, bpe):
    folder = prepared_folder(tmp_path / "p", bpe, documents())
    meta = json.loads((folder / "meta.json").read_text())
    meta["shards"][0]["file"] = "../../etc/passwd"
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"cannot read .*meta.json .*not a plain file name"):
        load_shards(path=folder)


def test_eval_scores_every_val_token_of_a_shards_run_with_its_stored_bytes(tmp_path, bpe):
    docs = documents()
    folder = prepared_folder(tmp_path / "prepared", bpe, docs)
    train(
        compose_train("data=shards", f"data.path={folder}", "max_steps=2", "eval_interval=2"),
        tmp_path / "run",
    )
    result = evaluate_run(compose_eval(f"run={tmp_path / 'run'}", "device=cpu"))
    val_tokens = sum(len(bpe.encode(d)) + 1 for d in docs[:20])
    assert result["tokens"] == val_tokens - 1  # the first token is never predicted
    assert result["bytes"] == sum(len(d.encode()) for d in docs[:20])  # document tokens stand for no text
