"""Where the Hydra config tree lives, and checks of the top-level training values."""

from pathlib import Path

from omegaconf import DictConfig

from tinygpt.errors import UserError


def conf_dir() -> str:
    """conf/ ships inside the wheel as tinygpt/conf; in a source checkout it sits beside tinygpt/."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise RuntimeError(
        f"TinyGPT's config tree is missing: looked in {here / 'conf'} and {here.parent / 'conf'}"
    )


DEVICES = ("auto", "cpu", "cuda", "mps")


def check_train_config(cfg: DictConfig) -> None:
    """Refuse values the loop cannot run with, naming the key and what it expects."""
    for key in (
        "max_steps",
        "batch_size",
        "grad_accum_steps",
        "eval_interval",
        "eval_iters",
        "log_interval",
        "ckpt_interval",
    ):
        value = cfg[key]
        if not isinstance(value, int) or value < 1:
            raise UserError(f"{key} must be a positive integer, got {value!r}")
    if not isinstance(cfg.sample_interval, int) or cfg.sample_interval < 0:
        raise UserError(
            f"sample_interval must be a non-negative integer (0 disables), got {cfg.sample_interval!r}"
        )
    if cfg.batch_size % cfg.grad_accum_steps:
        raise UserError(
            f"batch_size ({cfg.batch_size}) must be divisible by grad_accum_steps ({cfg.grad_accum_steps})"
        )
    if cfg.grad_clip < 0:
        raise UserError(f"grad_clip must be >= 0 (0 disables clipping), got {cfg.grad_clip}")
    if cfg.device not in DEVICES:
        raise UserError(f"device must be one of {', '.join(DEVICES)}, got {cfg.device!r}")
    if cfg.optim.lr <= 0:
        raise UserError(f"optim.lr must be positive, got {cfg.optim.lr}")
