"""The one rule for building a GPT for a tokenizer: every place that builds one (training, loading a
run, export, benchmarks, tests) goes through ``build_gpt``, so the model gets its vocabulary size and
its document token (for ``model.doc_mask``) the same way everywhere."""

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

from tinygpt.model.gpt import GPT


def build_gpt(factory: Callable[..., GPT], tokenizer: Any, vocab_size: int | None = None) -> GPT:
    """The GPT ``factory`` (the instantiated ``model`` config, a partial) builds for ``tokenizer``.

    Its vocabulary is the tokenizer's, or ``vocab_size`` where that is larger (benchmarks); its
    ``bos_id`` is the tokenizer's ``eot_id`` (<|endoftext|>, which starts each document), None for a
    vocabulary without one.
    """
    return factory(
        vocab_size=max(vocab_size or 0, tokenizer.vocab_size), bos_id=getattr(tokenizer, "eot_id", None)
    )


def weight_shapes(factory: Callable[..., GPT], tokenizer: Any) -> dict[str, tuple[int, ...]]:
    """The shape of each tensor in the state dict of the model ``build_gpt`` would build, found by
    building it on the meta device: nothing is allocated, so a config claiming a huge model is checked
    against the weights meant for it before any memory goes to it."""
    with torch.device("meta"), initializers_skipped():
        model = build_gpt(factory, tokenizer)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


@contextlib.contextmanager
def initializers_skipped() -> Iterator[None]:
    """``torch.nn.init``'s in-place initializers as no-ops for the block: on the meta device there is
    nothing to fill, and filling it anyway imports torch._dynamo (about 1 s of every command that loads a
    run: torch's meta kernels for random fills are written in Python and wrapped by it)."""
    names = [name for name in dir(torch.nn.init) if name.endswith("_") and not name.startswith("_")]
    saved = {name: getattr(torch.nn.init, name) for name in names}
    try:
        for name in names:
            setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, function in saved.items():
            setattr(torch.nn.init, name, function)


def shape_mismatch(
    expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]
) -> str | None:
    """The first difference between the shapes a model has (``expected``) and those of the weights
    meant for it (``found``), in words, with how many more there are; None when they fit."""
    problems = [
        f"{name} is {tuple(found[name])} there but {tuple(shape)} in the model"
        for name, shape in expected.items()
        if name in found and tuple(found[name]) != tuple(shape)
    ]
    problems += [f"the model's {name} is not there" for name in expected if name not in found]
    problems += [f"{name} has no place in the model" for name in found if name not in expected]
    if not problems:
        return None
    return problems[0] + (f" (and {len(problems) - 1} more differences)" if len(problems) > 1 else "")


def non_finite_weight(state: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding inf or nan (weights of a diverged training,
    or a hostile file), None when every one is finite."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None
