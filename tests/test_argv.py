"""Every command line as users type it out of habit: flat keys work, argparse flags and typos get one line
saying what to type instead, never Hydra's advice to add a key with '+'; prompts and paths arrive as typed."""

import importlib

import pytest
from conftest import TINY, run_cli
from hydra import compose, initialize_config_dir

import tinygpt.eval
import tinygpt.generate
from tinygpt.config.argv import training_args
from tinygpt.config.schema import conf_dir
from tinygpt.errors import UserError

MISTAKES = {
    "a typo in a top-level key": (["max_step=20"], "unknown key max_step; did you mean max_steps"),
    "a typo in a nested key": (["model.n_layr=3"], "unknown key model.n_layr; did you mean model.n_layer"),
    "+ on a key nothing reads": (["+n_layer=2"], "did you mean n_layer=2?"),
    "an argparse flag": (["--n_layer", "6"], "type n_layer=6 (that is model.n_layer=6)"),
    "an argparse flag with =": (["--optimizer=lion"], "type optimizer=lion (that is optim=lion)"),
    "the original --data_path": (
        ["--data_path", "books/"],
        "type data_path=books/ (that is data=text data.path=books/)",
    ),
}


def compose_command(command: str, overrides: list[str]):
    with initialize_config_dir(version_base="1.3", config_dir=conf_dir()):
        return compose(command, overrides=overrides)


@pytest.mark.parametrize("case", MISTAKES)
def test_a_habit_from_another_tool_gets_the_form_to_type(case, tmp_path):
    args, message = MISTAKES[case]
    proc = run_cli(*TINY, "max_steps=1", f"hydra.run.dir={tmp_path / 'run'}", *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error:") and len(proc.stderr.splitlines()) == 1
    assert message in proc.stderr
    assert "+max_step" not in proc.stderr
    assert not (tmp_path / "run").exists()  # refused before anything ran


def test_the_products_flat_keys_work_on_the_command_line():
    proc = run_cli("--cfg", "job", "n_layer=3", "optimizer=lion", "learning_rate=0.002", "norm=rmsnorm")
    assert proc.returncode == 0, proc.stderr
    assert "n_layer: 3" in proc.stdout and "_target_: tinygpt.training.optim.Lion" in proc.stdout
    assert "lr: 0.002" in proc.stdout and "_target_: torch.nn.RMSNorm" in proc.stdout


def test_a_group_chosen_with_a_dot_chooses_the_option_not_a_string():
    """``data.tokenizer=bpe`` reads like a key but names the data/tokenizer group's option."""
    proc = run_cli("--cfg", "job", "data.tokenizer=bpe", "model.mlp=swiglu", "data.tokenizer.vocab_size=500")
    assert proc.returncode == 0, proc.stderr
    assert "_target_: tinygpt.data.BPETokenizer.train" in proc.stdout and "vocab_size: 500" in proc.stdout
    assert "_target_: tinygpt.model.SwiGLU" in proc.stdout


def test_flat_keys_train(tmp_path):
    proc = run_cli(*TINY, "max_steps=1", "n_layer=1", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    assert '"n_layer": 1' in (tmp_path / "effective_config.json").read_text()


def test_hydra_flags_pass_through(tmp_path):
    proc = run_cli("-m", *TINY, "max_steps=1", "seed=1,2", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir() and p.name.isdigit()) == ["0", "1"]


# ---- generate, eval and export: the same habits, and free text taken as typed ----

OTHER_MISTAKES = {
    "a run typed bare": ("generate", ["runs/a"], "'runs/a' has no key: generate takes key=value settings"),
    "a run typed bare, the hint": ("generate", ["runs/a"], "did you mean run=runs/a?"),
    "--run DIR": (
        "generate",
        ["--run", "runs/a"],
        "--run is an argparse-style option; TinyGPT takes key=value",
    ),
    "--run DIR, the hint": ("generate", ["--run", "runs/a"], "type run=runs/a"),
    "--max_new_tokens N": ("generate", ["run=r", "--max_new_tokens", "5"], "type max_new_tokens=5"),
    "--prompt with a space": ("generate", ["run=r", "--prompt", "Hi there"], "type 'prompt=Hi there'"),
    "a typo": ("generate", ["run=r", "max_new_token=5"], "did you mean max_new_tokens=5?"),
    "+ on a key": ("generate", ["run=r", "+top_k=5"], "did you mean top_k=5?"),
    "+ on a typo": ("generate", ["run=r", "+max_new_token=5"], "did you mean max_new_tokens=5?"),
    "eval --text": ("eval", ["run=r", "--text", "a.txt"], "type text=a.txt"),
    "eval typo": ("eval", ["run=r", "strid=8"], "unknown key strid; did you mean stride=8?"),
    "export --out": ("export", ["run=r", "--out", "hf/x"], "type out=hf/x"),
}


@pytest.mark.parametrize("case", OTHER_MISTAKES)
def test_the_other_commands_answer_habits_and_typos_with_the_form_to_type(case):
    command, args, message = OTHER_MISTAKES[case]
    prepare = importlib.import_module(f"tinygpt.{command}").arguments
    with pytest.raises(UserError) as exc:
        prepare(args)
    assert message in str(exc.value) and "did you mean +" not in str(exc.value)


@pytest.mark.parametrize("command", ["generate", "eval", "export"])
def test_the_other_commands_refuse_a_habit_in_one_line(command, tmp_path):
    proc = run_cli(str(tmp_path), module=f"tinygpt.{command}", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stdout == ""
    assert proc.stderr == (
        f"error: {str(tmp_path)!r} has no key: {command} takes key=value settings; did you mean "
        f"run={tmp_path}? (python -m tinygpt.{command} --help lists them)\n"
    )


TEXTS = [
    "It's me",
    "Hello, world!",
    "Café",
    "The ",
    " two  spaces ",
    "42",
    "a=b, [1,2] {x: y}",
    "${oc.env:HOME} and \\${x} and \\\\${y}",
    "back\\slash\\",
    "'single' \"double\"",
    "tab\there",
]


@pytest.mark.parametrize("text", TEXTS)
def test_prompts_and_paths_reach_the_command_exactly_as_typed(text):
    args = tinygpt.generate.arguments(["run=" + text, "prompt=" + text, "stop=" + text])
    cfg = compose_command("generate", args)
    assert (cfg.run, cfg.prompt, cfg.stop) == (text, text, text)
    cfg = compose_command("eval", tinygpt.eval.arguments(["run=r", "text=" + text, "out=" + text]))
    assert (cfg.text, cfg.out) == (text, text)


def test_a_value_wholly_in_quotes_is_the_text_inside_and_null_keeps_its_meaning_where_it_has_one():
    args = tinygpt.generate.arguments(["run=r", 'prompt="Hello, world!"', "stop=null"])
    cfg = compose_command("generate", args)
    assert cfg.prompt == "Hello, world!" and cfg.stop is None
    assert compose_command("generate", tinygpt.generate.arguments(["run=r", "prompt=null"])).prompt == "null"
    assert (
        compose_command("generate", tinygpt.generate.arguments(["run=r", "prompt='It\\'s'"])).prompt == "It's"
    )


# ---- training: typos in sweeps, + and group options get the key to type, never a + form ----

TRAINING_TYPOS = {
    "a sweep over a typo": (["-m", "max_step=1,2"], "unknown key max_step; did you mean max_steps=1,2"),
    "+ on a typo": (["+max_step=5"], "did you mean max_steps=5"),
    "+ on a typo in a sweep": (["-m", "+max_step=1,2"], "did you mean max_steps=1,2"),
    "a group option typo": (
        ["optim=adam"],
        "optim=adam: optim has no option adam; did you mean optim=adamw?",
    ),
    "an option typo in a sweep": (["-m", "optim=lion,adam"], "did you mean optim=adamw?"),
    "a model typo": (["model=lama"], "did you mean model=llama?"),
    "a nested group typo": (["model/norm=rms"], "did you mean model/norm=rmsnorm?"),
    "a nested group typo with a dot": (["model.pos=rop"], "did you mean model/pos=rope?"),
}


@pytest.mark.parametrize("case", TRAINING_TYPOS)
def test_training_typos_get_the_key_or_option_to_type(case):
    args, message = TRAINING_TYPOS[case]
    with pytest.raises(UserError) as exc:
        training_args(args)
    assert message in str(exc.value)
    assert "did you mean +" not in str(exc.value) and "search path" not in str(exc.value)


def test_a_sweep_over_a_typo_is_refused_in_one_line_and_leaves_no_folder(tmp_path):
    proc = run_cli("-m", "max_step=1,2", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: unknown key max_step; did you mean max_steps=1,2")
    assert list(tmp_path.iterdir()) == []
