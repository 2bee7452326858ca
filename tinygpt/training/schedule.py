"""Learning-rate schedules, and the batch and length schedules (batch size, block-size curriculum), as pure
functions of the step.

A schedule maps (step, max_steps) to a factor on ``optim.lr``; ``step`` counts optimizer steps from 0,
and the factor for step s is used by the update that makes step s+1. Warmup is linear and reaches 1
at step ``warmup_steps - 1``.
"""

import itertools
import math
from functools import lru_cache

from tinygpt.errors import UserError

DECAY_SHAPES = ("linear", "1-sqrt")


def _warmup(step: int, warmup_steps: int) -> float | None:
    return (step + 1) / warmup_steps if step < warmup_steps else None


def constant(step: int, max_steps: int, warmup_steps: int = 100) -> float:
    """Linear warmup, then 1."""
    return _warmup(step, warmup_steps) or 1.0


def cosine(step: int, max_steps: int, warmup_steps: int = 100, min_lr_ratio: float = 0.1) -> float:
    """Linear warmup, then a half cosine from 1 down to ``min_lr_ratio`` at ``max_steps``."""
    warm = _warmup(step, warmup_steps)
    if warm is not None:
        return warm
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def wsd(
    step: int,
    max_steps: int,
    warmup_steps: int = 100,
    decay_frac: float = 0.2,
    min_lr_ratio: float = 0.0,
    decay_shape: str = "linear",
) -> float:
    """Warmup-stable-decay: linear warmup, 1 until the last ``decay_frac`` of training, then down to
    ``min_lr_ratio`` at ``max_steps``, following ``linear`` or ``1-sqrt`` (Hägele et al. 2024)."""
    warm = _warmup(step, warmup_steps)
    if warm is not None:
        return warm
    decay_start = max_steps - round(decay_frac * max_steps)
    if step < decay_start:
        return 1.0
    progress = min(1.0, (step - decay_start) / max(1, max_steps - decay_start))
    if decay_shape not in DECAY_SHAPES:
        raise UserError(f"schedule.decay_shape must be one of {', '.join(DECAY_SHAPES)}, got {decay_shape!r}")
    shape = progress if decay_shape == "linear" else math.sqrt(progress)
    return min_lr_ratio + (1.0 - min_lr_ratio) * (1.0 - shape)


def staged_size(step: int, start: int | None, end: int, steps: int) -> int:
    """A size at ``step`` that grows linearly from ``start`` to ``end`` over ``steps``, in multiples of
    ``start`` (few distinct shapes, so a compiled model recompiles, and a CUDA graph re-records, at most once
    per stage); ``end`` after, and throughout when ``start`` is None. The block-size curriculum and the
    batch-size schedule both follow it."""
    if start is None or step >= steps:
        return end
    grown = start + (end - start) * step / steps
    return min(end, start * max(1, int(grown // start)))


def sequences_before(step: int, start: int | None, end: int, steps: int) -> int:
    """Sequences the batch-size schedule ``staged_size(s, start, end, steps)`` draws over steps 0..step-1:
    where sampling=epoch takes up its order at ``step``."""
    if start is None:
        return step * end
    drawn = _drawn_during_growth(start, end, steps)  # (steps + 1,)
    return int(drawn[min(step, steps)]) + max(0, step - steps) * end


@lru_cache(maxsize=4)
def _drawn_during_growth(start: int, end: int, steps: int) -> tuple[int, ...]:
    """Sequences drawn before each step 0..steps of the growth (computed once per run)."""
    return (0, *itertools.accumulate(staged_size(s, start, end, steps) for s in range(steps)))
