"""Training entry point: ``python -m tinygpt.train [overrides]`` (the loop: tinygpt/training/loop.py)."""

import gc
import logging
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from tinygpt.config.argv import command_line, training_args
from tinygpt.config.schema import conf_dir
from tinygpt.errors import exit_on_user_error
from tinygpt.runtime.startup import StartupClock, collections_paused, process_start
from tinygpt.training.stopping import Interrupted, exit_on_interrupt
from tinygpt.training.unstarted import removes_unstarted_runs

log = logging.getLogger("tinygpt")
IMPORTED = time.perf_counter()  # the end of the start-up's first phase, launch: Python, Hydra, this module


@removes_unstarted_runs  # a failed command leaves no run directory in which training never started
@exit_on_interrupt  # SIGINT/SIGTERM: the step finishes, ckpt.pt is written, one line says how to resume
@command_line("train", training_args)  # --help, flat keys, config_json=FILE and typos, before Hydra
@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float:
    clock = startup_clock()
    with collections_paused():  # what these imports make lives until exit: no collection looks at it
        import torch._dynamo  # noqa: F401  # every torch optimizer imports it on first use: here, unscanned

        from tinygpt.runtime.distributed import close_world, init_world  # torch: not imported for --help
        from tinygpt.training.launch import run_sweep_job, shared_run_dir
        from tinygpt.training.loop import train
        from tinygpt.training.resume import resumed_config
    clock.mark("imports")
    gc.freeze()  # torch's objects live until exit: out of every later collection (see below)
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    typed = list(hydra_cfg.overrides.task)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        world = init_world(cfg.device, cfg.dist_timeout_s)
        finished = False
        try:
            run_dir = shared_run_dir(run_dir, world)
            if not world.is_main:
                log.setLevel(logging.WARNING)  # rank 0 alone reports progress
            cfg, overrides, ckpt = resumed_config(cfg, run_dir, typed)  # a resume keeps the run's own recipe
            best = train(cfg, run_dir, world, overrides, ckpt, clock)["best_val_loss"]
            finished = True
            return best
        except Interrupted as stop:
            finished = stop.step is not None  # all ranks stopped at this step: they leave the group together
            raise
        finally:
            close_world(world, finished)
    if "group" in cfg.logger and cfg.logger.group is None:
        cfg.logger.group = Path(hydra_cfg.sweep.dir).name  # W&B groups a sweep's jobs together
    return run_sweep_job(cfg, run_dir, typed, hydra_cfg.job.num)


def startup_clock() -> StartupClock:
    """The clock of this command's start-up: from the process's start when this module is the command
    (``python -m tinygpt.train``, torchrun's ranks), with its launch and config phases marked; from now
    when main is called in a process that was started for something else."""
    main_module = getattr(sys.modules["__main__"], "__spec__", None)
    start = process_start() if main_module is not None and main_module.name == __name__ else None
    if start is None:
        return StartupClock()
    clock = StartupClock(start)
    clock.mark("launch", IMPORTED)
    clock.mark("config")  # the command line checked, Hydra's compose, the run directory locked
    return clock


if __name__ == "__main__":
    # Call the copy of this module imported under its real name: launchers that pickle the task
    # function (joblib, submitit) can then find it by reference instead of serializing __main__.
    from tinygpt.train import main as entry

    # The objects alive once torch and Hydra are imported live until exit: main imports torch with the
    # collector paused and then leaves them out of later collections, and, with the rest, out of the
    # interpreter's last one at exit (~0.5 s); the OS frees them instead, and none needs finalizing.
    entry()
    gc.freeze()
