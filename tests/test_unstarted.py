"""A failed command leaves no run directory in which training never started (no .hydra/, .lock or empty
train.log in runs/<date>/, multirun/ or out/), and never removes a directory that held anything before."""

import pytest
from conftest import TINY, compose_train, run_cli

from tinygpt.training.loop import train
from tinygpt.training.unstarted import note_new, remove_unstarted

REFUSED = {
    "a config check": ["max_steps=1", "model.n_embd=30"],
    "data that does not exist": ["data=text", "data.path=/nonexistent/corpus.txt"],
    "a run dir under out/": ["hydra.run.dir=out/a/b", "model.n_embd=30"],
    "a sweep over a typo": ["-m", "max_step=1,2"],
    "a sweep whose job fails to compose": ["-m", "max_steps=abc,1"],  # after the sweep folder is made
}


def tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_refused_commands_leave_nothing_behind(tmp_path):
    for case, args in REFUSED.items():
        proc = run_cli(*TINY, *args, cwd=tmp_path)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, (case, proc.stderr)
        assert tree(tmp_path) == [], (case, tree(tmp_path))


def test_a_failed_resume_leaves_its_run_as_it_was(tmp_path):
    run_dir = tmp_path / "run"
    train(compose_train("max_steps=2"), run_dir)
    before = {path: (run_dir / path).read_bytes() for path in tree(run_dir) if (run_dir / path).is_file()}
    proc = run_cli(*TINY, "max_steps=3", "resume=true", "model.n_embd=30", f"hydra.run.dir={run_dir}")
    assert proc.returncode != 0
    after = {path: (run_dir / path).read_bytes() for path in tree(run_dir) if (run_dir / path).is_file()}
    assert after.keys() >= before.keys()
    assert {k: after[k] for k in before if k not in ("train.log",)} == {
        k: v for k, v in before.items() if k != "train.log"
    }


def test_an_empty_folder_given_as_the_run_dir_is_left_empty(tmp_path):
    (tmp_path / "mine").mkdir()
    proc = run_cli(*TINY, "max_steps=1", "model.n_embd=30", "hydra.run.dir=mine", cwd=tmp_path)
    assert proc.returncode == 2
    assert tree(tmp_path) == ["mine"]


@pytest.mark.parametrize(
    ("files", "kept"),
    [
        ({".hydra/config.yaml": "x", ".lock": "", "train.log": "", "effective_config.json": "{}"}, False),
        ({"metrics.jsonl": ""}, False),  # opened, never written: no step
        ({"metrics.jsonl": '{"step": 1}\n'}, True),  # a step was logged: the run's history
        ({"ckpt.pt": "x"}, True),
        ({"0/error.txt": "failed"}, True),  # a sweep job's recorded failure
    ],
)
def test_only_a_directory_in_which_training_never_started_is_removed(tmp_path, files, kept):
    run_dir = tmp_path / "runs" / "day" / "time"
    note_new(run_dir)
    for name, text in files.items():
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_text(text)
    remove_unstarted()
    assert run_dir.exists() == kept
    assert (tmp_path / "runs").exists() == kept  # the parents made for it go with it


def test_a_directory_that_held_anything_before_is_never_noted(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine")
    note_new(run_dir)
    (run_dir / ".lock").write_text("")
    remove_unstarted()
    assert tree(run_dir) == [".lock", "notes.txt"]
