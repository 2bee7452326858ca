"""Sweep report: ``python -m tinygpt.report SWEEP_DIR`` or ``python -m tinygpt.report RUN_DIR ...``
(``paths=[...]`` is the same; the report itself: tinygpt/evaluation/report.py)."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from tinygpt.config.argv import command_line, report_args
from tinygpt.config.commands import check_command
from tinygpt.config.schema import conf_dir
from tinygpt.errors import exit_on_user_error


def cli(cfg: DictConfig) -> None:
    """The command, given its composed config: check it, then write report.md and loss_curves.png."""
    from tinygpt.evaluation.report import write_report  # torch: not imported for --help

    check_command("report", cfg)
    out = None if cfg.out is None else Path(cfg.out)
    write_report([Path(p) for p in cfg.paths], out, cfg.logy, cfg.seeds)


@command_line("report", report_args)  # SWEEP_DIR / RUN_DIR ... typed bare become paths=[...]
@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="report")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    cli(cfg)


if __name__ == "__main__":
    main()
