"""The training command line as users type it out of habit: flat keys work, argparse flags and typos
get one line saying what to type instead, never Hydra's advice to add a key with '+'."""

import pytest
from conftest import TINY, run_cli

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
