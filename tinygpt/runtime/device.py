"""Where the math runs and in what precision: the ``device`` and ``precision`` values of the configs.

Training and generation both pick their device here, so neither imports the other. ``precision=auto``
(training's default) is decided here too: bf16 mixed precision where the hardware multiplies bf16
matrices natively (CUDA GPUs that support bf16; CPUs with AVX512-BF16, AMX or Arm's BF16 instructions),
fp32 elsewhere; a resumed run keeps the precision its checkpoint records.
"""

import contextlib
from pathlib import Path

import torch

from tinygpt.config.schema import DEVICES as DEVICES  # the names, declared with the config keys
from tinygpt.errors import UserError
from tinygpt.runtime.distributed import SINGLE_PROCESS, World

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}  # precision -> dtype
# Instruction sets that multiply bf16 matrices natively, as torch.cpu.get_capabilities names them
# (x86: AVX512-BF16, AMX) or /proc/cpuinfo lists them (x86 "flags", Arm "Features": bf16)
BF16_CPU_UNITS = ("amx_bf16", "avx512_bf16", "bf16")


def pick_device(name: str, world: World = SINGLE_PROCESS) -> torch.device:
    """The torch device for ``name`` (one of DEVICES); under DDP, CUDA ranks take their local GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UserError("device=cuda but no CUDA GPU is visible; use device=cpu or device=auto")
        return torch.device("cuda", world.local_rank)
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError("device=mps but MPS is not available here; use device=cpu or device=auto")
    return torch.device(name)


def check_fp8_device(fp8_head: bool, device: torch.device) -> None:
    """``model.fp8_head`` needs FP8 tensor cores: refuse it at start-up on anything but a CUDA GPU of
    compute capability 9.0+ (Hopper and later)."""
    if not fp8_head:
        return
    if device.type == "cuda" and torch.cuda.get_device_capability(device) >= (9, 0):
        return
    where = device.type
    if device.type == "cuda":
        where = "{} (compute capability {}.{})".format(
            torch.cuda.get_device_name(device), *torch.cuda.get_device_capability(device)
        )
    raise UserError(
        f"model.fp8_head=true needs a Hopper-class CUDA GPU (compute capability 9.0+); this run is on "
        f"{where}; use model.fp8_head=false"
    )


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for a forward pass: nothing for fp32, else torch.autocast to DTYPES[precision]."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in DTYPES:  # "auto" is decided once per run, by choose_precision, before any step
        raise ValueError(f"precision {precision!r} has no dtype: settle precision=auto with choose_precision")
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def choose_precision(requested: str, device: torch.device, recorded: str | None = None) -> tuple[str, str]:
    """The precision a run trains in, and why: ``requested`` itself unless it is ``auto``; then the
    ``recorded`` one (a resumed run's checkpoint), else bf16 where ``device`` multiplies bf16 natively."""
    if requested != "auto":
        return requested, "set"
    if recorded is not None:
        return recorded, "auto: the run's own, from its checkpoint"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return "bf16", f"auto: {name} computes in bf16"
        return "fp32", f"auto: {name} has no native bf16"
    if device.type == "cpu":
        unit = cpu_bf16_unit()
        if unit is not None:
            return "bf16", f"auto: the CPU has {unit}"
        return "fp32", "auto: the CPU has no bf16 matrix instructions (AVX512-BF16, AMX or Arm BF16)"
    return "fp32", f"auto: fp32 on {device.type}"


def cpu_bf16_unit() -> str | None:
    """The first of BF16_CPU_UNITS this CPU has, or None."""
    found = cpu_features()
    return next((unit for unit in BF16_CPU_UNITS if unit in found), None)


def cpu_features() -> set[str]:
    """The CPU's instruction-set features: torch's own detection where this torch has it (any OS), with
    the flags of /proc/cpuinfo (Linux; Arm's BF16 shows there); empty when neither says."""
    capabilities = getattr(torch.cpu, "get_capabilities", dict)()
    found = {name for name, present in capabilities.items() if present is True}
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return found
    lines = (line.partition(":") for line in text.splitlines())
    return found | {
        flag for key, _, value in lines if key.strip() in ("flags", "Features") for flag in value.split()
    }
