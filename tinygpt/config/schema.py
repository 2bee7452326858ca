"""Where the Hydra config tree lives, the schema of the top-level training keys, and the checks a
schema cannot express."""

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from tinygpt.errors import UserError
from tinygpt.runtime.device import DEVICES, DTYPES


def conf_dir() -> str:
    """conf/ ships inside the wheel as tinygpt/conf; in a source checkout it sits beside tinygpt/."""
    package = Path(__file__).resolve().parents[1]  # tinygpt/
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise RuntimeError(
        f"TinyGPT's config tree is missing: looked in {package / 'conf'} and {package.parent / 'conf'}"
    )


class Choice(str, Enum):
    """A config value from a fixed set: Hydra checks it, and it compares and prints as its text."""

    def __str__(self) -> str:
        return self.value


Device = Choice("Device", {name: name for name in DEVICES})
Precision = Choice("Precision", {name: name for name in DTYPES})
CompileMode = Choice("CompileMode", {m: m for m in ("default", "reduce-overhead", "max-autotune")})


@dataclass
class TrainSchema:
    """The types of the top-level training keys (their values and comments are in conf/train.yaml).

    Hydra checks every value against this when it composes the config, command line included, and
    names the key and the expected type or choices. ``check_train_config`` adds what a type cannot say.
    """

    seed: int = MISSING
    device: Device = MISSING
    max_steps: int = MISSING
    stop_at_val_loss: float | None = MISSING
    batch_size: int = MISSING
    grad_accum_steps: int = MISSING
    grad_clip: float = MISSING
    eval_interval: int = MISSING
    eval_iters: int = MISSING
    log_interval: int = MISSING
    sample_interval: int = MISSING
    sample_tokens: int = MISSING
    ckpt_interval: int = MISSING
    resume: Any = MISSING  # true | false | auto
    precision: Precision = MISSING
    compile: bool = MISSING
    compile_mode: CompileMode = MISSING
    cuda_graph: bool = MISSING
    grad_checkpointing: bool = MISSING
    label_smoothing: float = MISSING
    z_loss: float = MISSING
    ema_decay: float | None = MISSING
    curriculum_start_block_size: int | None = MISSING
    curriculum_steps: int | None = MISSING
    max_skipped_steps: int = MISSING
    dist_timeout_s: int = MISSING
    init_from: str | None = MISSING
    # the config groups, composed from conf/<group>/*.yaml
    model: Any = MISSING
    optim: Any = MISSING
    schedule: Any = MISSING
    data: Any = MISSING
    logger: Any = MISSING


ConfigStore.instance().store(name="train_schema", node=TrainSchema)  # conf/train.yaml's first default


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain data (choices as text): for effective_config.json and checkpoints."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


# Ranges a type cannot express: key -> (test, what it must be).
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    **{
        key: (lambda v: v >= 1, "a positive integer")
        for key in (
            "max_steps",
            "batch_size",
            "grad_accum_steps",
            "eval_interval",
            "eval_iters",
            "log_interval",
            "ckpt_interval",
            "max_skipped_steps",
        )
    },
    "sample_interval": (lambda v: v >= 0, "a non-negative integer (0 disables)"),
    "grad_clip": (lambda v: v >= 0, ">= 0 (0 disables clipping)"),
    "optim.lr": (lambda v: v > 0, "positive"),
    "label_smoothing": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    "z_loss": (lambda v: v >= 0, ">= 0"),
    "ema_decay": (lambda v: v is None or 0.0 < v < 1.0, "in (0, 1) or null"),
    "curriculum_steps": (lambda v: v is None or v >= 0, ">= 0 or null"),
    "resume": (lambda v: v in (True, False, "auto"), "true, false or auto"),
}


def check_train_config(cfg: DictConfig, world_size: int = 1) -> None:
    """Refuse values the loop cannot run with (beyond their types), naming the key and what it expects."""
    for key, (ok, expected) in RANGES.items():
        value = OmegaConf.select(cfg, key)
        if not ok(value):
            raise UserError(f"{key} must be {expected}, got {value!r}")
    if cfg.sample_interval and cfg.sample_tokens < 1:
        raise UserError(
            f"sample_tokens must be a positive integer when sample_interval > 0, got {cfg.sample_tokens}"
        )
    if cfg.batch_size % (world_size * cfg.grad_accum_steps):  # batch_size is global: ranks x micro-steps
        split = (
            f"world size x grad_accum_steps ({world_size} x {cfg.grad_accum_steps})"
            if world_size > 1
            else f"grad_accum_steps ({cfg.grad_accum_steps})"
        )
        raise UserError(f"batch_size ({cfg.batch_size}, global) must be divisible by {split}")
    if cfg.cuda_graph and cfg.compile and str(cfg.compile_mode) == "reduce-overhead":
        raise UserError(
            "cuda_graph=true records the whole step as one CUDA graph, and compile_mode=reduce-overhead "
            "records graphs of its own inside it: with cuda_graph=true use compile_mode=default, "
            "or compile=false"
        )
    if cfg.cuda_graph and cfg.grad_checkpointing:
        raise UserError(
            "cuda_graph=true cannot record grad_checkpointing's recomputation (it reads the RNG state on the "
            "host): set one of them to false"
        )
    start = cfg.curriculum_start_block_size
    if start is not None and not 1 <= start <= cfg.model.block_size:
        raise UserError(
            f"curriculum_start_block_size must be between 1 and model.block_size ({cfg.model.block_size}), "
            f"got {start}"
        )
