"""Steps for an equal-wall-clock rerun of a sweep: ``python experiments/tools/equal_time.py SWEEP KEY BASE``.

Each run's training time is the time its steps took, from its metrics: the tokens between two logged
steps over the tokens/s logged for them (evaluations, samples and checkpoints left out). Runs are
grouped by the value of the override KEY (e.g. ``speedrun``), and a group's time is the mean over its
seeds. For each group, the steps that take as long as the group KEY=BASE took for its own steps:
``steps x base time / group time``, rounded. Prints one line per group: value, milliseconds per step, steps.
"""

import statistics
import sys
from pathlib import Path

from tinygpt.config.overrides import override_key
from tinygpt.evaluation.report import Run, load_runs


def training_seconds(run: Run) -> tuple[float, int]:
    """(seconds spent in training steps, steps) of one run, from its metrics records."""
    seconds, tokens, steps = 0.0, 0, 0
    for record in run.records:
        if "tokens_per_s" in record:
            seconds += (record["tokens_seen"] - tokens) / record["tokens_per_s"]
            tokens, steps = record["tokens_seen"], record["step"]
    return seconds, steps


def override(run: Run, key: str) -> str:
    """The value KEY has in the run's .hydra/overrides.yaml."""
    for text in run.overrides or []:
        if override_key(text) == key:
            return text.partition("=")[2]
    raise SystemExit(f"error: {run.path} has no override {key}=...")


def main(sweep: Path, key: str, base: str) -> None:
    groups: dict[str, list[tuple[float, int]]] = {}
    for run in load_runs([sweep]):
        groups.setdefault(override(run, key), []).append(training_seconds(run))
    per_step = {value: statistics.mean(s / n for s, n in runs) for value, runs in groups.items()}
    if base not in per_step:
        raise SystemExit(f"error: no run in {sweep} has {key}={base}")
    steps = statistics.mean(n for _, n in groups[base])
    for value, seconds in per_step.items():
        print(f"{value} {seconds * 1000:.1f} {round(steps * per_step[base] / seconds)}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__.splitlines()[0])
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
