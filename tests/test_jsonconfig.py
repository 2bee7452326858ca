"""JSON configs: flat keys and effective_config.json become Hydra overrides; the CLI wins."""

import json

import pytest
from conftest import REPO, TINY, compose_train, run_cli, sha256_of
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from tinygpt.config.jsonconfig import json_overrides, splice_json_config, translate
from tinygpt.config.overrides import hydra_value
from tinygpt.data import embedded_corpus_path
from tinygpt.errors import UserError
from tinygpt.training.loop import train

EXAMPLES = sorted((REPO / "configs").glob("*.json"))


def write_json(path, config) -> str:
    path.write_text(json.dumps(config), encoding="utf-8")
    return str(path)


def overrides(config: dict) -> list[str]:
    return [override for _, override in translate(config, "test.json")]


def test_flat_keys_translate_to_overrides():
    flat = {
        "data_path": "books/pride.txt",
        "out_dir": "out/run 1",
        "tokenizer": "bpe",
        "bpe_vocab_size": 8000,
        "n_layer": 6,
        "n_head": 6,
        "n_kv_head": 2,
        "n_embd": 384,
        "block_size": 256,
        "dropout": 0.2,
        "bias": False,
        "tie_weights": True,
        "sliding_window": None,
        "parallel_block": False,
        "norm": "rmsnorm",
        "mlp": "swiglu",
        "pos_encoding": "rope",
        "qk_norm": True,
        "optimizer": "adamw",
        "learning_rate": 1e-3,
        "weight_decay": 0.1,
        "max_steps": 100,
        "batch_size": 64,
        "grad_accum_steps": 2,
        "grad_clip": 1.0,
        "eval_interval": 250,
        "eval_iters": 200,
        "log_interval": 10,
        "sample_interval": 0,
        "seed": 7,
        "device": "cuda",
        "model": "llama",
        "data": "shakespeare_bpe",
    }
    assert overrides(flat) == [
        "data=text",
        "data.path='books/pride.txt'",
        "hydra.run.dir='out/run 1'",
        "data/tokenizer=bpe",
        "data.tokenizer.vocab_size=8000",
        "model.n_layer=6",
        "model.n_head=6",
        "model.n_kv_head=2",
        "model.n_embd=384",
        "model.block_size=256",
        "model.dropout=0.2",
        "model.bias=false",
        "model.tie_weights=true",
        "model.sliding_window=null",
        "model.parallel_block=false",
        "model/norm=rmsnorm",
        "model/mlp=swiglu",
        "model/pos=rope",
        "model.qk_norm=true",
        "optim=adamw",
        "optim.lr=0.001",
        "optim.weight_decay=0.1",
        "max_steps=100",
        "batch_size=64",
        "grad_accum_steps=2",
        "grad_clip=1.0",
        "eval_interval=250",
        "eval_iters=200",
        "log_interval=10",
        "sample_interval=0",
        "seed=7",
        "device='cuda'",
        "model=llama",
        "data=shakespeare_bpe",
    ]


def test_flat_keys_of_the_training_recipe_translate_to_overrides():
    # Keys of the training recipe (precision, EMA, curriculum, ...): translated here, checked against
    # the config only when a file is read.
    recipe = {
        "compile": True,
        "ema_decay": 0.999,
        "curriculum_start_block_size": 64,
        "label_smoothing": 0.1,
        "z_loss": 1e-4,
        "grad_checkpointing": False,
        "warmup_steps": 200,
    }
    assert overrides(recipe) == [
        "compile=true",
        "ema_decay=0.999",
        "curriculum_start_block_size=64",
        "label_smoothing=0.1",
        "z_loss=0.0001",
        "grad_checkpointing=false",
        "schedule.warmup_steps=200",
    ]
    assert overrides({"optimizer": "adamw", "schedule": "cosine"}) == ["optim=adamw", "schedule=cosine"]


@pytest.mark.parametrize(
    "amp,precision", [(False, "fp32"), (True, "bf16"), ("bf16", "bf16"), ("fp16", "fp16")]
)
def test_amp_becomes_precision(amp, precision):
    assert overrides({"amp": amp}) == [f"precision={precision}"]


@pytest.mark.parametrize("amp", ["fp8", 1, None])
def test_a_bad_amp_value_is_refused(amp):
    with pytest.raises(UserError, match='amp must be false, true, "bf16" or "fp16"'):
        overrides({"amp": amp})


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -3,
        1e-05,
        3.0e-4,
        1.0,
        "",
        "null",
        "1e-3",
        "it's",
        "C:\\dir\\",
        "a\\'b",
        "x, y: [z]",
    ]
    + [[0.9, 0.95], ["a", "b c"], {"k": 1}],
)
def test_values_survive_hydras_override_grammar(value):
    parsed = OverridesParser.create().parse_override(f"key={hydra_value(value)}").value()
    assert parsed == value and type(parsed) is type(value)


def test_command_line_overrides_win(tmp_path):
    path = write_json(tmp_path / "c.json", {"n_layer": 6, "n_head": 6, "norm": "rmsnorm", "max_steps": 50})
    args = ["-m", f"config_json={path}", "model.n_layer=2", "model/norm=layernorm", "seed=1"]
    assert splice_json_config(args) == [
        "-m",
        "model.n_head=6",  # the JSON's, where the command line says nothing
        "max_steps=50",
        "model.n_layer=2",
        "model/norm=layernorm",
        "seed=1",
    ]
    assert splice_json_config(["seed=1"]) == ["seed=1"]


def test_a_group_chosen_on_the_command_line_drops_the_json_settings_inside_it(tmp_path):
    path = write_json(
        tmp_path / "c.json", {"model": {"_target_": "tinygpt.model.GPT", "norm": {"eps": 1e-3}}}
    )
    assert splice_json_config([f"config_json={path}"]) == ["model=gpt", "model.norm.eps=0.001"]
    assert splice_json_config([f"config_json={path}", "model/norm=rmsnorm"]) == [
        "model=gpt",
        "model/norm=rmsnorm",
    ]


ERRORS = {
    "unknown flat key": ({"n_layers": 6}, "unknown key 'n_layers'"),
    "unknown nested key": ({"model": {"n_layer": 2, "depth": 3}}, "unknown key 'model.depth'"),
    "key under an unknown node": (
        {"model": {"head": {"size": 3}}},
        "'model.head.size'; this config has no model.head$",
    ),
    "hydra's + in a key": ({"+seed": 3}, "unknown key '\\+seed'; a key has no Hydra"),
    "hydra's ~ in a key": ({"~model.bias": None}, "unknown key '~model.bias'"),
    "hydra's @package in a key": ({"model@extra": "gpt"}, "unknown key 'model@extra'"),
    "a list for a node": (
        {"model": {"norm": [1]}},
        r"model.norm=\[1\]: Cannot merge DictConfig with ListConfig",
    ),
    "bad group option": ({"norm": "batchnorm"}, "norm='batchnorm' is not an option of model/norm"),
    "bad nested target": (
        {"optim": {"_target_": "torch.optim.Adagrad", "lr": 0.1}},
        "optim._target_ torch.optim.Adagrad matches no option of optim",
    ),
    "not an object": ([1, 2], "must hold a JSON object"),
    "bpe key with the char tokenizer": ({"bpe_vocab_size": 512}, "it sets data.tokenizer.vocab_size"),
    "target inside a list": (
        {"optim": {"betas": [0.9, {"_target_": "builtins.open", "_args_": ["x", "w"]}]}},
        r"optim.betas\[1\] has a _target_, but only a config group's node may have one",
    ),
    "target on a value": (
        {"model": {"n_layer": {"_target_": "builtins.print"}}},
        "model.n_layer has a _target_",
    ),
}


@pytest.mark.parametrize("case", ERRORS)
def test_bad_json_is_refused_by_name(case, tmp_path):
    config, message = ERRORS[case]
    with pytest.raises(UserError, match=message):
        json_overrides(write_json(tmp_path / "c.json", config))


def test_options_are_found_from_the_targets_hydra_composes():
    llama = {"_target_": "tinygpt.model.GPT", "norm": {"_target_": "torch.nn.RMSNorm"}}
    llama |= {"pos": {"_target_": "tinygpt.model.RoPE"}, "mlp": {"_target_": "tinygpt.model.SwiGLU"}}
    assert overrides({"model": llama})[0] == "model=llama"  # llama's own file names no _target_
    assert overrides({"model": {**llama, "norm": {"_target_": "torch.nn.LayerNorm"}}})[:2] == [
        "model=llama",
        "model/norm=layernorm",
    ]
    char = {
        "_target_": "tinygpt.data.load_downloaded",
        "tokenizer": {"_target_": "tinygpt.data.CharTokenizer.train"},
    }
    assert overrides({"data": char})[0] == "data=shakespeare_char"


def test_unreadable_json_and_two_files_are_refused(tmp_path):
    (tmp_path / "bad.json").write_text("{'single': quotes}")
    with pytest.raises(UserError, match="is not valid JSON"):
        json_overrides(tmp_path / "bad.json")
    with pytest.raises(UserError, match="cannot read it"):
        json_overrides(tmp_path / "missing.json")
    with pytest.raises(UserError, match="more than once"):
        splice_json_config(["config_json=a.json", "config_json=b.json"])


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_configs_compose_to_their_experiment(example):
    # One source per recipe: conf/experiment/NAME.yaml; configs/NAME.json must compose to the same config.
    from_json = OmegaConf.to_container(compose_train(*json_overrides(example), tiny=False), resolve=True)
    experiment = REPO / "conf" / "experiment" / f"{example.stem}.yaml"
    if experiment.is_file():
        from_yaml = compose_train(f"experiment={example.stem}", tiny=False)
        assert from_json == OmegaConf.to_container(from_yaml, resolve=True)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_configs_train_two_steps(example, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # data_path in the examples is relative to the checkout
    args = splice_json_config([f"config_json={example}", *TINY, "max_steps=2", "eval_interval=2"])
    if "data=shakespeare_char" in args:  # the embedded corpus stands in for the download: no network
        corpus = embedded_corpus_path()
        args += [f"data.url=file://{corpus}", f"data.sha256={sha256_of(corpus)}"]
    result = train(compose_train(*args, tiny=False), tmp_path)
    assert result["step"] == 2


def test_effective_config_fed_back_composes_the_same_config(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("A corpus for a byte-level BPE, with some words repeated.\n" * 200)
    cfg = compose_train(
        "model=llama",
        "model/norm=layernorm",
        "model.n_kv_head=2",
        "data=text",
        f"data.path={corpus}",
        "data/tokenizer=bpe",
        "data.tokenizer.vocab_size=300",
        "data.sampling=epoch",
        "optim.betas=[0.8,0.9]",
        "max_steps=2",
    )
    train(cfg, tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "effective_config.json").read_text())
    again = compose_train(*json_overrides(tmp_path / "run" / "effective_config.json"), tiny=False)
    assert OmegaConf.to_container(again, resolve=True) == saved


def test_json_on_the_command_line_then_its_effective_config_fed_back(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    proc = run_cli("config_json=configs/cpu_quick.json", *TINY, "max_steps=2", f"hydra.run.dir={first}")
    assert proc.returncode == 0, proc.stderr
    effective = json.loads((first / "effective_config.json").read_text())
    assert effective["model"]["n_head"] == 4 and effective["max_steps"] == 2  # the command line's
    assert effective["model"]["sliding_window"] == 32 and effective["optim"]["lr"] == 0.002  # the JSON's
    proc = run_cli(f"config_json={first / 'effective_config.json'}", "max_steps=3", f"hydra.run.dir={second}")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((second / "effective_config.json").read_text()) == {**effective, "max_steps": 3}


def test_a_bad_json_key_on_the_command_line_is_one_clear_line(tmp_path):
    path = write_json(tmp_path / "c.json", {"n_layers": 6})
    proc = run_cli(f"config_json={path}", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode != 0
    assert "unknown key 'n_layers'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()
