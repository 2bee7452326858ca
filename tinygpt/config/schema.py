"""Where the Hydra config tree lives, the training keys (each declared once, with its default, range
and meaning), and the checks between keys that a single key's declaration cannot express."""

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from tinygpt.config.keys import CHANGEABLE, ON_RESUME, POSITIVE, Check, check_values, checks_of, key
from tinygpt.errors import UserError


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


DEVICES = ("auto", "cpu", "cuda", "mps")  # auto: cuda if available, else cpu (tinygpt.runtime.device)
PRECISIONS = ("fp32", "bf16", "fp16")  # autocast dtypes (tinygpt.runtime.device.DTYPES)

Device = Choice("Device", {name: name for name in DEVICES})
Precision = Choice("Precision", {name: name for name in ("auto", *PRECISIONS)})  # auto: runtime.device
CompileMode = Choice("CompileMode", {m: m for m in ("default", "reduce-overhead", "max-autotune")})


NON_NEGATIVE = Check(lambda v: v >= 0, ">= 0")


@dataclass
class TrainSchema:
    """The top-level training keys: each one's default, type, range and meaning, and whether a resume
    may change it. conf/train.yaml adds the config groups' defaults and Hydra's own node.

    Hydra checks every value's type when it composes the config, command line included, and names the
    key and the expected type or choices; ``check_train_config`` runs the checks declared here and
    those between keys.
    """

    seed: int = key(1337, "seed of the weights' initialization, the batches and the samples")
    device: Device = key(
        Device("auto"), "auto | cpu | cuda | mps (auto: cuda if available, else cpu)", on_resume=CHANGEABLE
    )
    max_steps: int = key(2000, "optimizer steps", POSITIVE, on_resume=CHANGEABLE)
    stop_at_val_loss: float | None = key(
        None, "e.g. 1.47: end the run at the first evaluation whose val loss is <= this", on_resume=CHANGEABLE
    )
    batch_size: int = key(
        64, "sequences per optimizer step (split over grad_accum_steps micro-batches)", POSITIVE
    )
    grad_accum_steps: int = key(1, "micro-batches per optimizer step (gradients accumulated)", POSITIVE)
    grad_clip: float = key(
        1.0,
        "max global grad norm; 0 disables clipping",
        Check(lambda v: v >= 0, ">= 0 (0 disables clipping)"),
    )
    eval_interval: int = key(
        200, "steps between val-loss evaluations (and a final one at the end)", POSITIVE, on_resume=CHANGEABLE
    )
    eval_iters: int = key(20, "val batches averaged per evaluation", POSITIVE)
    log_interval: int = key(
        10,
        "steps between train log lines / metrics.jsonl records (and step 1)",
        POSITIVE,
        on_resume=CHANGEABLE,
    )
    sample_interval: int = key(
        500,
        "steps between text samples in the log; 0 disables",
        Check(lambda v: v >= 0, "a non-negative integer (0 disables)"),
        on_resume=CHANGEABLE,
    )
    sample_tokens: int = key(200, "length of those samples", on_resume=CHANGEABLE)
    ckpt_interval: int = key(
        "${eval_interval}",
        "steps between ckpt.pt writes (also written at the end)",
        POSITIVE,
        on_resume=CHANGEABLE,
    )
    resume: Any = key(
        False,
        "true: continue hydra.run.dir's run from its ckpt.pt; auto: continue if there is one, else start",
        Check(lambda v: v in (True, False, "auto"), "true, false or auto"),
        on_resume=CHANGEABLE,
    )
    precision: Precision = key(
        Precision("auto"),
        "auto | fp32 | bf16 | fp16 (autocast; fp16 adds a GradScaler). auto: bf16 on GPUs and CPUs with "
        "bf16 matrix units, else fp32; a resume keeps the run's. fp32: bitwise-reproducible runs",
    )
    compile: bool = key(
        False, "torch.compile the model (costs 15-20 s up front; pays off on GPU)", on_resume=CHANGEABLE
    )
    compile_mode: CompileMode = key(
        CompileMode("default"),
        "torch.compile's mode: default | reduce-overhead (CUDA graphs) | max-autotune",
        on_resume=CHANGEABLE,
    )
    cuda_graph: bool = key(
        False,
        "replay the whole step as one CUDA graph: one CUDA device, optim=adamw, bf16/fp32",
        on_resume=CHANGEABLE,
    )
    grad_checkpointing: bool = key(
        False, "recompute each block in backward: less activation memory, ~30% more compute"
    )
    label_smoothing: float = key(
        0.0, "label smoothing of the loss", Check(lambda v: 0.0 <= v < 1.0, "in [0, 1)")
    )
    z_loss: float = key(0.0, "coefficient of the mean squared log-normalizer (PaLM uses 1e-4)", NON_NEGATIVE)
    ema_decay: float | None = key(
        None,
        "e.g. 0.999: keep an exponential moving average of the weights, eval and sample it",
        Check(lambda v: v is None or 0.0 < v < 1.0, "in (0, 1) or null"),
    )
    curriculum_start_block_size: int | None = key(
        None, "e.g. 32: grow the block size from this to model.block_size over curriculum_steps"
    )
    curriculum_steps: int | None = key(
        None,
        "steps over which the block size grows (null = the first half of training)",
        Check(lambda v: v is None or v >= 0, ">= 0 or null"),
    )
    batch_size_start: int | None = key(
        None, "e.g. 8: grow the batch from this to batch_size over batch_size_steps, in multiples of it"
    )
    batch_size_steps: int | None = key(
        None,
        "steps over which the batch grows (null = the first half of training)",
        Check(lambda v: v is None or v >= 0, ">= 0 or null"),
    )
    max_skipped_steps: int = key(10, "stop after this many non-finite steps in a row", POSITIVE)
    dist_timeout_s: int = key(
        600,
        "DDP: a collective waiting longer than this fails the job instead of hanging it",
        on_resume=CHANGEABLE,
    )
    init_from: str | None = key(
        None,
        "start from a Hugging Face transformers folder (GPT-2, Llama, Mistral, Qwen3, GPT-NeoX shapes)",
    )
    # the config groups, composed from conf/<group>/*.yaml (their keys: docs/keys.md)
    model: Any = MISSING
    optim: Any = MISSING
    schedule: Any = MISSING
    data: Any = MISSING
    logger: Any = field(default=MISSING, metadata={ON_RESUME: CHANGEABLE})


# Checks on the groups' keys, declared beside the top-level ones: dotted key -> check.
POSITIVE_OR_ABSENT = Check(lambda v: v is None or v > 0, "positive")  # absent: an optimizer file without it
GROUP_CHECKS = {
    "optim.lr": Check(lambda v: v > 0, "positive"),
    **{f"optim.{k}": POSITIVE_OR_ABSENT for k in ("embed_lr_scale", "head_lr_scale", "scalar_lr_scale")},
}
RANGES: dict[str, Check] = {**checks_of(TrainSchema), **GROUP_CHECKS}


ConfigStore.instance().store(name="train_schema", node=TrainSchema)  # conf/train.yaml's first default


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain data (choices as text): for effective_config.json and checkpoints."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def check_train_config(cfg: DictConfig, world_size: int = 1) -> None:
    """Refuse values the loop cannot run with (beyond their types), naming the key and what it expects."""
    check_values(cfg, RANGES)
    if cfg.sample_interval and cfg.sample_tokens < 1:
        raise UserError(
            f"sample_tokens must be a positive integer when sample_interval > 0, got {cfg.sample_tokens}"
        )
    check_batch_sizes(cfg, world_size)
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


def check_batch_sizes(cfg: DictConfig, world_size: int) -> None:
    """Every step's batch (``batch_size``, and the batch-size schedule's stages: multiples of
    ``batch_size_start``) splits evenly over the ranks and their micro-steps."""
    parts = world_size * cfg.grad_accum_steps  # batch sizes are global: ranks x micro-steps
    split = (
        f"world size x grad_accum_steps ({world_size} x {cfg.grad_accum_steps})"
        if world_size > 1
        else f"grad_accum_steps ({cfg.grad_accum_steps})"
    )
    if cfg.batch_size % parts:
        raise UserError(f"batch_size ({cfg.batch_size}, global) must be divisible by {split}")
    start = cfg.batch_size_start
    if start is None:
        return
    if not 1 <= start <= cfg.batch_size:
        raise UserError(f"batch_size_start must be between 1 and batch_size ({cfg.batch_size}), got {start}")
    if start % parts:
        raise UserError(
            f"batch_size_start ({start}, global) must be divisible by {split}: "
            "every stage of the batch-size schedule is a multiple of it"
        )
