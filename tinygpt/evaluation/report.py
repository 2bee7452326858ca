"""Comparing runs: what ``python -m tinygpt.report SWEEP_DIR`` (or ``RUN_DIR ...``) writes.

Reads every run of a Hydra multirun directory (or the given run directories) and writes two files:
``report.md``, one table row per run with what differs between the runs, its losses, speed, wall time
and status, best run first; and ``loss_curves.png``, train and val loss against step: a line per run, or
per setting where runs differ only by seed (their mean, with their min..max shaded).
The table is printed too. Only the run directories' files are read: no torch; of Hydra, only its
override parser (``tinygpt.config.overrides``), to tell which key each override sets.
"""

import json
import math
import os
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tinygpt.config.overrides import flat_items, override_key
from tinygpt.config.records import upgrade, with_added_model_keys
from tinygpt.errors import UserError
from tinygpt.training.metrics import read_records
from tinygpt.training.summary import duration

# A directory holding any of these is a run: a job that failed before training wrote only error.txt.
RUN_MARKERS = ("effective_config.json", "metrics.jsonl", "error.txt")
# Keys that differ between runs without saying anything about the experiment.
IGNORED_KEYS = ("resume",)
IGNORED_PREFIXES = ("hydra.",)
PNG_HINT = "pip install -e '.[report]' in the checkout"


@dataclass
class Run:
    """What a run directory holds, read once."""

    path: Path
    name: str  # how the table and the plot call it: its path relative to the sweep (or its parent)
    config: dict[str, Any]  # effective_config.json; empty when missing
    overrides: list[str] | None  # .hydra/overrides.yaml; None when missing
    records: list[dict[str, Any]]  # metrics.jsonl, bad lines left out
    error: str | None  # the first line of error.txt
    has_checkpoint: bool


@dataclass
class Row:
    """One line of the table."""

    run: Run
    differs: str
    status: str  # ok | failed | running/incomplete
    final_val: float | None
    best_val: float | None
    best_bpb: float | None  # the lowest val_bpb (bits per byte) logged; None for runs before it was
    steps: int | None
    tokens_per_s: float | None
    wall_s: float | None
    wall_from_mtimes: bool


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def natural_key(name: str) -> list[int | str]:
    """Sort "2" before "10": digit runs compare as numbers. re.split puts them at the odd positions."""
    return [int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", name))]


def is_run_dir(path: Path) -> bool:
    return any((path / marker).is_file() for marker in RUN_MARKERS)


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Each path is a run directory, or a directory with runs somewhere below it (a sweep)."""
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise UserError(f"{path} does not exist; give a sweep directory or run directories")
        if not path.is_dir():
            raise UserError(f"{path} is not a directory; give a sweep directory or run directories")
        if is_run_dir(path):
            found.append(path.resolve())
            continue
        below = []
        for dirpath, dirnames, _ in os.walk(path):
            if is_run_dir(Path(dirpath)):
                below.append(Path(dirpath).resolve())
                dirnames.clear()  # a run does not hold other runs
            else:
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # skip .hydra and the like
        if not below:
            raise UserError(f"{path} holds no runs: no directory in it has any of {', '.join(RUN_MARKERS)}")
        found.extend(below)
    return list(dict.fromkeys(found))  # the same run given twice is reported once


def read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        config = None
    if not isinstance(config, dict):
        warn(f"{path} is not a JSON object; the run's config is left out")
        return {}
    return with_added_model_keys(upgrade(config))  # so runs of earlier versions compare with today's


def read_run(path: Path, name: str) -> Run:
    overrides_path = path / ".hydra" / "overrides.yaml"
    overrides = (
        yaml.safe_load(overrides_path.read_text(encoding="utf-8")) if overrides_path.is_file() else None
    )
    error_path = path / "error.txt"
    error = None
    if error_path.is_file():
        lines = error_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        error = lines[0] if lines else "(error.txt is empty)"
    return Run(
        path=path,
        name=name,
        config=read_config(path / "effective_config.json"),
        overrides=[str(o) for o in overrides or []] if overrides_path.is_file() else None,
        records=read_records(path, warn),
        error=error,
        has_checkpoint=(path / "ckpt.pt").is_file(),
    )


def load_runs(paths: list[Path]) -> list[Run]:
    """Every run under ``paths``, named relative to their common parent, in natural order."""
    run_dirs = find_run_dirs(paths)
    base = Path(os.path.commonpath(run_dirs)) if len(run_dirs) > 1 else run_dirs[0].parent
    runs = [read_run(d, d.relative_to(base).as_posix()) for d in run_dirs]
    return sorted(runs, key=lambda run: natural_key(run.name))


MISSING_VALUE = object()  # a key a run's config does not have


def is_ignored(key: str, also: tuple[str, ...] = ()) -> bool:
    return key in IGNORED_KEYS or key in also or key.startswith(IGNORED_PREFIXES)


def differing_overrides(runs: list[Run], also: tuple[str, ...] = ()) -> list[str]:
    """Per run, its overrides whose key is not overridden identically in every run.

    Runs without overrides are left out of the comparison, or every override would differ.
    """
    by_key = [
        {override_key(o): o for o in run.overrides} if run.overrides is not None else None for run in runs
    ]
    known = [overrides for overrides in by_key if overrides is not None]
    keys = {key for overrides in known for key in overrides if not is_ignored(key, also)}
    differing = {
        key
        for key in keys
        if len({overrides.get(key) for overrides in known}) > 1 and not same_in_configs(key, runs)
    }
    return [
        ", ".join(o for key, o in overrides.items() if key in differing) if overrides else ""
        for overrides in by_key
    ]


def same_in_configs(key: str, runs: list[Run]) -> bool:
    """Whether every run's resolved config holds the same value (or node) at an override's ``key``: then
    typing it in one run and not another (``config_json=`` types every key) is no difference."""
    values = set()
    for run in runs:
        if not run.config:
            return False
        node: Any = run.config
        for part in key.lstrip("+~").replace("/", ".").split("."):
            node = node.get(part, MISSING_VALUE) if isinstance(node, dict) else MISSING_VALUE
        if node is MISSING_VALUE:  # a config that lacks the key cannot say
            return False
        values.add(json.dumps(node, sort_keys=True, default=str))
    return len(values) == 1


def format_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def differing_config(runs: list[Run], also: tuple[str, ...] = ()) -> list[str]:
    """Per run, ``key=value`` for every flattened config key whose value is not the same in all runs.

    Runs without a config (failed before writing one) are left out of the comparison, or every key
    would differ.
    """
    flats = [flat_items(run.config) if run.config else None for run in runs]
    known = [flat for flat in flats if flat is not None]
    keys = sorted({key for flat in known for key in flat if not is_ignored(key, also)})
    # json.dumps makes lists hashable; None (missing) differs from every value, "null" included
    differing = [key for key in keys if len({json.dumps(f[key]) if key in f else None for f in known}) > 1]
    return [
        ", ".join(f"{key}={format_value(flat[key])}" for key in differing if key in flat) if flat else ""
        for flat in flats
    ]


def differing_settings(runs: list[Run], also: tuple[str, ...] = ()) -> tuple[list[str], str]:
    """What tells the runs apart (keys in ``also`` left out), one string per run, and where it comes from.

    The command-line overrides say it in the user's own words, so they win when every run that has a
    config has them too; otherwise the resolved configs are compared key by key.
    """
    if all(run.overrides is not None for run in runs if run.config):
        return differing_overrides(
            runs, also
        ), "the overrides in `.hydra/overrides.yaml` that differ between runs"
    return differing_config(runs, also), "the `effective_config.json` values that differ between runs"


def wall_time(run: Run) -> tuple[float | None, bool]:
    """Seconds from the first to the last record's ``time``; without those, from the modification times of
    .hydra/config.yaml (written at start) to metrics.jsonl (written last). The flag says which."""
    times = [r["time"] for r in run.records if isinstance(r.get("time"), int | float)]
    if len(times) >= 2:
        return times[-1] - times[0], False
    start, end = run.path / ".hydra" / "config.yaml", run.path / "metrics.jsonl"
    if start.is_file() and end.is_file():
        return end.stat().st_mtime - start.stat().st_mtime, True
    return None, False


def lowest(records: list[dict[str, Any]], key: str) -> float | None:
    """The smallest finite number logged under ``key``; None if there is none."""
    finite = [r[key] for r in records if isinstance(r.get(key), int | float) and math.isfinite(r[key])]
    return min(finite) if finite else None


def summarize(run: Run, differs: str) -> Row:
    vals = [r for r in run.records if isinstance(r.get("val_loss"), int | float)]
    speeds = [r["tokens_per_s"] for r in run.records if isinstance(r.get("tokens_per_s"), int | float)]
    max_steps = run.config.get("max_steps")
    # Training always evaluates at max_steps, so that record marks a finished run.
    finished = isinstance(max_steps, int) and any(r["step"] >= max_steps for r in vals)
    if run.error is not None or not (finished or run.has_checkpoint):
        status = "failed"
    elif finished:
        status = "ok"
    else:
        status = "running/incomplete"
    wall_s, from_mtimes = wall_time(run)
    return Row(
        run=run,
        differs=differs,
        status=status,
        final_val=vals[-1]["val_loss"] if vals else None,
        best_val=lowest(vals, "val_loss"),
        best_bpb=lowest(vals, "val_bpb"),
        steps=max((r["step"] for r in run.records), default=None),
        tokens_per_s=statistics.median(speeds) if speeds else None,
        wall_s=wall_s,
        wall_from_mtimes=from_mtimes,
    )


def ranks_by_bpb(rows: list[Row]) -> bool:
    """Whether bits per byte ranks the runs: when every run with a val loss has it too. Runs with
    different tokenizers compare only on it (their losses are per token of different sizes); for
    runs with the same tokenizer and data it gives the val loss's order."""
    with_val = [row for row in rows if row.best_val is not None]
    return bool(with_val) and all(row.best_bpb is not None for row in with_val)


def sort_rows(rows: list[Row]) -> list[Row]:
    """Lowest best val bpb (or, without it, val loss) first; runs without one after those with one;
    failed runs last."""
    by_bpb = ranks_by_bpb(rows)

    def key(row: Row) -> tuple[bool, float]:
        best = row.best_bpb if by_bpb else row.best_val
        return row.status == "failed", best if best is not None else math.inf

    return sorted(rows, key=key)  # stable: ties keep the natural run order


def markdown_table(rows: list[Row]) -> str:
    """The table, columns padded so it also reads well as plain text; the best run is marked."""
    best = rows[0] if rows and rows[0].status != "failed" and rows[0].best_val is not None else None
    header = ["run", "differs", "status", "final val", "best val", "steps", "tokens/s", "wall time"]
    right = [False, False, False, True, True, True, True, True]
    with_bpb = any(row.best_bpb is not None for row in rows)  # runs from before val_bpb have none
    if with_bpb:
        header.insert(5, "best val bpb")
        right.insert(5, True)
    lines = []
    for row in rows:
        wall = "—"
        if row.wall_s is not None:
            wall = duration(row.wall_s, compact=True) + (" *" if row.wall_from_mtimes else "")
        cells = [
            row.run.name + (" (best)" if row is best else ""),
            row.differs or "—",
            row.status,
            f"{row.final_val:.4f}" if row.final_val is not None else "—",
            f"{row.best_val:.4f}" if row.best_val is not None else "—",
            str(row.steps) if row.steps is not None else "—",
            f"{row.tokens_per_s:,.0f}" if row.tokens_per_s is not None else "—",
            wall,
        ]
        if with_bpb:
            cells.insert(5, f"{row.best_bpb:.4f}" if row.best_bpb is not None else "—")
        lines.append([cell.replace("|", r"\|") for cell in cells])
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

    def join(cells: list[str]) -> str:
        padded = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        "-" * (w + 1) + ":" if r else "-" * (w + 2) for w, r in zip(widths, right, strict=True)
    )
    return "\n".join([join(header), rule + "|", *(join(line) for line in lines)])


def mean_std(values: list[float]) -> str:
    """``mean ± std`` (the sample standard deviation), or the value alone when there is one."""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def seed_table(rows: list[Row], settings: dict[str, str]) -> str:
    """One line per setting (``settings``: run name -> what differs apart from the seed) over its seeds:
    how many, final and best val loss as mean ± std, and the range of the best; lowest mean best first.
    Failed runs and runs without a val loss are left out."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        if row.status != "failed" and row.best_val is not None and row.final_val is not None:
            groups.setdefault(settings[row.run.name] or "—", []).append(row)
    lines = [
        "| setting | seeds | final val | best val | best val min..max |",
        "|---|--:|--:|--:|--:|",
    ]
    by_mean = sorted(groups.items(), key=lambda item: statistics.mean(r.best_val for r in item[1]))
    for setting, members in by_mean:
        best = [r.best_val for r in members]
        final = [r.final_val for r in members]
        cells = [
            setting,
            str(len(members)),
            mean_std(final),
            mean_std(best),
            f"{min(best):.4f}..{max(best):.4f}",
        ]
        lines.append("| " + " | ".join(cell.replace("|", r"\|") for cell in cells) + " |")
    return "\n".join(lines)


def report_markdown(title: str, rows: list[Row], differs_source: str, png_name: str | None) -> str:
    ranked_by = "best val bpb (bits per byte)" if ranks_by_bpb(rows) else "best val loss"
    notes = [
        f"best: the lowest {ranked_by} among runs that did not fail",
        f"differs: {differs_source}",
        "tokens/s: the median of the logged `tokens_per_s`",
    ]
    if any(row.best_bpb is not None for row in rows):
        notes.append(
            "best val bpb: the lowest `val_bpb`, val loss in bits per byte of text (comparable across "
            "tokenizers; an estimate: `python -m tinygpt.eval run=DIR` gives the whole split's)"
        )
    if any(row.wall_s is not None and not row.wall_from_mtimes for row in rows):
        notes.append("wall time: from the first to the last metrics record's `time`")
    if any(row.wall_from_mtimes for row in rows):
        notes.append(
            "wall time marked *: the records have no `time`, so from the modification times of "
            "`.hydra/config.yaml` (job start) to `metrics.jsonl` (last record)"
        )
    notes.append(
        "status: `failed` = an `error.txt`, or neither a checkpoint nor the final eval; "
        "`running/incomplete` = a checkpoint but not yet the final eval"
    )
    parts = [f"# Sweep report: {title}", "", markdown_table(rows), "", *(f"- {note}" for note in notes)]
    failures = [row for row in rows if row.run.error is not None]
    if failures:
        parts += ["", "## Failed runs", "", *(f"- `{row.run.name}`: {row.run.error}" for row in failures)]
    if png_name is not None:
        parts += ["", f"![loss curves]({png_name})"]
    return "\n".join(parts) + "\n"


def plot_groups(rows: list[Row], settings: dict[str, str]) -> list[tuple[str, list[Row]]]:
    """The plot's lines: runs that differ only by seed (``settings``: run name -> what differs apart from
    the seed) share one, labelled by their setting; every other run, a failed one included, has its own."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        key = settings.get(row.run.name, row.run.name) if row.status != "failed" else f"failed {row.run.name}"
        groups.setdefault(key, []).append(row)
    lines = []
    for setting, members in groups.items():
        if len(members) == 1:
            row = members[0]
            lines.append((f"{row.run.name}: {row.differs}" if row.differs else row.run.name, members))
        else:  # a setting with no override of its own beside others is the defaults
            name = setting or ("the defaults" if len(groups) > 1 else "all runs")
            lines.append((f"{name} ({len(members)} seeds)", members))
    return [(short_numbers(label), members) for label, members in lines]


def short_numbers(label: str) -> str:
    """A label's long decimals to 3 significant digits (a searched lr: 0.07071309960887003 -> 0.0707)."""
    return re.sub(r"\d+\.\d{5,}(e-?\d+)?", lambda m: f"{float(m.group()):.3g}", label)


def shared_keys(labels: list[str]) -> tuple[str | None, list[str]]:
    """When every line is a setting over seeds (``k1=v1, k2=v2 (N seeds)``) with the same keys in the
    same order, the keys once (the legend's title) and the labels as values alone; else (None, labels)."""
    parsed = []
    for label in labels:
        setting, _, seeds = label.rpartition(" (")
        pairs = [part.partition("=") for part in setting.split(", ")]
        if not seeds.endswith(" seeds)") or not all(equals for _, equals, _ in pairs):
            return None, labels
        parsed.append(([key for key, _, _ in pairs], [value for _, _, value in pairs], seeds))
    if len({tuple(keys) for keys, _, _ in parsed}) != 1:
        return None, labels
    return ", ".join(parsed[0][0]), [f"{', '.join(values)} ({seeds}" for _, values, seeds in parsed]


def seed_curve(rows: list[Row], key: str) -> tuple[list[int], list[float], list[float], list[float]]:
    """``key`` against step over the runs ``rows``: the steps every run logged, with the mean, min and max."""
    by_step: dict[int, list[float]] = {}
    for row in rows:
        for record in row.run.records:
            if record.get(key) is not None:
                by_step.setdefault(record["step"], []).append(record[key])
    steps = sorted(step for step, values in by_step.items() if len(values) == len(rows))
    values = [by_step[step] for step in steps]
    return steps, [statistics.fmean(v) for v in values], [min(v) for v in values], [max(v) for v in values]


def distinct_colours(n: int) -> list[Any]:
    """``n`` colours that do not repeat: a qualitative palette while it has enough, else a colormap's
    evenly spaced shades."""
    from matplotlib import colormaps

    for name in ("tab10", "tab20"):
        palette = colormaps[name].colors
        if n <= len(palette):
            return list(palette[:n])
    return [colormaps["turbo"](i / (n - 1)) for i in range(n)]


def loss_figure(rows: list[Row], logy: bool, settings: dict[str, str] | None = None) -> Any:
    """Val loss (markers) and train loss (faint lines), one colour per line: a run, or the mean of the
    runs that differ only by seed with their min..max as a band (``settings``, as in plot_groups)."""
    # Imported here so `import tinygpt.report` stays cheap; the Figure API needs no GUI backend
    # (saving a PNG goes through Agg) and keeps no global figure state.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    groups = plot_groups(rows, settings or {})
    title, labels = shared_keys([label for label, _ in groups])  # "rope, swiglu" under "model/pos, model/mlp"
    groups = [(label, members) for label, (_, members) in zip(labels, groups, strict=True)]
    fig = Figure(figsize=(11, 5.5), layout="constrained")
    ax = fig.add_subplot()
    val_highs: list[float] = []
    for (label, members), colour in zip(groups, distinct_colours(len(groups)), strict=True):
        steps, mean, low, high = seed_curve(members, "val_loss")
        val_highs += [v for v in high if math.isfinite(v)]
        ax.plot(steps, mean, marker="o", ms=4, color=colour, label=label)
        if len(members) > 1:  # the seeds' spread
            ax.fill_between(steps, low, high, color=colour, alpha=0.2, lw=0)
        # train loss is noisy and would hide the val curves: the same colour, faint
        steps, mean, _, _ = seed_curve(members, "train_loss")
        ax.plot(steps, mean, color=colour, lw=0.8, alpha=0.35)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    seeded = any(len(members) > 1 for _, members in groups)
    band = "\nover seeds: the mean, and min..max shaded" if seeded else ""
    ax.set_title(f"val loss (markers) and train loss (thin lines){band}", fontsize="medium")
    if logy:
        ax.set_yscale("log")
    if val_highs:  # the val curves fill the height: the first steps' train loss, far above, is cut off
        bottom = ax.get_ylim()[0]
        ax.set_ylim(bottom, max(val_highs) + 0.08 * (max(val_highs) - bottom))
    ax.grid(alpha=0.3)
    # beside the axes, never over the data
    fig.legend(loc="outside right upper", fontsize="small", title=title, title_fontsize="small")
    return fig


def plot_loss_curves(rows: list[Row], path: Path, logy: bool, settings: dict[str, str] | None = None) -> bool:
    """Write the loss curves to ``path``; False when matplotlib is not installed."""
    try:
        fig = loss_figure(rows, logy, settings)
    except ImportError:
        return False
    fig.savefig(path, dpi=120)
    return True


def shown_from(path: Path, out: Path) -> str:
    """A sweep's folder as the title of a report written to ``out`` names it: relative to ``out`` when
    both are in the working directory (a link that works from report.md), else by its name alone (an
    absolute temporary path means nothing to the report's reader)."""
    path, out, cwd = path.resolve(), out.resolve(), Path.cwd().resolve()
    if path == out:
        return path.name
    if path.is_relative_to(cwd) and out.is_relative_to(cwd):
        return Path(os.path.relpath(path, out)).as_posix()
    return path.name


def write_report(paths: list[Path], out: Path | None = None, logy: bool = False, seeds: bool = False) -> None:
    """report.md and loss_curves.png for the runs under ``paths`` (a sweep directory, or run directories),
    written to ``out`` (default: the sweep directory; for run directories, the cwd); the table printed."""
    runs = load_runs(paths)
    one_sweep = len(paths) == 1 and not is_run_dir(paths[0])
    out = out or (paths[0] if one_sweep else Path.cwd())
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the output directory {out}: {exc.strerror}") from exc

    labels, differs_source = differing_settings(runs)
    rows = sort_rows([summarize(run, label) for run, label in zip(runs, labels, strict=True)])
    seed_settings, _ = differing_settings(runs, also=("seed",))
    settings = {run.name: setting for run, setting in zip(runs, seed_settings, strict=True)}
    png = out / "loss_curves.png"
    plotted = plot_loss_curves(rows, png, logy, settings)
    title = " ".join(shown_from(p, out) for p in paths)
    markdown = report_markdown(title, rows, differs_source, png.name if plotted else None)
    print(markdown_table(rows))
    if seeds:
        table = seed_table(rows, settings)
        markdown += (
            f"\n## Over seeds\n\n{table}\n\n- mean ± std: the sample standard deviation over the seeds\n"
        )
        print(f"\n{table}")
    (out / "report.md").write_text(markdown, encoding="utf-8")
    print(f"\nwrote {out / 'report.md'}" + (f" and {png}" if plotted else ""))
    if not plotted:
        print(f"loss_curves.png needs matplotlib: {PNG_HINT}")
