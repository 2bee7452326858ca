"""Where the math runs and in what precision: the ``device`` and ``precision`` values of the configs.

Training and generation both pick their device here, so neither imports the other.
"""

import contextlib

import torch

from tinygpt.config.schema import DEVICES as DEVICES  # the names, declared with the config keys
from tinygpt.errors import UserError
from tinygpt.runtime.distributed import SINGLE_PROCESS, World

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}  # precision -> dtype


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
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])
