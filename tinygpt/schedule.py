"""Learning-rate schedules as pure functions: (step, max_steps, ...) -> factor applied to optim.lr.

``step`` counts optimizer steps from 0; the factor for step s is used for the update that makes step s+1.
"""

import math


def cosine(step: int, max_steps: int, warmup_steps: int = 100, min_lr_ratio: float = 0.1) -> float:
    """Linear warmup over ``warmup_steps`` (reaching 1 at step warmup_steps - 1), then a half cosine
    from 1 down to ``min_lr_ratio`` at ``max_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
