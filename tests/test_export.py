"""Export to and import from Hugging Face transformers folders: a trained run exported with
``python -m tinygpt.export`` loads with AutoModelForCausalLM / AutoTokenizer and generates what the run
generates; ``init_from=`` starts a run from such a folder, and export -> import -> export gives the same
tensors; every user mistake on either side is one clear line."""

import json
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch
from conftest import compose_train, run_cli
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

from tinygpt.data import embedded_corpus_path, load_tokenizer
from tinygpt.errors import UserError
from tinygpt.hf.export import export_run
from tinygpt.inference.engine import generate
from tinygpt.inference.run import load
from tinygpt.training.loop import train

TEXT = "ROMEO: Nay, 'tis\n\n  so - what?  A man's \"word\"!\n"  # spaces, newlines, punctuation
BPE = ["data/tokenizer=bpe", "data.tokenizer.vocab_size=300"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Tiny trained runs: GPT-2 style with the char tokenizer, and Qwen3 style (QK-norm) with BPE and EMA."""
    root = tmp_path_factory.mktemp("runs")
    settings = ["max_steps=3", "eval_interval=3", "optim.lr=1e-2", "schedule.warmup_steps=1"]
    train(compose_train(*settings), root / "char")
    train(compose_train(*settings, "model=llama", "model.n_kv_head=2", "ema_decay=0.5", *BPE), root / "bpe")
    return {"char": root / "char", "bpe": root / "bpe"}


def assert_same_greedy(run, folder, ema: bool = False) -> None:
    """The exported tokenizer gives our ids, and transformers' greedy decoding our 20 tokens."""
    ours, tokenizer = load(run, ema=ema, device="cpu")
    theirs = AutoModelForCausalLM.from_pretrained(folder).eval()
    hf_tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = [int(i) for i in tokenizer.encode(TEXT)]
    assert hf_tokenizer(TEXT)["input_ids"] == ids
    assert hf_tokenizer.decode(ids) == TEXT
    prompt = torch.tensor([ids[:6]])
    expected = generate(ours, prompt, 20, temperature=0)
    with torch.no_grad():
        got = theirs.generate(prompt, max_new_tokens=20, min_new_tokens=20, do_sample=False)
    assert got.tolist() == expected.tolist()


def test_exported_char_run_loads_in_transformers_and_generates_the_same_tokens(runs, tmp_path):
    out = tmp_path / "hf"
    result = run_cli(f"run={runs['char']}", f"out={out}", module="tinygpt.export")
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "config.json").read_text())["model_type"] == "gpt2"
    assert (out / "model.safetensors").is_file()
    assert {path.name: oct(path.stat().st_mode & 0o777) for path in out.iterdir()} == {
        name: "0o644"
        for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                     "tokenizer_config.json")
    }  # fmt: skip
    assert_same_greedy(runs["char"], out)


def test_exported_bpe_run_with_ema_weights_generates_the_same_tokens(runs, tmp_path, monkeypatch):
    loads, real_load = [], torch.load
    monkeypatch.setattr(torch, "load", lambda path, *a, **k: loads.append(path) or real_load(path, *a, **k))
    out = export_run(runs["bpe"], tmp_path / "hf", ema=True)
    monkeypatch.undo()
    assert loads == [runs["bpe"] / "ckpt.pt"]  # the checkpoint is read once
    assert json.loads((out / "config.json").read_text())["model_type"] == "qwen3"
    assert AutoTokenizer.from_pretrained(out).eos_token == "<|endoftext|>"
    assert AutoTokenizer.from_pretrained(out).model_max_length == 32  # block_size, not 1e30
    assert_same_greedy(runs["bpe"], out, ema=True)
    raw = load(runs["bpe"], device="cpu").model.state_dict()["transformer.wte.weight"]
    assert not torch.equal(load_file(out / "model.safetensors")["model.embed_tokens.weight"], raw)


def test_a_char_export_has_the_special_tokens_tools_expect_and_our_logits(runs, tmp_path):
    """<|endoftext|> (bos, eos, pad) and <unk> follow the characters, with mean rows: the characters'
    logits are ours, an unseen character is <unk>, and pipeline / generate need no arguments."""
    out = export_run(runs["char"], tmp_path / "hf")
    chars = load_tokenizer(runs["char"] / "tokenizer.json").vocab_size
    tokenizer = AutoTokenizer.from_pretrained(out)
    named = (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token, tokenizer.unk_token)
    assert named == ("<|endoftext|>", "<|endoftext|>", "<|endoftext|>", "<unk>")
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id) == (
        chars,
        chars,
        chars + 1,
    )
    assert tokenizer.model_max_length == 32
    ids = tokenizer("ROMEO caf\u00e9")["input_ids"]
    assert ids[-1] == chars + 1 and tokenizer.decode(ids, skip_special_tokens=True) == "ROMEO caf"

    model, ours = AutoModelForCausalLM.from_pretrained(out).eval(), load(runs["char"], device="cpu").model
    idx = torch.tensor([tokenizer(TEXT)["input_ids"][:32]])  # (1, 32)
    with torch.no_grad():
        logits = model(idx).logits  # (1, 32, chars + 2)
        torch.testing.assert_close(logits[..., :chars], ours(idx), rtol=0, atol=1e-5)
    mean = logits[..., :chars].mean(-1, keepdim=True).expand(1, 32, 2)  # (1, 32, 2)
    torch.testing.assert_close(logits[..., chars:], mean, rtol=0, atol=1e-5)
    with torch.no_grad():
        assert model.generate(idx[:, :6]).shape == (1, 32)  # stops at the model's context
    text = pipeline("text-generation", model=str(out))("ROMEO:")[0]["generated_text"]
    assert text.startswith("ROMEO:") and len(text) == 32  # 26 characters, no special token


def test_export_and_import_refuse_transformers_older_than_5(runs, tmp_path, monkeypatch):
    """4.x reads neither the tokenizer_config.json nor the RoPE base 5.x writes: one line, no folder."""
    transformers = sys.modules["transformers"]  # the module as imported now (transformers swaps it)
    monkeypatch.setattr(transformers, "__version__", "4.57.1")
    line = "transformers 4.57.1 is installed; TinyGPT's Hugging Face folders need transformers>=5"
    with pytest.raises(UserError, match=line):
        export_run(runs["char"], tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    monkeypatch.undo()
    folder = export_run(runs["char"], tmp_path / "hf")
    monkeypatch.setattr(transformers, "__version__", "4.57.1")
    with pytest.raises(UserError, match=line):
        train(
            compose_train(f"init_from={folder}", "max_steps=1"),
            tmp_path / "x",
            overrides=[f"init_from={folder}"],
        )


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_export_import_export_gives_identical_tensors(kind, runs, tmp_path):
    """init_from= takes config, weights and tokenizer from the folder (data=text encodes with it); one
    step at lr=1e-30 leaves every weight as it was, so exporting the new run gives the first folder's
    tensors bit for bit."""
    first = export_run(runs[kind], tmp_path / "first")
    corpus = tmp_path / "corpus.txt"  # without digits: a char vocabulary of its own would be smaller
    corpus.write_text("".join(c for c in embedded_corpus_path().read_text() if not c.isdigit()))
    again = tmp_path / "again"
    own = ["data/tokenizer=bpe", "data.tokenizer.vocab_size=280"] if kind == "bpe" else []
    train(
        compose_train(f"init_from={first}", "data=text", f"data.path={corpus}", *own, "max_steps=1",
                      "optim.lr=1e-30", "eval_interval=1"),
        again,
        overrides=[f"init_from={first}"],
    )  # fmt: skip
    assert (again / "tokenizer.json").read_text() == (first / "tokenizer.json").read_text()
    second = export_run(again, tmp_path / "second")
    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_the_token_cache_never_reuses_the_ids_of_another_folders_tokenizer(runs, tmp_path):
    """Two folders at the same path, one after the other, with other tokenizers: the second run
    encodes the text again with its own tokenizer instead of reusing the first run's cache entry."""
    folder, corpus = tmp_path / "hf", tmp_path / "corpus.txt"
    shutil.copyfile(embedded_corpus_path(), corpus)
    for kind in ("char", "bpe"):
        shutil.rmtree(folder, ignore_errors=True)
        export_run(runs[kind], folder)
        typed = [f"init_from={folder}", "data=text", f"data.path={corpus}"]
        train(compose_train(*typed, "max_steps=1"), tmp_path / kind, overrides=typed)
        assert (tmp_path / kind / "tokenizer.json").read_text() == (folder / "tokenizer.json").read_text()


def test_export_refuses_an_existing_folder_and_an_unexportable_model(runs, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    result = run_cli(f"run={runs['char']}", f"out={taken}", module="tinygpt.export")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: out={taken} already exists and is not an empty folder; choose a new out folder"
    ]
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]

    train(compose_train("max_steps=1", "model.parallel_block=true"), tmp_path / "parallel")
    with pytest.raises(UserError, match="model.parallel_block=true has no transformers architecture"):
        export_run(tmp_path / "parallel", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def hostile_out(tmp_path: Path, kind: str) -> Path:
    """An out= path that cannot become the export's folder, made in ``tmp_path``."""
    if kind == "link to an empty folder":
        (tmp_path / "empty").mkdir()
        (tmp_path / "out").symlink_to(tmp_path / "empty")
        return tmp_path / "out"
    if kind == "dangling link":
        (tmp_path / "out").symlink_to(tmp_path / "nowhere")
        return tmp_path / "out"
    if kind == "under a regular file":
        (tmp_path / "file").write_text("mine")
        return tmp_path / "file" / "sub" / "out"
    return tmp_path / ("x" * 300) / "out"  # a name longer than the filesystem allows


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("link to an empty folder", "is a symbolic link; name a new folder"),
        ("dangling link", "is a symbolic link; name a new folder"),
        ("under a regular file", "which is a file, not a folder; choose another out folder"),
        ("name too long", "File name too long; choose another out folder"),
    ],
)
def test_export_refuses_an_out_path_it_cannot_make_in_one_line(kind, message, tmp_path):
    out = hostile_out(tmp_path, kind)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(UserError, match=message) as caught:
        export_run(tmp_path / "no_run_is_read_first", out)
    assert f"out={out}" in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing made, nothing followed


def test_export_of_a_path_under_a_file_is_one_error_line(runs, tmp_path):
    out = hostile_out(tmp_path, "under a regular file")
    result = run_cli(f"run={runs['char']}", f"out={out}", module="tinygpt.export")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: out={out} is under {tmp_path / 'file'}, which is a file, not a folder; "
        "choose another out folder"
    ]


def test_import_mistakes_are_one_clear_line(runs, tmp_path):
    result = run_cli(f"init_from={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'config.json'} is missing; init_from= must name a transformers model folder"
    ]
    assert not (tmp_path / "run" / "ckpt.pt").exists()

    folder = export_run(runs["char"], tmp_path / "hf")

    def start(path, *typed):
        cfg = compose_train(f"init_from={path}", "max_steps=1", *typed)
        train(cfg, tmp_path / "x", overrides=[f"init_from={path}", *typed])

    with pytest.raises(UserError) as err:
        start(folder, "model.n_layer=3")
    assert str(err.value) == (
        f"model.n_layer=3 contradicts {folder / 'config.json'} (2); drop model.n_layer= "
        "(with init_from only model.dropout, model.block_size, model.doc_mask and model.fp8_head may be set)"
    )
    with pytest.raises(UserError, match="model.block_size=64 is longer than the 32 learned positions"):
        start(folder, "model.block_size=64")
    with pytest.raises(UserError, match="drop model/norm="):
        start(folder, "model/norm=rmsnorm")
    unseen = tmp_path / "unseen.txt"  # an exported char vocabulary has <unk>: é encodes as it
    unseen.write_text("ROMEO: caf\u00e9\n" * 50)
    typed = [f"init_from={folder}", "data=text", f"data.path={unseen}"]
    train(compose_train(*typed, "max_steps=1"), tmp_path / "unk", overrides=typed)
    unk = AutoTokenizer.from_pretrained(folder).unk_token_id
    assert load_tokenizer(tmp_path / "unk" / "tokenizer.json").encode("\u00e9").tolist() == [unk]
    pickles = tmp_path / "pickles"
    shutil.copytree(folder, pickles)
    (pickles / "model.safetensors").rename(pickles / "pytorch_model.bin")
    with pytest.raises(UserError, match=r"PyTorch pickles \(\*.bin\) but no model.safetensors"):
        start(pickles)
    (pickles / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(UserError, match="model_type 'bert' is not one TinyGPT imports"):
        start(pickles)
    assert not (tmp_path / "x" / "ckpt.pt").exists()


def edited_folder(folder: Path, path: Path, config=None, weights=None) -> Path:
    """A copy of an exported folder whose config.json went through ``config(dict)`` and whose weights
    through ``weights(dict of tensors)`` (each in place)."""
    shutil.copytree(folder, path)
    if config is not None:
        raw = json.loads((path / "config.json").read_text())
        config(raw)
        (path / "config.json").write_text(json.dumps(raw))
    if weights is not None:
        state = load_file(path / "model.safetensors")
        weights(state)
        save_file(state, path / "model.safetensors", metadata={"format": "pt"})
    return path


def test_init_from_compares_the_weights_with_config_json_before_building_the_model(runs, tmp_path):
    folder = export_run(runs["char"], tmp_path / "hf")
    vocab = json.loads((folder / "config.json").read_text())["vocab_size"]  # with the export's specials
    bomb = edited_folder(  # a self-consistent config of ~13 TB in fp32, over 3 MB of weights
        folder,
        tmp_path / "bomb",
        config=lambda raw: raw.update(n_layer=64, n_embd=1 << 16, n_inner=1 << 18, n_head=64),
    )
    switched = edited_folder(  # llama: transformers' defaults fill in a 4096-wide, 32-layer model
        folder, tmp_path / "switched", config=lambda raw: raw.update(model_type="llama")
    )
    nan = edited_folder(
        folder, tmp_path / "nan", weights=lambda state: [t.fill_(math.nan) for t in state.values()]
    )
    cases = {
        bomb: f"{bomb}: its weights do not fit its config.json: transformer.wte.weight is ({vocab}, 32) "
        f"there but ({vocab}, 65536) in the model (and ",
        switched: f"{switched} holds transformer.h.0.attn.c_attn.",  # weight or bias: which comes first
        nan: f"{nan}: its weights are not finite (transformer.",
    }
    for path, message in cases.items():
        typed = [f"init_from={path}"]
        with pytest.raises(UserError) as err:
            train(compose_train(*typed, "max_steps=1"), tmp_path / "run", overrides=typed)
        assert str(err.value).startswith(message), err.value
        assert not (tmp_path / "run" / "ckpt.pt").exists()


def test_a_shorter_block_size_slices_the_learned_positions_and_the_run_resumes(runs, tmp_path):
    folder = export_run(runs["char"], tmp_path / "hf")
    typed = [f"init_from={folder}", "model.block_size=16"]
    train(compose_train(*typed, "max_steps=1", "optim.lr=1e-30"), tmp_path / "run", overrides=typed)
    model = load(tmp_path / "run", device="cpu").model
    full = load_file(folder / "model.safetensors")["transformer.wpe.weight"]
    assert model.block_size == 16
    assert torch.equal(model.transformer.wpe.weight, full[:16])
    ids = load_tokenizer(tmp_path / "run" / "tokenizer.json").encode(TEXT)
    assert ids.tolist() == load_tokenizer(runs["char"] / "tokenizer.json").encode(TEXT).tolist()
    resumed = train(compose_train(*typed, "max_steps=2", "resume=true"), tmp_path / "run", overrides=typed)
    assert resumed["step"] == 2
