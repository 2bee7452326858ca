"""A run written by TinyGPT 0.1 (tests/fixtures/run_written_by_0_1: a 2-layer model after 3 of 6
steps with optim=lion, schedule=constant, seed=7) still samples the same text and resumes to the
same losses as the uninterrupted run did then. Figures recorded with that version's commands."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import run_cli

FIXTURE = Path(__file__).parent / "fixtures" / "run_written_by_0_1"
SAMPLE = "ROMEO:\n,?bM3sP?fypaYpg4ARd?Z=fp9'TY\"4DX'U9ebON\n"  # seed=1, temperature 1, 40 tokens
STEP_6 = {"train_loss": 4.310786247253418, "val_loss": 4.304251194000244}  # the uninterrupted run's


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    return run


@pytest.mark.parametrize("cache", ["kv_cache=true", "kv_cache=false", "static_cache=true"])
def test_an_old_run_samples_the_text_it_sampled_then(old_run: Path, cache: str):
    args = [f"run={old_run}", 'prompt="ROMEO:"', "max_new_tokens=40", "seed=1", "device=cpu", cache]
    proc = run_cli(*args, module="tinygpt.generate")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == SAMPLE


def test_an_old_run_resumes_to_the_losses_of_the_uninterrupted_run(old_run: Path):
    proc = run_cli(f"hydra.run.dir={old_run}", "resume=true", "max_steps=6")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in (old_run / "metrics.jsonl").read_text().splitlines()]
    last = {key: r[key] for r in records if r["step"] == 6 for key in STEP_6 if key in r}
    assert last == pytest.approx(STEP_6, rel=1e-5)
