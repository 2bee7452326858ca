"""WSD's promise, read from run directories: ``python experiments/tools/wsd_branch.py SWEEP_DIR...``.

A WSD run of M steps is a branch of a longer WSD run (same seed) from its stable phase: their logged
losses must be identical up to the shorter one's decay start, M - round(decay_frac * M). Then, at
each length and seed, every other schedule's final val loss against cosine's (the same batches, so a
paired difference). Which run is which comes from effective_config.json.
"""

import json
import sys
from pathlib import Path
from typing import Any

Key = tuple[str, int, int]  # (schedule, max_steps, seed)


def load_runs(sweeps: list[str]) -> dict[Key, list[dict[str, Any]]]:
    runs = {}
    for sweep in sweeps:
        for run in sorted(p for p in Path(sweep).iterdir() if (p / "effective_config.json").is_file()):
            cfg = json.loads((run / "effective_config.json").read_text())
            schedule = cfg["schedule"]["_target_"].rsplit(".", 1)[1]
            if schedule == "wsd":
                schedule += f" {cfg['schedule']['decay_shape']}, decay_frac {cfg['schedule']['decay_frac']}"
            records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
            runs[(schedule, cfg["max_steps"], cfg["seed"])] = records
    return runs


def series(records: list[dict[str, Any]], field: str) -> dict[int, float]:
    return {r["step"]: r[field] for r in records if field in r}


def main(sweeps: list[str]) -> None:
    runs = load_runs(sweeps)
    for (schedule, steps, seed), records in sorted(runs.items()):
        longer = [k for k in runs if k[0] == schedule and k[2] == seed and k[1] > steps]
        if not schedule.startswith("wsd") or not longer:
            continue
        decay_frac = float(schedule.rsplit(" ", 1)[1])
        decay_start = steps - round(decay_frac * steps)
        for other in longer:
            for field in ("train_loss", "val_loss"):
                a, b = series(records, field), series(runs[other], field)
                shared = [s for s in a if s <= decay_start and s in b]
                same = sum(a[s] == b[s] for s in shared)
                print(f"{schedule}, seed {seed}: {steps} vs {other[1]} steps, {field} at the "
                      f"{len(shared)} logged steps <= {decay_start}: {same} identical")  # fmt: skip
    for (schedule, steps, seed), records in sorted(runs.items()):
        cosine = runs.get(("cosine", steps, seed))
        if schedule != "cosine" and cosine:
            val, cos_val = series(records, "val_loss")[steps], series(cosine, "val_loss")[steps]
            print(f"{steps} steps, seed {seed}: final val cosine {cos_val:.4f}, {schedule} {val:.4f}, "
                  f"difference {val - cos_val:+.4f}")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
