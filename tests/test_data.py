"""Corpora -> token cache -> batches: re-use, invalidation, concurrency, sampling, bad data."""

import functools
import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import REPO, TINY, run_cli, sha256_of

import tinygpt.data.cache as cache_module
import tinygpt.data.text as text_module
from tinygpt.data import (
    BPETokenizer,
    CharTokenizer,
    get_batch,
    load_downloaded,
    load_embedded,
    load_text_data,
    on_device,
)
from tinygpt.data.tokenizers import EOT
from tinygpt.errors import UserError

CHAR = CharTokenizer.train


@pytest.fixture
def builds(monkeypatch) -> list[str]:
    """Names of the cache entries built (tokenized) from now on."""
    built: list[str] = []
    real = cache_module.build_entry

    def counting(entry, *args, **kwargs):
        built.append(entry.name)
        return real(entry, *args, **kwargs)

    monkeypatch.setattr(cache_module, "build_entry", counting)
    return built


def entries(cache_dir) -> list[str]:
    """Everything in the cache's tokens folder except lock files."""
    folder = cache_dir / "tokens"
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) if folder.exists() else []


def write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- the token cache ---------------------------------------------------------------------------------


def test_cache_is_built_once_then_reused(tmp_path, builds):
    corpus = write(tmp_path / "a.txt", "hello world, hello tokens\n" * 200)
    first = load_text_data(CHAR, corpus, cache_dir=tmp_path / "cache")
    (entry,) = entries(tmp_path / "cache")
    mtime = (tmp_path / "cache" / "tokens" / entry / "train.bin").stat().st_mtime_ns
    second = load_text_data(CHAR, corpus, cache_dir=tmp_path / "cache")
    assert builds == [entry]  # the second load tokenized nothing
    assert (tmp_path / "cache" / "tokens" / entry / "train.bin").stat().st_mtime_ns == mtime
    assert np.array_equal(first.train, second.train) and np.array_equal(first.val, second.val)
    assert first.tokenizer.decode(np.concatenate([first.train, first.val])) == corpus.read_text()
    meta = json.loads((tmp_path / "cache" / "tokens" / entry / "meta.json").read_text())
    assert meta["dtype"] == "uint16" and meta["train_tokens"] + meta["val_tokens"] == 200 * 26
    assert meta["train_tokens"] == int(200 * 26 * 0.9)


def test_cache_is_rebuilt_when_text_tokenizer_or_split_change(tmp_path, builds):
    corpus = write(tmp_path / "a.txt", "some text to tokenize\n" * 100)
    cache = tmp_path / "cache"
    bpe = functools.partial(BPETokenizer.train, vocab_size=300)
    load_text_data(CHAR, corpus, cache_dir=cache)
    load_text_data(bpe, corpus, cache_dir=cache)  # another tokenizer
    load_text_data(functools.partial(BPETokenizer.train, vocab_size=320), corpus, cache_dir=cache)
    load_text_data(CHAR, corpus, cache_dir=cache, val_fraction=0.2)  # another split
    write(corpus, "some text to tokenize!\n" * 100)  # another text, same file name
    load_text_data(CHAR, corpus, cache_dir=cache)
    assert len(builds) == 5 and len(set(builds)) == 5
    moved = corpus.rename(tmp_path / "b.txt")
    load_text_data(CHAR, moved, cache_dir=cache, memmap=False, sampling="epoch")  # same text, same tokens
    assert len(builds) == 5


# Builds shakespeare's cache, holding the lock for 2 s first, so the second process surely waits.
CONCURRENT = textwrap.dedent(
    """
    import hashlib, logging, os, pathlib, sys, time
    import tinygpt.data.cache as cache
    from tinygpt.data import CharTokenizer, load_text_data

    arrived = pathlib.Path(sys.argv[2]).parent / "arrived"  # one file per process that reached the lock
    arrived.mkdir(exist_ok=True)

    class CountingLock(cache.FileLock):
        def __enter__(self):
            (arrived / str(os.getpid())).touch()
            return super().__enter__()

    def build_once_both_arrived(*args, **kwargs):
        deadline = time.time() + 60  # the other process waits at the lock before this one builds
        while len(list(arrived.iterdir())) < 2 and time.time() < deadline:
            time.sleep(0.01)
        return real_build(*args, **kwargs)

    cache.FileLock = CountingLock
    real_build, cache.build_entry = cache.build_entry, build_once_both_arrived
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    data = load_text_data(CharTokenizer.train, sys.argv[1], cache_dir=sys.argv[2])
    print(len(data.train), len(data.val), hashlib.sha256(data.train.tobytes()).hexdigest())
    """
)


def test_two_processes_building_the_same_cache_both_get_it(tmp_path, corpus_copy):
    cache = tmp_path / "cache"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT, str(corpus_copy), str(cache)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    assert outputs[0][0] == outputs[1][0] != ""  # the same tokens
    logs = [err for _, err in outputs]
    assert sum("tokenizing" in log for log in logs) == 1  # one process built the entry,
    assert sum("built by another process" in log for log in logs) == 1  # the other waited for it
    assert len(entries(cache)) == 1  # and no temporary folder is left behind


def test_token_ids_widen_to_uint32_beyond_65536_symbols(tmp_path):
    code_points = [c for c in range(0x100, 0x100 + 70_000 + 2048) if not 0xD800 <= c <= 0xDFFF][:70_000]
    text = "".join(map(chr, code_points))
    data = load_text_data(CHAR, write(tmp_path / "wide.txt", text), cache_dir=tmp_path / "cache")
    assert data.tokenizer.vocab_size == 70_000
    assert data.train.dtype == np.uint32
    assert data.tokenizer.decode(np.concatenate([data.train, data.val])) == text


def test_memmap_in_ram_and_device_copy_give_identical_batches(tmp_path, corpus_copy):
    """A split is read from its memmap, from RAM, or (on a GPU) from a tensor copy of it, which
    gathers the windows where the ids are (a CPU tensor here: the same code): same windows, every rank."""
    mapped = load_text_data(CHAR, corpus_copy, cache_dir=tmp_path)
    in_ram = load_text_data(CHAR, corpus_copy, cache_dir=tmp_path, memmap=False)
    assert isinstance(mapped.train, np.memmap) and not isinstance(in_ram.train, np.memmap)
    copy = torch.from_numpy(np.asarray(mapped.train, dtype=np.int64))
    assert on_device(mapped.train, torch.device("cpu"), "train") is mapped.train  # a copy only on CUDA
    for sampling in ("random", "epoch"):
        for index, rank in ((0, 0), (7, 0), (7, 1)):
            where = dict(rank=rank, world_size=2, sampling=sampling)
            a = get_batch(mapped.train, 8, 64, (1, 0), index, **where)
            b = get_batch(in_ram.train, 8, 64, (1, 0), index, **where)
            c = get_batch(copy, 8, 64, (1, 0), index, **where)
            assert all(torch.equal(u, v) and torch.equal(u, w) for u, v, w in zip(a, b, c, strict=True))
            assert c[0].dtype == torch.int64 and c[0].shape == (4, 64)


# --- corpora: folders, separate validation text, downloads ------------------------------------------


def test_a_folder_is_its_txt_files_in_order_separated_by_end_of_text(tmp_path, caplog):
    folder = tmp_path / "books"
    write(folder / "b.txt", "second book\n" * 30)
    write(folder / "a.txt", "first book\n" * 30)
    write(folder / "sub" / "c.txt", "third book\n" * 30)
    write(folder / "notes.md", "not a text file of the corpus")
    bpe = functools.partial(BPETokenizer.train, vocab_size=300)
    with caplog.at_level("INFO"):
        data = load_text_data(bpe, folder, cache_dir=tmp_path / "cache", val_fraction=0.05)
    assert f"tokenizing 3 files ({folder / 'a.txt'} ... {folder / 'sub' / 'c.txt'})" in caplog.text
    ids = np.concatenate([data.train, data.val])
    assert data.tokenizer.decode(ids) == EOT.join(
        ["first book\n" * 30, "second book\n" * 30, "third book\n" * 30]
    )
    assert int((ids == data.tokenizer.eot_id).sum()) == 2
    char = load_text_data(CHAR, folder, cache_dir=tmp_path / "cache")  # no end-of-text id: concatenated
    assert char.tokenizer.decode(np.concatenate([char.train, char.val])).startswith(
        "first book\n" * 30 + "second"
    )


def test_a_separate_validation_text(tmp_path):
    data = load_text_data(
        CHAR,
        write(tmp_path / "train.txt", "abc " * 100),
        cache_dir=tmp_path / "cache",
        val_path=write(tmp_path / "val.txt", "cab xyz " * 10),
    )
    assert data.tokenizer.decode(data.train) == "abc " * 100
    assert data.tokenizer.decode(data.val) == "cab xyz " * 10  # its characters are in the vocabulary


def test_embedded_corpus_is_the_default_of_data_tiny(tmp_path):
    data = load_embedded(CHAR, cache_dir=tmp_path)
    assert data.tokenizer.vocab_size == 74 and len(data.train) + len(data.val) > 500_000


def test_a_corpus_downloads_once_from_its_url_and_checks_sha256(tmp_path, corpus_copy, builds, monkeypatch):
    url, digest = f"file://{corpus_copy}", sha256_of(corpus_copy)
    data = load_downloaded(CHAR, url=url, sha256=digest, cache_dir=tmp_path)
    text = corpus_copy.read_text()
    assert data.tokenizer.vocab_size == len(set(text)) and len(data.train) + len(data.val) == len(text)
    (copy,) = (tmp_path / "downloads").iterdir()
    assert copy.read_bytes() == corpus_copy.read_bytes()

    def no_network(*args, **kwargs):
        raise AssertionError("downloaded twice")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    load_downloaded(CHAR, url=url, sha256=digest, cache_dir=tmp_path)
    assert len(builds) == 1  # no second download, no second tokenization


def test_a_local_path_wins_over_the_download(tmp_path):
    local = write(tmp_path / "mine.txt", "my own copy\n" * 50)
    data = load_downloaded(CHAR, url="http://127.0.0.1:9/x", sha256="0" * 64, cache_dir=tmp_path, path=local)
    assert data.tokenizer.decode(data.train[:12]) == "my own copy\n"


def test_download_with_a_wrong_checksum_is_refused_and_not_kept(tmp_path, corpus_copy):
    digest = sha256_of(corpus_copy)
    with pytest.raises(UserError, match=rf"sha256 {digest[:8]}.*expects 0000.*put a copy at .*downloads"):
        load_downloaded(CHAR, url=f"file://{corpus_copy}", sha256="0" * 64, cache_dir=tmp_path)
    assert list((tmp_path / "downloads").iterdir()) == []


def test_offline_download_says_where_to_put_the_file(tmp_path):
    with pytest.raises(UserError, match=r"cannot download data.url .*put a copy at .*downloads.*data.path="):
        load_downloaded(CHAR, url="http://127.0.0.1:9/input.txt", sha256="0" * 64, cache_dir=tmp_path)


def test_a_wrong_file_put_in_the_cache_by_hand_is_refused(tmp_path, corpus_copy):
    url, digest = f"file://{corpus_copy}", sha256_of(corpus_copy)
    load_downloaded(CHAR, url=url, sha256=digest, cache_dir=tmp_path)
    (copy,) = (tmp_path / "downloads").iterdir()
    copy.write_text("not the corpus")
    with pytest.raises(UserError, match=f"{copy}.*delete it to download again"):
        load_downloaded(CHAR, url=url, sha256=digest, cache_dir=tmp_path)


# --- batches --------------------------------------------------------------------------------------------

IDS = np.arange(1000, dtype=np.uint16)  # token value == position, so a window shows where it starts


def starts(batch_size, block_size, index, rank=0, world_size=1, sampling="random") -> list[int]:
    x, y = get_batch(IDS, batch_size, block_size, (3, 0), index, rank, world_size, sampling)
    assert torch.equal(x[:, 1:], y[:, :-1]) and x.shape == (batch_size // world_size, block_size)
    return x[:, 0].tolist()


@pytest.mark.parametrize("sampling", ["random", "epoch"])
def test_rank_slices_are_disjoint_and_make_up_the_single_process_batch(sampling):
    for index in range(5):
        ranks = [starts(16, 10, index, rank, 4, sampling) for rank in range(4)]
        assert sum(ranks, []) == starts(16, 10, index, sampling=sampling)
        assert len(set(sum(ranks, []))) == 16


def test_random_batches_depend_only_on_seed_and_index():
    assert starts(8, 10, 3) == starts(8, 10, 3)
    assert starts(8, 10, 3) != starts(8, 10, 4)
    assert all(0 <= s <= 1000 - 10 - 1 for i in range(20) for s in starts(8, 10, i))


def test_epoch_sampling_visits_every_window_once_per_epoch():
    n_windows = (1000 - 1) // 10  # 99 disjoint windows of 10 (+1 target)
    drawn = [s for index in range(99 * 3 // 9) for s in starts(9, 10, index, sampling="epoch")]
    epochs = [drawn[i * 99 : (i + 1) * 99] for i in range(3)]
    for epoch in epochs:
        assert sorted(epoch) == list(range(0, n_windows * 10, 10))
    assert epochs[0] != epochs[1]  # reshuffled each epoch
    # a batch that straddles two epochs takes the end of one and the start of the next
    assert starts(10, 10, 9, sampling="epoch") == epochs[0][90:] + epochs[1][:1]


# --- bad data: one clear error each, and nothing half-written ------------------------------------------


def test_unknown_sampling_and_bad_val_fraction_are_refused(tmp_path):
    corpus = write(tmp_path / "a.txt", "text " * 100)
    with pytest.raises(UserError, match="data.sampling must be one of random, epoch"):
        load_text_data(CHAR, corpus, cache_dir=tmp_path, sampling="shuffle")
    with pytest.raises(UserError, match="data.val_fraction must be between 0 and 1"):
        load_text_data(CHAR, corpus, cache_dir=tmp_path, val_fraction=1.0)


BAD = {
    "missing file": (None, "does not exist"),
    "empty file": (b"", "is empty"),
    "only whitespace": (b" \n\t\n", "is empty"),
    "binary": (
        b"GIF89a\x01\x00\x00\x00" + b"x" * 10,
        "NUL byte at byte offset 7: it looks like a binary file",
    ),
    "latin-1": ("caf\u00e9 au lait".encode("latin-1"), "not valid UTF-8 (byte offset 3)"),
    "cut mid-character": ("naïve".encode()[:3], "not valid UTF-8 (byte offset 2)"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_data_is_one_clear_error_and_leaves_no_cache(case, tmp_path):
    content, message = BAD[case]
    path = tmp_path / "corpus.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError, match=re.escape(message)):
        load_text_data(CHAR, path, cache_dir=tmp_path / "cache")
    assert entries(tmp_path / "cache") == []


def test_invalid_utf8_offset_counts_across_read_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(text_module, "CHUNK_BYTES", 8)
    good = "ab€€€€€€".encode()  # 3-byte characters straddle the 8-byte blocks
    path = tmp_path / "corpus.txt"
    path.write_bytes(good + b"\xff" + b"tail")
    with pytest.raises(UserError, match=f"byte offset {len(good)}"):
        load_text_data(CHAR, path, cache_dir=tmp_path / "cache")
    path.write_bytes(good * 5)
    assert "".join(text_module.read_chunks(path)) == good.decode() * 5  # chunked reads join up exactly


def test_a_folder_without_text_files_and_a_missing_path(tmp_path):
    write(tmp_path / "books" / "a.md", "markdown only")
    with pytest.raises(UserError, match="no .txt files"):
        load_text_data(CHAR, tmp_path / "books", cache_dir=tmp_path / "cache")
    with pytest.raises(UserError, match="data.path is not set"):
        load_text_data(CHAR, None, cache_dir=tmp_path / "cache")


def test_a_failed_build_leaves_no_half_written_entry(tmp_path):
    corpus = write(tmp_path / "a.txt", "text " * 100)
    with pytest.raises(UserError, match="vocab_size must be at least 257"):
        load_text_data(functools.partial(BPETokenizer.train, vocab_size=50), corpus, cache_dir=tmp_path)
    assert entries(tmp_path) == []


def test_a_corpus_too_short_for_one_block(tmp_path):
    corpus = write(tmp_path / "a.txt", "short text\n" * 10)
    with pytest.raises(UserError, match="too few for one window of model.block_size=64"):
        load_text_data(CHAR, corpus, cache_dir=tmp_path, min_tokens=65)


CLI_BAD = {
    "empty": (b"", "is empty"),
    "binary": (b"\x7fELF\x02\x01\x01\x00\x00\x00", "NUL byte at byte offset 7"),
    "invalid UTF-8": (b"ok so far \xc3\x28 broken", "not valid UTF-8 (byte offset 10)"),
    "too short": (b"tiny\n", "too few for one window"),
}


@pytest.mark.parametrize("case", CLI_BAD)
def test_bad_data_on_the_command_line(case, tmp_path):
    content, message = CLI_BAD[case]
    (tmp_path / "corpus.txt").write_bytes(content)
    run_dir = tmp_path / "run"
    proc = run_cli(*TINY, "data=text", f"data.path={tmp_path / 'corpus.txt'}", f"hydra.run.dir={run_dir}")
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (run_dir / "ckpt.pt").exists()


def test_data_text_without_a_path_on_the_command_line(tmp_path):
    proc = run_cli(*TINY, "data=text", f"hydra.run.dir={tmp_path}")
    assert proc.returncode != 0
    assert "data.path is not set" in proc.stderr and "Traceback" not in proc.stderr


def test_shakespeare_unreachable_on_the_command_line(tmp_path):
    proc = run_cli(
        *TINY,
        "data=shakespeare_char",
        "data.url=http://127.0.0.1:9/input.txt",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "cannot download data.url" in proc.stderr and "data.path=" in proc.stderr
