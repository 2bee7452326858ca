"""The sweep report: a real sweep end to end, and hand-made run directories for each rule."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, TINY, run_cli
from hydra import compose, initialize_config_dir

from tinygpt.config.argv import report_args
from tinygpt.config.schema import conf_dir
from tinygpt.evaluation.report import differing_settings, distinct_colours, load_runs, loss_figure, summarize
from tinygpt.report import cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(path, *, config=None, records=(), overrides=None, ckpt=True, error=None, lines=()):
    """A run directory as training leaves it; ``lines`` are appended to metrics.jsonl verbatim."""
    path.mkdir(parents=True)
    if config is not None:
        (path / "effective_config.json").write_text(json.dumps(config))
    if overrides is not None:
        (path / ".hydra").mkdir()
        (path / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    text = "".join(json.dumps(r) + "\n" for r in records) + "".join(line + "\n" for line in lines)
    (path / "metrics.jsonl").write_text(text)
    if ckpt:
        (path / "ckpt.pt").write_bytes(b"")
    if error is not None:
        (path / "error.txt").write_text(error + "\n")
    return path


def run_report(args: list[str]) -> None:
    """``python -m tinygpt.report ARGS`` in this process: the command line read as the command reads it."""
    overrides = report_args(args)
    with initialize_config_dir(version_base="1.3", config_dir=conf_dir()):
        cfg = compose("report", overrides=overrides)
    cli(cfg)


def finished(best: float, max_steps: int = 4, **extra) -> dict:
    """The arguments of make_run for a run that reached max_steps with ``best`` as its best val loss."""
    records = [
        {"step": 1, "train_loss": best + 1.5, "tokens_per_s": 10.0},  # a slow first interval: warm-up
        {"step": 2, "train_loss": best + 1.0, "tokens_per_s": 100.0},
        {"step": 2, "val_loss": best},
        {"step": 4, "train_loss": best + 0.5, "tokens_per_s": 300.0},
        {"step": 4, "val_loss": best + 0.25},
    ]
    return {"config": {"max_steps": max_steps}, "records": records, **extra}


def table_rows(report: str) -> list[list[str]]:
    """The table's data rows, cells stripped (header and rule left out)."""
    rows = [line for line in report.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def test_report_on_a_real_two_job_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "-m", "optim=adamw,lion", "max_steps=6", "eval_interval=3", *TINY, f"hydra.sweep.dir={sweep}"
    )
    assert proc.returncode == 0, proc.stderr
    assert f"sweep done: {sweep}; compare its runs with: python -m tinygpt.report {sweep}" in proc.stderr
    proc = run_cli(str(sweep), module="tinygpt.report")
    assert proc.returncode == 0, proc.stderr

    report = (sweep / "report.md").read_text()
    rows = table_rows(report)
    assert sorted(row[1] for row in rows) == ["optim=adamw", "optim=lion"]
    assert [row[2] for row in rows] == ["ok", "ok"]
    assert [row[6] for row in rows] == ["6", "6"]
    assert rows[0][0].endswith("(best)") and float(rows[0][5]) <= float(rows[1][5])
    for row in rows:
        metrics = [json.loads(line) for line in (sweep / row[0].split()[0] / "metrics.jsonl").open()]
        vals = [m["val_loss"] for m in metrics if "val_loss" in m]
        bpbs = [m["val_bpb"] for m in metrics if "val_bpb" in m]
        assert row[3:6] == [f"{vals[-1]:.4f}", f"{min(vals):.4f}", f"{min(bpbs):.4f}"]
    assert "the overrides in `.hydra/overrides.yaml`" in report
    assert "![loss curves](loss_curves.png)" in report
    for line in report.splitlines()[2:6]:  # the header, rule and both rows are printed as written
        assert line in proc.stdout

    png = (sweep / "loss_curves.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    run_report([str(sweep), "--logy", "--out", str(tmp_path / "logy")])
    assert (tmp_path / "logy" / "loss_curves.png").read_bytes() != png


def test_only_differing_overrides_are_shown(tmp_path):
    common = ["max_steps=6", "model.n_embd=32"]
    make_run(tmp_path / "0", overrides=["optim=adamw", *common, "resume=true"])
    make_run(tmp_path / "1", overrides=["optim=lion", *common, "+model.dropout=0.1"])
    make_run(tmp_path / "2", error="failed before Hydra wrote anything")  # left out of the comparison
    labels, source = differing_settings(load_runs([tmp_path]))
    assert labels == ["optim=adamw", "optim=lion, +model.dropout=0.1", ""]  # resume=true is not a setting
    assert "overrides.yaml" in source


def test_without_overrides_the_configs_are_compared_key_by_key(tmp_path):
    base = {"seed": 1, "resume": False, "optim": {"lr": 1e-3, "betas": [0.9, 0.95]}, "model": {"norm": "ln"}}
    make_run(tmp_path / "a", config=base)
    make_run(tmp_path / "b", config={**base, "resume": True, "optim": {"lr": 3e-4, "betas": [0.9, 0.95]}})
    make_run(tmp_path / "c", config={**base, "model": {"norm": "rms", "qk_norm": True}})
    make_run(tmp_path / "d", error="failed before writing its config")
    labels, source = differing_settings(load_runs([tmp_path]))
    assert labels == [
        "model.norm=ln, optim.lr=0.001",
        "model.norm=ln, optim.lr=0.0003",
        "model.norm=rms, model.qk_norm=true, optim.lr=0.001",
        "",
    ]
    assert "effective_config.json" in source


def test_status_and_order_failed_runs_last(tmp_path, capsys):
    make_run(tmp_path / "a", **finished(2.5))
    make_run(tmp_path / "b", **finished(2.0))
    make_run(tmp_path / "c", **finished(1.0), error="CUDA out of memory")  # best loss, but it failed
    make_run(tmp_path / "d", **finished(1.5, max_steps=10), ckpt=False)  # died before its first checkpoint
    make_run(tmp_path / "e", **finished(2.2, max_steps=10))  # checkpointed, not done yet
    make_run(tmp_path / "f", config={"max_steps": 10}, records=[{"step": 1, "train_loss": 4.0}])
    run_report([str(tmp_path), "--out", str(tmp_path / "out")])

    report = (tmp_path / "out" / "report.md").read_text()
    rows = table_rows(report)
    assert [(row[0], row[2]) for row in rows] == [
        ("b (best)", "ok"),
        ("e", "running/incomplete"),
        ("a", "ok"),
        ("f", "running/incomplete"),
        ("c", "failed"),
        ("d", "failed"),
    ]
    assert rows[0][3:7] == ["2.2500", "2.0000", "4", "100"]  # final val, best val, steps, median tokens/s
    assert "- `c`: CUDA out of memory" in report
    assert "b (best)" in capsys.readouterr().out


def test_bits_per_byte_column_shows_each_runs_best_val_bpb_when_any_run_logged_it(tmp_path):
    with_bpb = finished(2.0)
    with_bpb["records"] = [
        {**r, "val_bpb": r["val_loss"] * 0.9 + 0.05} for r in with_bpb["records"] if "val_loss" in r
    ] + [{"step": 3, "val_loss": float("nan")}]  # a diverged eval: not the best
    make_run(tmp_path / "a", **with_bpb)
    make_run(tmp_path / "b", **finished(2.5))  # trained before val_bpb was logged
    run_report([str(tmp_path), "--out", str(tmp_path / "out")])
    report = (tmp_path / "out" / "report.md").read_text()
    header = report.splitlines()[2]
    assert [cell.strip() for cell in header.strip("|").split("|")][4:6] == ["best val", "best val bpb"]
    assert [row[4:6] for row in table_rows(report)] == [["2.0000", "1.8500"], ["2.5000", "—"]]
    assert "bits per byte" in report

    run_report([str(tmp_path / "b"), "--out", str(tmp_path / "out_b")])
    assert "bpb" not in (tmp_path / "out_b" / "report.md").read_text()  # no run has it: no column


def test_runs_that_all_log_bits_per_byte_are_ranked_by_it(tmp_path):
    """A BPE run has the higher loss per token (its tokens are longer) but the lower bits per byte."""
    for name, loss, bpb in (("char", 1.2, 1.75), ("bpe", 3.4, 1.5)):
        run = finished(loss)
        run["records"] = [{**r, "val_bpb": bpb} if "val_loss" in r else r for r in run["records"]]
        make_run(tmp_path / name, **run)
    run_report([str(tmp_path), "--out", str(tmp_path / "out")])
    report = (tmp_path / "out" / "report.md").read_text()
    assert [row[0] for row in table_rows(report)] == ["bpe (best)", "char"]
    assert "best: the lowest best val bpb" in report


def test_runs_are_named_and_ordered_naturally(tmp_path):
    for job in ("10", "2", "1"):
        make_run(tmp_path / "sweep" / job, **finished(2.0))
    assert [run.name for run in load_runs([tmp_path / "sweep"])] == ["1", "2", "10"]
    runs = load_runs([tmp_path / "sweep" / "10", tmp_path / "sweep" / "2"])
    assert [run.name for run in runs] == ["2", "10"]


def test_a_corrupt_metrics_line_is_skipped_with_a_warning(tmp_path, capsys):
    run = make_run(
        tmp_path / "run",
        **finished(2.0),
        lines=['{"step": 5, "train_loss": 1.', "[1, 2]", '{"step": 6, "val_loss": 1.75}'],
    )
    run_report([str(run), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert f"{run / 'metrics.jsonl'}:6 is not a metrics record" in err
    assert f"{run / 'metrics.jsonl'}:7 is not a metrics record" in err
    (row,) = table_rows((tmp_path / "report.md").read_text())
    assert row[3:6] == ["1.7500", "1.7500", "6"]  # the good line after the bad ones still counts


def test_wall_time_from_record_times_or_file_mtimes(tmp_path):
    timed = [{"step": 1, "train_loss": 3.0, "time": 1000.0}, {"step": 4, "val_loss": 2.0, "time": 1075.0}]
    make_run(tmp_path / "timed", config={"max_steps": 4}, records=timed)
    untimed = make_run(tmp_path / "untimed", **finished(2.5))
    (untimed / ".hydra").mkdir()
    (untimed / ".hydra" / "config.yaml").write_text("max_steps: 4\n")
    os.utime(untimed / ".hydra" / "config.yaml", (5000, 5000))
    os.utime(untimed / "metrics.jsonl", (5000 + 2 * 3600 + 5 * 60, 5000 + 2 * 3600 + 5 * 60))
    run_report([str(tmp_path), "--out", str(tmp_path)])

    report = (tmp_path / "report.md").read_text()
    assert [row[7] for row in table_rows(report)] == ["1m 15s", "2h 05m *"]
    assert "wall time: from the first to the last metrics record's `time`" in report
    assert "wall time marked *: the records have no `time`" in report


def test_without_matplotlib_the_markdown_is_still_written(tmp_path, monkeypatch, capsys):
    run = make_run(tmp_path / "run", **finished(2.0))
    for module in ("matplotlib", "matplotlib.figure"):  # None in sys.modules makes the import fail
        monkeypatch.setitem(sys.modules, module, None)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    run_report([str(run)])  # given run directories, the report goes to the current directory
    assert "pip install -e '.[report]' in the checkout" in capsys.readouterr().out
    assert "loss_curves.png" not in (tmp_path / "cwd" / "report.md").read_text()
    assert os.listdir(tmp_path / "cwd") == ["report.md"]


def test_importing_the_report_loads_neither_matplotlib_nor_torch():
    code = "import sys, tinygpt.report; print(sorted({'matplotlib', 'torch'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_bad_paths_get_one_clear_line(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "file.txt").write_text("x")
    cases = {
        str(tmp_path / "missing"): "does not exist",
        str(tmp_path / "empty"): "holds no runs",
        str(tmp_path / "file.txt"): "is not a directory",
    }
    for path, message in cases.items():
        proc = run_cli(path, module="tinygpt.report")
        assert proc.returncode == 2
        assert proc.stderr.startswith("error: ") and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_a_diverged_run_reads_back_as_nan_not_as_its_last_good_value(tmp_path):
    records = [{"step": 2, "val_loss": 2.0}, {"step": 4, "train_loss": None}, {"step": 4, "val_loss": None}]
    make_run(tmp_path / "diverged", config={"max_steps": 4}, records=records)
    run_report([str(tmp_path)])
    row = table_rows((tmp_path / "report.md").read_text())[0]
    assert "nan" in [cell.lower() for cell in row]
    assert "2.0000" in row  # the best val loss is still the finite one


def test_the_plot_names_each_run_and_counts_steps_in_whole_numbers(tmp_path):
    make_run(tmp_path / "0", overrides=["optim=adamw"], **finished(2.0))
    make_run(tmp_path / "1", overrides=["optim=lion"], **finished(1.5))
    runs = load_runs([tmp_path])
    labels, _ = differing_settings(runs)
    fig = loss_figure([summarize(run, label) for run, label in zip(runs, labels, strict=True)], logy=False)
    (ax,), (legend,) = fig.axes, fig.legends  # the legend beside the axes, not over the curves
    assert [t.get_text() for t in legend.get_texts()] == ["0: optim=adamw", "1: optim=lion"]
    assert all(float(tick).is_integer() for tick in ax.get_xticks())
    assert not ax.collections  # no seeds, no bands


def test_runs_that_differ_by_seed_are_one_mean_line_with_their_spread_in_distinct_colours(tmp_path):
    for i, (opt, seed, best) in enumerate([("lion", 1, 2.0), ("adamw", 1, 1.5), ("lion", 2, 2.4),
                                           ("adamw", 2, 1.7), ("sgd", 1, 3.0)]):  # fmt: skip
        make_run(tmp_path / str(i), overrides=[f"optim={opt}", f"seed={seed}"], **finished(best))
    runs = load_runs([tmp_path])
    labels, _ = differing_settings(runs)
    settings, _ = differing_settings(runs, also=("seed",))
    rows = [summarize(run, label) for run, label in zip(runs, labels, strict=True)]
    fig = loss_figure(rows, logy=False, settings=dict(zip([r.name for r in runs], settings, strict=True)))
    (ax,), (legend,) = fig.axes, fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts == ["optim=lion (2 seeds)", "optim=adamw (2 seeds)", "4: optim=sgd, seed=1"]
    val_lines = [line for line in ax.lines if line.get_marker() == "o"]
    lion = val_lines[0].get_ydata()
    assert list(lion) == pytest.approx([2.2, 2.45])  # the seeds' mean val loss at each step (see finished)
    (low, high) = ax.collections[0].get_paths()[0].get_extents().intervaly
    assert (low, high) == pytest.approx((2.0, 2.65))  # min..max over the seeds
    assert len(ax.collections) == 2  # a band for each setting with seeds, none for the single run
    assert (
        3.25 < ax.get_ylim()[1] < 4.5
    )  # the val curves (up to 3.25) fill the height; step 1's train loss is cut
    colours = [tuple(line.get_color()) for line in val_lines]
    assert len(set(colours)) == len(colours) == 3
    assert len(set(map(tuple, distinct_colours(25)))) == 25  # past tab20's twenty: a colormap's shades


def test_seeds_folds_the_runs_of_a_setting_into_mean_std_and_range(tmp_path, capsys):
    for i, (opt, seed, best) in enumerate([("lion", 1, 2.0), ("adamw", 1, 1.5), ("lion", 2, 2.2),
                                           ("adamw", 2, 1.7), ("adamw", 3, 1.6)]):  # fmt: skip
        make_run(tmp_path / str(i), overrides=[f"optim={opt}", f"seed={seed}"], **finished(best))
    make_run(tmp_path / "5", overrides=["optim=adamw", "seed=4"], **finished(0.5), error="diverged")
    run_report([str(tmp_path), "--seeds"])

    report = (tmp_path / "report.md").read_text()
    seeds = report.split("## Over seeds")[1]
    # final val = best + 0.25 (see finished); the failed run is left out; the lower mean comes first
    assert table_rows(seeds) == [
        ["optim=adamw", "3", "1.8500 ± 0.1000", "1.6000 ± 0.1000", "1.5000..1.7000"],
        ["optim=lion", "2", "2.3500 ± 0.1414", "2.1000 ± 0.1414", "2.0000..2.2000"],
    ]
    assert "optim=adamw, seed=1" in report.split("## Over seeds")[0]  # the per-run table is unchanged
    assert "| optim=adamw | 3 |" in capsys.readouterr().out


def test_the_directories_and_former_options_typed_bare_mean_the_keys(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs / "a", **finished(2.0))
    make_run(runs / "b", **finished(2.5))
    assert report_args([str(runs / "a"), str(runs / "b"), "--seeds", "--out", "x y", "--logy"]) == [
        f"paths=['{runs / 'a'}','{runs / 'b'}']",
        "seeds=true",
        "out='x y'",
        "logy=true",
    ]
    old = run_cli(str(runs), "--seeds", "--out", str(tmp_path / "old"), module="tinygpt.report")
    new = run_cli(f"paths=['{runs}']", "seeds=true", f"out={tmp_path / 'new'}", module="tinygpt.report")
    assert old.returncode == new.returncode == 0, old.stderr + new.stderr
    assert (tmp_path / "old" / "report.md").read_text() == (tmp_path / "new" / "report.md").read_text()
    assert "over seeds" in (tmp_path / "new" / "report.md").read_text().lower()


def test_an_unknown_option_or_no_directory_gets_one_line():
    for args, message in [
        (["runs", "--log-y"], "unknown option --log-y; report's settings"),
        ([], "paths is required: python -m tinygpt.report SWEEP_DIR"),
    ]:
        proc = run_cli(*args, module="tinygpt.report")
        assert proc.returncode == 2 and proc.stderr.startswith("error: ") and message in proc.stderr, (
            proc.stderr
        )
        assert len(proc.stderr.strip().splitlines()) == 1


def test_keys_a_json_config_types_differ_only_where_the_configs_differ(tmp_path):
    """A config_json run types every key of its file; next to a run that typed only a few, only the
    keys whose resolved values differ are what tells them apart."""
    config = {"max_steps": 6, "seed": 1, "model": {"n_layer": 2, "n_embd": 32}, "optim": {"lr": 0.001}}
    typed = ["max_steps=6", "model.n_layer=2", "model.n_embd=32", "optim.lr=0.001"]
    make_run(tmp_path / "0", config=config, overrides=["max_steps=6", "model.n_layer=2", "model.n_embd=32"])
    make_run(tmp_path / "1", config={**config, "seed": 2}, overrides=[*typed, "seed=2"])
    make_run(
        tmp_path / "2", config={**config, "optim": {"lr": 0.01}}, overrides=[*typed[:3], "optim.lr=0.01"]
    )
    labels, _ = differing_settings(load_runs([tmp_path]))
    assert labels == ["", "optim.lr=0.001, seed=2", "optim.lr=0.01"]


def test_the_title_names_the_sweeps_from_where_the_report_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for sweep in ("multirun/a", "multirun/b"):
        make_run(tmp_path / sweep / "0", **finished(2.0))
    run_report(["multirun/a", "multirun/b", "out=results/ab"])
    assert (
        (tmp_path / "results/ab/report.md")
        .read_text()
        .startswith("# Sweep report: ../../multirun/a ../../multirun/b\n")
    )
    run_report(["multirun/a"])  # written into the sweep itself
    assert (tmp_path / "multirun/a/report.md").read_text().startswith("# Sweep report: a\n")
    elsewhere = tmp_path.parent / f"{tmp_path.name}_elsewhere"
    make_run(elsewhere / "c" / "0", **finished(2.0))
    run_report([str(elsewhere / "c"), "out=results/c"])  # outside the working directory: its name
    assert (tmp_path / "results/c/report.md").read_text().startswith("# Sweep report: c\n")


def test_settings_with_the_same_keys_are_labelled_by_their_values_under_the_keys(tmp_path):
    """A sweep over two keys reads "layernorm, rope (2 seeds)" under the legend title "model/norm,
    model/pos", not the keys again on every line."""
    grid = [("layernorm", "rope"), ("rmsnorm", "learned")]
    for i, ((norm, pos), seed) in enumerate((setting, seed) for setting in grid for seed in (1, 2)):
        overrides = [f"model/norm={norm}", f"model/pos={pos}", f"seed={seed}"]
        make_run(tmp_path / str(i), overrides=overrides, **finished(2.0 + i / 10))
    runs = load_runs([tmp_path])
    labels, _ = differing_settings(runs)
    settings, _ = differing_settings(runs, also=("seed",))
    rows = [summarize(run, label) for run, label in zip(runs, labels, strict=True)]
    fig = loss_figure(rows, logy=False, settings=dict(zip([r.name for r in runs], settings, strict=True)))
    (legend,) = fig.legends
    assert legend.get_title().get_text() == "model/norm, model/pos"
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts == ["layernorm, rope (2 seeds)", "rmsnorm, learned (2 seeds)"]


def test_a_setting_without_overrides_reads_as_the_defaults_and_long_decimals_are_cut(tmp_path):
    from tinygpt.evaluation.report import short_numbers

    for i, (extra, seed) in enumerate([([], 1), ([], 2), (["optim=lion"], 1), (["optim=lion"], 2)]):
        make_run(tmp_path / str(i), overrides=[*extra, f"seed={seed}"], **finished(2.0))
    runs = load_runs([tmp_path])
    labels, _ = differing_settings(runs)
    settings, _ = differing_settings(runs, also=("seed",))
    rows = [summarize(run, label) for run, label in zip(runs, labels, strict=True)]
    fig = loss_figure(rows, logy=False, settings=dict(zip([r.name for r in runs], settings, strict=True)))
    texts = sorted(t.get_text() for t in fig.legends[0].get_texts())
    assert texts == ["optim=lion (2 seeds)", "the defaults (2 seeds)"]

    assert short_numbers("search_muon/4: optim.lr=0.07071309960887003, optim=muon") == (
        "search_muon/4: optim.lr=0.0707, optim=muon"
    )
    assert short_numbers("optim.lr=0.014 (3 seeds)") == "optim.lr=0.014 (3 seeds)"  # typed values stay
