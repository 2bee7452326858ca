"""Recording work as a CUDA graph, the one recipe every replayed graph uses (the training step, its
update, the decoder's one-token step).

torch's recipe: run the work a few times eagerly on a side stream first (lazy initialisations, e.g. of
cuBLAS or torch.compile's compilation, must not happen while recording), then record it once; each
replay reruns the recorded kernels on the same tensors, so the work must read and write only tensors
that stay in place.
"""

import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch

Out = TypeVar("Out")


@contextlib.contextmanager
def on_side_stream(device: torch.device | None = None) -> Iterator[None]:
    """Run the body on a fresh stream that starts after, and is waited for by, the current one."""
    main = torch.cuda.current_stream(device)
    side = torch.cuda.Stream(device)
    side.wait_stream(main)
    with torch.cuda.stream(side):
        yield
    main.wait_stream(side)


def record(
    work: Callable[[], Out], generator: torch.Generator | None = None
) -> tuple[torch.cuda.CUDAGraph, Out]:
    """The CUDA graph of ``work`` (recorded, not run) and its outputs, which every replay overwrites.
    ``generator``: a random generator the work draws from, registered so that each replay draws from
    it, and advances it, as an eager run does."""
    graph = torch.cuda.CUDAGraph()
    if generator is not None:
        graph.register_generator_state(generator)
    with torch.cuda.graph(graph):
        out = work()
    return graph, out
