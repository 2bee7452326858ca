"""The one rule for building a GPT for a tokenizer: every place that builds one (training, loading a
run, export, benchmarks, tests) goes through ``build_gpt``, so the model gets its vocabulary size and
its document token (for ``model.doc_mask``) the same way everywhere."""

from collections.abc import Callable
from typing import Any

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
