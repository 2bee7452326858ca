"""The update half of the training step (clip, finite check, optimizer, EMA, skip counters, zeroing the
gradients) recorded once as a CUDA graph and replayed every step.

With ``compile_mode=reduce-overhead``, torch.compile already replays the forward and backward as CUDA
graphs; what is left of a small model's step is the update's few dozen kernel launches, each costing
the host more than the GPU. ``apply_update`` is already free of host syncs and changes the state in
place, so its kernels can be recorded as they are (torch's "partial-network capture"). Three things
make the recording valid for every later step:

- the gradients stay where they are: allocated before the first backward, zeroed in place, never freed;
- the optimizer's state exists before the recording: the first update runs eagerly and creates it;
- the learning rate is a device tensor while recording, which each replay fills with the schedule's value.

Only optimizers that take a tensor learning rate and decide the skip on the device qualify: torch's
fused AdamW (``optim=adamw`` on CUDA). Others keep the eager update.
"""

import logging

import torch

from tinygpt.state import TrainState
from tinygpt.step import StepSettings, apply_update

log = logging.getLogger("tinygpt")


def can_graph_update(state: TrainState, distributed: bool) -> str | None:
    """None if ``GraphedUpdate`` can replay this state's update, else why not (a log line)."""
    optimizer = state.optimizer
    if not all(p.is_cuda for g in optimizer.param_groups for p in g["params"]):
        return "the update is replayed as a CUDA graph on CUDA devices only"
    if distributed:
        return "the update is not replayed as a CUDA graph under DDP (its buckets own the gradients)"
    if not (isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults.get("fused")):
        return f"{type(optimizer).__name__} takes no tensor learning rate: its update stays eager"
    if state.scaler.is_enabled():
        return "precision=fp16: the GradScaler decides on the host, the update stays eager"
    return None


class GraphedUpdate:
    """``apply_update`` (same arguments, same results), replayed as one CUDA graph from its second call."""

    def __init__(self, state: TrainState):
        for p in state.model.parameters():  # backward then accumulates into these, in place
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.calls = 0

    def __call__(
        self, state: TrainState, loss: torch.Tensor, settings: StepSettings
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        if self.calls == 1:  # eager: the optimizer creates its state, which the graph then updates
            return apply_update(state, loss, settings, keep_grads=True)
        if self.graph is None:
            self.record(state, loss, settings)
        self.loss.copy_(loss)
        for group, lr in zip(state.optimizer.param_groups, self.lrs, strict=True):
            lr.fill_(group["lr"])
        self.graph.replay()
        # the graph's outputs are overwritten by the next replay: the caller gets its own copies
        return self.grad_norm.clone(), self.applied.clone()

    def record(self, state: TrainState, loss: torch.Tensor, settings: StepSettings) -> None:
        """Record (not run) the update's kernels, reading the loss and learning rates from fixed tensors."""
        groups = state.optimizer.param_groups
        self.loss = loss.detach().clone()
        self.lrs = [torch.tensor(float(g["lr"]), device=self.loss.device) for g in groups]
        saved = [(g["lr"], g["capturable"]) for g in groups]
        for group, lr in zip(groups, self.lrs, strict=True):
            group["lr"], group["capturable"] = lr, True
        self.graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(self.graph):
                self.grad_norm, self.applied = apply_update(state, self.loss, settings, keep_grads=True)
        finally:  # floats again: checkpoints and the schedule see the optimizer as it was
            for group, (lr, capturable) in zip(groups, saved, strict=True):
                group["lr"], group["capturable"] = lr, capturable
        log.info("the update (clip, optimizer, EMA, counters) is replayed as a CUDA graph from now on")
