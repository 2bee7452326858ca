"""The speedrun_ablation tables: ``python experiments/tools/ladder_table.py SWEEP``.

One line per stage of the ``speedrun`` ladder (in its order): steps, tokens, the final val bits per byte
as mean ± std over seeds 1-3, each seed's difference from the stage before it, and the training time per
step and tokens/s (the tokens between logged steps over the tokens/s logged for them: evaluations left
out), the mean over seeds. Runs are told apart by their ``speedrun=`` and ``seed=`` overrides.
"""

import statistics
import sys
from pathlib import Path

import yaml
from equal_time import override, training_seconds

from tinygpt.evaluation.report import Run, load_runs

# the stages in the ladder's order, as experiment=speedrun_ablation sweeps them
EXPERIMENT = Path(__file__).resolve().parents[2] / "conf" / "experiment" / "speedrun_ablation.yaml"
LADDER = yaml.safe_load(EXPERIMENT.read_text())["hydra"]["sweeper"]["params"]["speedrun"].split(",")
SEEDS = (1, 2, 3)


def summary(run: Run) -> dict[str, float]:
    """The final evaluation's val bpb and step, the tokens trained on, and ms per step and tokens/s."""
    final = [r for r in run.records if "val_bpb" in r][-1]
    seconds, steps = training_seconds(run)
    tokens = max(r["tokens_seen"] for r in run.records if "tokens_seen" in r)
    return dict(bpb=final["val_bpb"], step=final["step"], tokens=tokens, ms=1000 * seconds / steps,
                tps=tokens / seconds)  # fmt: skip


def main(sweep: Path) -> None:
    runs = {
        (override(run, "speedrun"), int(override(run, "seed"))): summary(run) for run in load_runs([sweep])
    }
    columns = [
        "stage",
        "steps",
        "tokens",
        "val bpb, mean ± std",
        "minus the stage before, per seed (1, 2, 3)",
    ]
    print("| " + " | ".join([*columns, "ms/step", "tokens/s"]) + " |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    before = None
    for stage in LADDER:
        rows = [runs[(stage, seed)] for seed in SEEDS]
        bpb = [row["bpb"] for row in rows]
        deltas = (
            "" if before is None else ", ".join(f"{a - b:+.3f}" for a, b in zip(bpb, before, strict=True))
        )
        print(
            f"| {stage} | {rows[0]['step']} | {rows[0]['tokens'] / 1e6:.2f}M | {statistics.mean(bpb):.4f} ± "
            f"{statistics.stdev(bpb):.4f} | {deltas} | {statistics.mean(r['ms'] for r in rows):.1f} | "
            f"{statistics.mean(r['tps'] for r in rows):,.0f} |"
        )
        before = bpb


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__.splitlines()[0])
    main(Path(sys.argv[1]))
