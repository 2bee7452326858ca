"""One optimizer step: accumulate gradients over micro-batches, unscale, clip, and apply the update
only if the loss and the gradients are finite, without asking the host.

The whole step stays on the device: the decision "were the loss and gradients finite?" is a tensor,
and the update (optimizer, EMA, skip counters) is applied through ``torch.where`` instead of a Python
``if``. So the step never waits for the GPU, and it can later be captured into a CUDA graph; values
reach the host only when the loop logs them.
"""

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from tinygpt.config.keys import subset
from tinygpt.config.schema import TrainSchema
from tinygpt.runtime.device import autocast
from tinygpt.training.state import TrainState

NoSync = Callable[[], contextlib.AbstractContextManager]
Forward = Callable[..., torch.Tensor]  # GPT.forward: (idx, targets=, label_smoothing=, z_loss=) -> loss


# The recipe values a step reads, with their types and defaults as the training config declares them.
StepSettings = subset(
    TrainSchema,
    "StepSettings",
    ("grad_accum_steps", "precision", "label_smoothing", "z_loss", "grad_clip", "ema_decay"),
    "The training config's keys a step reads (grad_clip 0: no clipping; ema_decay: keep TrainState.ema).",
)


@dataclass
class StepStats:
    loss: torch.Tensor  # () mean training loss of the batch, over all ranks
    grad_norm: torch.Tensor  # () global gradient norm before clipping
    applied: torch.Tensor  # () bool: the loss and gradients were finite and the update was applied


Update = Callable[[TrainState, torch.Tensor, StepSettings], tuple[torch.Tensor, torch.Tensor]]


def train_step(
    state: TrainState,
    forward: Forward,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: StepSettings,
    reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
    no_sync: NoSync = contextlib.nullcontext,
    update: Update | None = None,
) -> StepStats:
    """One update of ``state`` from the batch x, y (B, T) token ids.

    ``forward`` is the model, or its DDP/compiled wrapper: called with ``targets``, it returns the loss.
    ``reduce`` averages a scalar over ranks (identity outside DDP), so every rank takes the same
    decision; ``no_sync`` is DDP's, to all-reduce gradients only on the last micro-batch. ``update``
    applies the gradients: ``apply_update``, or the same replayed as a CUDA graph (graphs.py).
    """
    loss = reduce(accumulate_gradients(forward, x, y, settings, state.scaler, no_sync))
    grad_norm, applied = (update or apply_update)(state, loss, settings)
    return StepStats(loss=loss.detach(), grad_norm=grad_norm.detach(), applied=applied)


def apply_update(
    state: TrainState, loss: torch.Tensor, settings: StepSettings, keep_grads: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unscale, clip and apply the accumulated gradients if ``loss`` and they are finite; returns the
    () gradient norm before clipping and the () bool "applied".

    Every tensor of the state it changes, it changes in place, so a CUDA graph of it replays onto the
    same memory; ``keep_grads`` zeroes the gradients in place instead of freeing them, for the same reason.
    """
    state.scaler.unscale_(state.optimizer)
    max_norm = settings.grad_clip if settings.grad_clip > 0 else float("inf")
    grad_norm = nn.utils.clip_grad_norm_(state.model.parameters(), max_norm)
    applied = torch.isfinite(grad_norm) & torch.isfinite(loss)
    optimizer_step_if(applied, state.optimizer)
    if state.ema is not None:
        update_ema(state.ema, state.model, settings.ema_decay, applied)
    state.scaler.update()  # fp16: lowers the scale after an overflow; a no-op otherwise
    state.optimizer.zero_grad(set_to_none=not keep_grads)
    state.skipped_total += ~applied
    state.skipped_in_a_row.add_(1).mul_(~applied)
    torch.maximum(state.worst_in_a_row, state.skipped_in_a_row, out=state.worst_in_a_row)
    return grad_norm, applied


def accumulate_gradients(
    forward: Forward,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: StepSettings,
    scaler: torch.amp.GradScaler,
    no_sync: NoSync = contextlib.nullcontext,
) -> torch.Tensor:
    """Backward over ``grad_accum_steps`` equal slices of the batch x, y (B, T); returns the mean loss.

    Each micro-step's loss is divided by the number of slices, so the summed gradient equals the
    gradient of the whole batch's mean loss: accumulation changes memory use, not the result.
    """
    n = settings.grad_accum_steps
    loss_sum = torch.zeros((), device=x.device)
    slices = list(zip(x.chunk(n), y.chunk(n), strict=True))
    for i, (xm, ym) in enumerate(slices):
        with no_sync() if i < len(slices) - 1 else contextlib.nullcontext():
            with autocast(x.device, settings.precision):
                # the loss comes out of the model's forward: one compiled graph from ids to loss
                loss = (
                    forward(xm, targets=ym, label_smoothing=settings.label_smoothing, z_loss=settings.z_loss)
                    / n
                )
            scaler.scale(loss).backward()
        loss_sum += loss.detach()
    return loss_sum


def optimizer_step_if(applied: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.step()``, whose effect is kept only where ``applied`` (a () bool tensor) is true.

    torch's fused kernels (AdamW/SGD with ``fused=True``, the default AdamW on CUDA here) take the
    decision themselves, as they do for the fp16 GradScaler: ``found_inf`` skips the update on the
    device. Any other optimizer steps, and what it changed is put back through ``torch.where``.
    """
    if getattr(optimizer, "_step_supports_amp_scaling", False):
        optimizer.found_inf = (~applied).float()
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
        return
    with kept_only_if(applied, lambda: optimizer_tensors(optimizer)):
        optimizer.step()


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Every tensor a step may change: the parameters and the optimizer's state."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return params + [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]


@torch.no_grad()
def update_ema(ema: AveragedModel, model: nn.Module, decay: float, applied: torch.Tensor) -> None:
    """ema <- ema + w * (weights - ema), on the device: w is 1 for the first update (a copy), then
    1 - decay, and 0 when the step was skipped.

    torch's AveragedModel holds the averaged copy; its own ``update_parameters`` would ask the host
    whether this is the first update, a sync on every step.
    """
    first = ema.n_averaged == 0
    weight = torch.where(first, 1.0, 1.0 - decay) * applied  # () float
    averaged, current = learned_tensors(ema.module), learned_tensors(model)
    delta = torch._foreach_sub(current, averaged)
    torch._foreach_mul_(delta, weight)
    torch._foreach_add_(averaged, delta)
    ema.n_averaged += applied


def learned_tensors(module: nn.Module) -> list[torch.Tensor]:
    """The parameters and the persistent buffers: what an EMA averages. Non-persistent buffers (RoPE's
    cos/sin tables) are computed, not learned, and sampling may grow the EMA model's copies past the
    training model's."""
    buffers = [
        buffer
        for m in module.modules()
        for name, buffer in m._buffers.items()
        if buffer is not None and name not in m._non_persistent_buffers_set
    ]
    return [*module.parameters(), *buffers]


@contextlib.contextmanager
def kept_only_if(keep: torch.Tensor, tensors: Callable[[], list[torch.Tensor]]) -> Iterator[None]:
    """Changes the block makes to the ``tensors()`` are kept where ``keep`` (a () bool tensor) is true
    and undone where it is false, decided on the device.

    A tensor the block creates (an optimizer's state on its first step) goes back to zeros when undone,
    which is how every optimizer here starts its state. A state an optimizer keeps as a plain Python
    number (bitsandbytes' step count) cannot be undone this way and still counts a skipped step.
    """
    with torch.no_grad():
        before = {id(t): t.clone() for t in tensors()}
    yield
    with torch.no_grad():
        for t in tensors():
            old = before.get(id(t))
            t.copy_(torch.where(keep, t, old if old is not None else torch.zeros_like(t)))
