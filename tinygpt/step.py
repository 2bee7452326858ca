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

from tinygpt.device import autocast
from tinygpt.loss import lm_loss
from tinygpt.state import TrainState

NoSync = Callable[[], contextlib.AbstractContextManager]


@dataclass(frozen=True)
class StepSettings:
    """The recipe values a step reads (from the top level of the training config)."""

    grad_accum_steps: int = 1
    precision: str = "fp32"
    label_smoothing: float = 0.0
    z_loss: float = 0.0
    grad_clip: float = 1.0  # 0: no clipping (the norm is still computed and logged)


@dataclass
class StepStats:
    loss: torch.Tensor  # () mean training loss of the batch, over all ranks
    grad_norm: torch.Tensor  # () global gradient norm before clipping
    applied: torch.Tensor  # () bool: the loss and gradients were finite and the update was applied


def train_step(
    state: TrainState,
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    settings: StepSettings,
    reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
    no_sync: NoSync = contextlib.nullcontext,
) -> StepStats:
    """One update of ``state`` from the batch x, y (B, T) token ids.

    ``forward`` maps ids (B, T) to logits (B, T, V): the model, or its DDP/compiled wrapper.
    ``reduce`` averages a scalar over ranks (identity outside DDP), so every rank takes the same
    decision; ``no_sync`` is DDP's, to all-reduce gradients only on the last micro-batch.
    """
    loss = reduce(accumulate_gradients(forward, x, y, settings, state.scaler, no_sync))
    state.scaler.unscale_(state.optimizer)
    max_norm = settings.grad_clip if settings.grad_clip > 0 else float("inf")
    grad_norm = nn.utils.clip_grad_norm_(state.model.parameters(), max_norm)
    applied = torch.isfinite(grad_norm) & torch.isfinite(loss)
    with kept_only_if(applied, lambda: update_tensors(state)):
        state.optimizer.step()
        if state.ema is not None:
            state.ema.update_parameters(state.model)
    state.scaler.update()  # fp16: lowers the scale after an overflow; a no-op otherwise
    state.optimizer.zero_grad(set_to_none=True)
    state.skipped_total += ~applied
    state.skipped_in_a_row = (state.skipped_in_a_row + 1) * ~applied
    state.worst_in_a_row = torch.maximum(state.worst_in_a_row, state.skipped_in_a_row)
    return StepStats(loss=loss.detach(), grad_norm=grad_norm.detach(), applied=applied)


def accumulate_gradients(
    forward: Callable[[torch.Tensor], torch.Tensor],
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
                logits = forward(xm)  # (B/n, T, V)
                loss = lm_loss(logits, ym, settings.label_smoothing, settings.z_loss) / n
            scaler.scale(loss).backward()
        loss_sum += loss.detach()
    return loss_sum


def update_tensors(state: TrainState) -> list[torch.Tensor]:
    """Every tensor an update may change: weights, optimizer state, EMA weights and count."""
    tensors = list(state.model.parameters())
    tensors += [v for s in state.optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    if state.ema is not None:
        tensors += [*state.ema.parameters(), state.ema.n_averaged]
    return tensors


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
