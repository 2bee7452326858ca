"""The training step recorded once as a CUDA graph and replayed every step: the update half of it
(``GraphedUpdate``, under ``compile_mode=reduce-overhead``) or all of it (``GraphedStep``,
``cuda_graph=true``).

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

``GraphedStep`` records the whole ``train_step`` (forward, loss, backward into the gradients that stay
in place, then the update) once per batch shape, so a step costs the host a few copies and one graph
launch whatever the model's size, and needs no ``torch.compile`` to shed its launch overhead.
"""

import contextlib
import logging
from collections.abc import Iterator
from functools import partial

import torch

from tinygpt.errors import UserError
from tinygpt.runtime import cuda_graphs
from tinygpt.training.state import TrainState
from tinygpt.training.step import Forward, StepSettings, StepStats, apply_update, train_step

log = logging.getLogger("tinygpt")


def can_graph_update(state: TrainState, distributed: bool) -> str | None:
    """None if a CUDA graph can replay this state's update (``GraphedUpdate``) or whole step
    (``GraphedStep``), else why not. (grad_checkpointing, which the whole step cannot record, is
    refused with the config: ``check_train_config``.)"""
    optimizer = state.optimizer
    device = next(state.model.parameters()).device
    if device.type != "cuda":
        return f"a CUDA graph needs a CUDA device, and this run is on {device.type}"
    if distributed:
        return "a CUDA graph records one process's step, and this run is distributed (DDP)"
    if not (isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults.get("fused")):
        return f"{type(optimizer).__name__} cannot read its learning rate from the device: use optim=adamw"
    if state.scaler.is_enabled():
        return "precision=fp16's loss scaler decides on the host: use precision=bf16 or fp32"
    return None


def keep_grads_in_place(model: torch.nn.Module) -> None:
    """Give every parameter a zero gradient now: backward then accumulates into it in place, and the
    update zeroes it in place (``keep_grads``), so a graph's kernels always find it at the same address."""
    for p in model.parameters():
        if p.grad is None:
            p.grad = torch.zeros_like(p)


@contextlib.contextmanager
def tensor_lrs(optimizer: torch.optim.Optimizer, lrs: list[torch.Tensor]) -> Iterator[None]:
    """While recording: each param group reads its learning rate from a device tensor (which every replay
    fills), as fused AdamW's ``capturable`` mode requires; floats again afterwards, so that checkpoints
    and the schedule see the optimizer as it was."""
    groups = optimizer.param_groups
    saved = [(g["lr"], g["capturable"]) for g in groups]
    for group, lr in zip(groups, lrs, strict=True):
        group["lr"], group["capturable"] = lr, True
    try:
        yield
    finally:
        for group, (lr, capturable) in zip(groups, saved, strict=True):
            group["lr"], group["capturable"] = lr, capturable


def lr_tensors(optimizer: torch.optim.Optimizer, device: torch.device) -> list[torch.Tensor]:
    return [torch.tensor(float(g["lr"]), device=device) for g in optimizer.param_groups]


def fill_lrs(optimizer: torch.optim.Optimizer, lrs: list[torch.Tensor]) -> None:
    """The schedule's learning rates (floats in the param groups) into the tensors a graph reads."""
    for group, lr in zip(optimizer.param_groups, lrs, strict=True):
        lr.fill_(group["lr"])


class GraphedUpdate:
    """``apply_update`` (same arguments, same results), replayed as one CUDA graph from its second call."""

    def __init__(self, state: TrainState):
        keep_grads_in_place(state.model)
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
        fill_lrs(state.optimizer, self.lrs)
        self.graph.replay()
        # the graph's outputs are overwritten by the next replay: the caller gets its own copies
        return self.grad_norm.clone(), self.applied.clone()

    def record(self, state: TrainState, loss: torch.Tensor, settings: StepSettings) -> None:
        """Record (not run) the update's kernels, reading the loss and learning rates from fixed tensors."""
        self.loss = loss.detach().clone()
        self.lrs = lr_tensors(state.optimizer, self.loss.device)
        with tensor_lrs(state.optimizer, self.lrs):
            self.graph, (self.grad_norm, self.applied) = cuda_graphs.record(
                lambda: apply_update(state, self.loss, settings, keep_grads=True)
            )
        log.info("the update (clip, optimizer, EMA, counters) is replayed as a CUDA graph from now on")


class GraphedStep:
    """``train_step`` (same results) recorded as one CUDA graph per batch shape and replayed.

    Every step's batch is copied into the same two tensors, which the graph reads. The first ``WARMUP``
    steps of a shape run eagerly on a side stream (torch's recipe: lazy initialisations, and
    torch.compile's compilation, must not happen while recording); the next one records the step, with
    the learning rates read from device tensors, and replays it. A new shape (a block-size curriculum)
    drops the old graph and its memory, and starts over.
    """

    WARMUP = 2

    def __init__(self, state: TrainState, forward: Forward, settings: StepSettings):
        keep_grads_in_place(state.model)
        self.forward, self.settings = forward, settings
        self.update = partial(apply_update, keep_grads=True)
        self.shape: torch.Size | None = None
        self.seen = 0  # steps of this shape so far
        self.graph: torch.cuda.CUDAGraph | None = None

    def __call__(self, state: TrainState, x: torch.Tensor, y: torch.Tensor) -> StepStats:
        if x.shape != self.shape:
            self.shape, self.seen, self.graph = x.shape, 0, None
            # contiguous, whatever x is: the eager steps and the recording see the very same inputs
            # (torch.compile would recompile, while recording, for other strides)
            self.x, self.y = (torch.empty_like(t, memory_format=torch.contiguous_format) for t in (x, y))
        self.x.copy_(x)
        self.y.copy_(y)
        self.seen += 1
        if self.seen <= self.WARMUP:
            return self.eager(state)
        if self.graph is None:
            self.record(state)
        fill_lrs(state.optimizer, self.lrs)
        self.graph.replay()
        # the graph's outputs are overwritten by the next replay: the caller gets its own copies
        out = self.out
        return StepStats(loss=out.loss.clone(), grad_norm=out.grad_norm.clone(), applied=out.applied.clone())

    def eager(self, state: TrainState) -> StepStats:
        with cuda_graphs.on_side_stream(self.x.device):
            return train_step(state, self.forward, self.x, self.y, self.settings, update=self.update)

    def record(self, state: TrainState) -> None:
        """Record (not run) the step on ``self.x``, ``self.y``; a clear error if torch cannot."""
        self.lrs = lr_tensors(state.optimizer, self.x.device)
        try:
            with tensor_lrs(state.optimizer, self.lrs):
                self.graph, self.out = cuda_graphs.record(
                    lambda: train_step(state, self.forward, self.x, self.y, self.settings, update=self.update)
                )
        except RuntimeError as exc:  # an operation CUDA graphs do not allow: the device is in doubt, stop
            reason = str(exc).splitlines()[0]
            raise UserError(
                f"cuda_graph=true: torch could not record this run's step as a CUDA graph ({reason}); "
                "set cuda_graph=false"
            ) from exc
        log.info("the training step (batch %s) is replayed as one CUDA graph from now on", tuple(self.shape))
