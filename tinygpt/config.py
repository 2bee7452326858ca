"""Where the Hydra config tree lives, and checks of the top-level training values."""

from pathlib import Path

from omegaconf import DictConfig

from tinygpt.device import DEVICES
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


PRECISIONS = ("fp32", "bf16", "fp16")


def check_train_config(cfg: DictConfig, world_size: int = 1) -> None:
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
    if cfg.sample_interval and (not isinstance(cfg.sample_tokens, int) or cfg.sample_tokens < 1):
        raise UserError(
            f"sample_tokens must be a positive integer when sample_interval > 0, got {cfg.sample_tokens!r}"
        )
    if cfg.batch_size % (world_size * cfg.grad_accum_steps):  # batch_size is global: ranks x micro-steps
        split = (
            f"world size x grad_accum_steps ({world_size} x {cfg.grad_accum_steps})"
            if world_size > 1
            else f"grad_accum_steps ({cfg.grad_accum_steps})"
        )
        raise UserError(f"batch_size ({cfg.batch_size}, global) must be divisible by {split}")
    if cfg.grad_clip < 0:
        raise UserError(f"grad_clip must be >= 0 (0 disables clipping), got {cfg.grad_clip}")
    if cfg.device not in DEVICES:
        raise UserError(f"device must be one of {', '.join(DEVICES)}, got {cfg.device!r}")
    if cfg.optim.lr <= 0:
        raise UserError(f"optim.lr must be positive, got {cfg.optim.lr}")
    if cfg.precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {cfg.precision!r}")
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise UserError(f"label_smoothing must be in [0, 1), got {cfg.label_smoothing}")
    if cfg.z_loss < 0:
        raise UserError(f"z_loss must be >= 0, got {cfg.z_loss}")
    if cfg.ema_decay is not None and not 0.0 < cfg.ema_decay < 1.0:
        raise UserError(f"ema_decay must be in (0, 1) or null, got {cfg.ema_decay}")
    start = cfg.curriculum_start_block_size
    if start is not None and not 1 <= start <= cfg.model.block_size:
        raise UserError(
            f"curriculum_start_block_size must be between 1 and model.block_size ({cfg.model.block_size}), "
            f"got {start}"
        )
    if cfg.curriculum_steps is not None and cfg.curriculum_steps < 0:
        raise UserError(f"curriculum_steps must be >= 0 or null, got {cfg.curriculum_steps}")
    if cfg.resume not in (True, False, "auto"):
        raise UserError(f"resume must be true, false or auto, got {cfg.resume!r}")
    if not isinstance(cfg.max_skipped_steps, int) or cfg.max_skipped_steps < 1:
        raise UserError(f"max_skipped_steps must be a positive integer, got {cfg.max_skipped_steps!r}")
