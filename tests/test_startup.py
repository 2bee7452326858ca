"""The start-up's phases: one info line after the first evaluation, every phase in order, and the same
phases in metrics.jsonl. Times are plausible (non-negative, their sum the total), never asserted fast."""

import gc
import json
import logging
import re
import time

import pytest
from conftest import TINY, compose_train, run_cli

from tinygpt.runtime.startup import FIRST_STEP, StartupClock, collections_paused, process_start
from tinygpt.training.loop import train

# The phases train() marks, in order, when the command's main did not start the clock
TRAIN_PHASES = [
    "setup",
    "data",
    "model",
    "to device",
    "optimizer",
    "wrap",
    "job",
    "graphs",
    "run dir",
    FIRST_STEP,
]
COMMAND_PHASES = ["launch", "config", "imports", *TRAIN_PHASES]  # python -m tinygpt.train marks these
LATER = ["first evaluation", "first sample"]  # timed where they run, after the first step
LINE = re.compile(r"start-up: (?P<chained>.*) = (?P<total>[\d.]+) s to the first step(?:; (?P<later>.*))?$")


def parsed(line: str) -> tuple[list[tuple[str, float]], float, list[tuple[str, float]]]:
    """The start-up line's chained phases, its total and the later phases, each as (name, seconds)."""
    match = LINE.search(line)
    assert match, line

    def pairs(text: str | None) -> list[tuple[str, float]]:
        found = [re.fullmatch(r"(.+) (\d+\.\d\d) s", part) for part in text.split(", ")] if text else []
        assert all(found), text
        return [(m.group(1), float(m.group(2))) for m in found]

    return pairs(match["chained"]), float(match["total"]), pairs(match["later"])


def check_plausible(chained: list[tuple[str, float]], total: float) -> None:
    """Every phase non-negative, and the total their sum within the line's rounding."""
    assert all(seconds >= 0 for _, seconds in chained)
    assert sum(seconds for _, seconds in chained) == pytest.approx(total, abs=0.005 * (len(chained) + 1))


def test_the_clock_chains_its_marks_keeps_first_times_and_reports_once(caplog):
    clock = StartupClock(start=100.0)
    clock.mark("a", now=101.5)
    clock.mark("b", now=104.0)
    clock.mark("a", now=105.0)  # marked again: keeps its first time, the chain moves on
    clock.mark(FIRST_STEP, now=105.25)
    clock.add("first evaluation", 3.0)
    clock.add("first evaluation", 9.0)
    assert clock.phases == {"a": 1.5, "b": 2.5, FIRST_STEP: 0.25, "first evaluation": 3.0}
    assert clock.to_first_step() == pytest.approx(4.25)
    with caplog.at_level(logging.INFO, logger="tinygpt"):
        assert clock.report_once() == clock.phases
        assert clock.report_once() is None
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("start-up:")]
    assert lines == [
        "start-up: a 1.50 s, b 2.50 s, first step 0.25 s = 4.25 s to the first step; first evaluation 3.00 s"
    ]


def test_the_process_started_before_now_and_collections_resume_after_a_pause():
    start = process_start()
    if start is not None:  # Linux: from /proc
        assert 0 <= time.perf_counter() - start < 600
    assert gc.isenabled()
    with collections_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_training_logs_the_startup_once_with_every_phase_in_order_and_records_them(tmp_path, caplog):
    cfg = compose_train("max_steps=4", "eval_interval=2", "sample_interval=2", "sample_tokens=4")
    with caplog.at_level(logging.INFO, logger="tinygpt"):
        train(cfg, tmp_path)
    lines = [r.getMessage() for r in caplog.records if "start-up:" in r.getMessage()]
    assert len(lines) == 1, lines
    chained, total, later = parsed(lines[0])
    assert [name for name, _ in chained] == TRAIN_PHASES
    assert [name for name, _ in later] == LATER
    check_plausible(chained, total)
    assert all(seconds >= 0 for _, seconds in later)  # tiny work: may round to 0.00 s on a fast machine
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    startup = [r for r in records if "startup_s" in r]
    assert len(startup) == 1 and startup[0]["step"] == 2  # the first evaluation's step
    assert list(startup[0]["startup_s"]) == TRAIN_PHASES + LATER


def test_the_command_logs_its_launch_config_and_imports_before_the_rest(tmp_path):
    proc = run_cli(*TINY, "max_steps=1", "eval_iters=1", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "start-up:" in line]  # Hydra logs to stdout
    assert len(lines) == 1, proc.stdout
    chained, total, later = parsed(lines[0])
    assert [name for name, _ in chained] == COMMAND_PHASES
    assert [name for name, _ in later] == ["first evaluation"]  # sample_interval=0: no sample
    check_plausible(chained, total)
    assert chained[0][1] > 0  # the interpreter's start is counted: launch is never empty
