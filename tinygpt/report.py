"""Sweep report: ``python -m tinygpt.report SWEEP_DIR`` or ``python -m tinygpt.report RUN_DIR ...``
(the report itself: tinygpt/evaluation/report.py)."""

import argparse
from pathlib import Path

from tinygpt.errors import exit_on_user_error
from tinygpt.evaluation.report import write_report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tinygpt.report",
        description="Summarize a sweep or several runs: report.md (one row per run) and loss_curves.png.",
    )
    parser.add_argument("paths", nargs="+", type=Path, help="a Hydra multirun directory, or run directories")
    parser.add_argument(
        "--out", type=Path, help="where to write (default: the sweep directory; for run directories, the cwd)"
    )
    parser.add_argument("--logy", action="store_true", help="log-scale loss axis in the plot")
    parser.add_argument(
        "--seeds",
        action="store_true",
        help="also a table over seeds: runs that differ only in `seed` as one line, mean ± std and range",
    )
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    write_report(args.paths, args.out, args.logy, args.seeds)


if __name__ == "__main__":
    main()
