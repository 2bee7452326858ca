"""One sample drawn again and again with its decoder kept: the training loop's periodic samples.

Every periodic sample asks the same thing: one prompt, one length and the same sampling settings, from
the same model object, whose weights the optimizer (or the EMA's update) changes in place between two
samples. So the ``Decoder`` (``tinygpt.inference.decoder``), with its fixed-shape cache and its compiled
or CUDA-graph step, is made at the first sample and only reset before each later one: the graph is
recorded once, and each replay reads the weights as they are now. The text is the one a new decoder
gives at the same random state: making one puts the random generator back after a capture.
"""

from typing import Any

import torch

from tinygpt.inference.decoder import Decoder
from tinygpt.inference.engine import decode, encode_prompt, final_texts, new_decoder, texts_of
from tinygpt.model import GPT

Address = tuple[str, torch.dtype, int]  # a tensor's device, dtype and address


class RepeatedSample:
    """``generate_text(model, tokenizer, prompt, max_new_tokens=max_new_tokens, **controls)[0]``, drawn
    again and again: one sample (batch 1) from the global random generator, as without a seed.

    ``controls`` are the sampling and path keywords of ``new_decoder`` (temperature, top_k, top_p,
    repetition_penalty, kv_cache, static_cache, compile_step). The decoder is made at the first ``text``
    and reset before each later one; a new one is made when what it was made for has changed: another
    model object, or a tensor of the model replaced or moved rather than updated in place (a CUDA graph
    reads the addresses it was recorded with).
    """

    def __init__(self, tokenizer: Any, prompt: str, max_new_tokens: int, **controls: Any):
        self.tokenizer, self.prompt, self.max_new_tokens = tokenizer, prompt, max_new_tokens
        self.prompt_ids = encode_prompt(tokenizer, prompt)
        self.eot_id: int | None = getattr(tokenizer, "eot_id", None)
        self.controls = controls
        self.decoder: Decoder | None = None
        self.made_for: list[Address] = []  # where the model's tensors lay when the decoder was made

    @torch.no_grad()
    def text(self, model: GPT) -> str:
        """The prompt and its continuation: the text a new decoder gives at this random state."""
        chunks = decode(self.decoder_for(model), self.max_new_tokens)
        texts = texts_of(chunks, self.tokenizer, self.prompt, 1, None, self.eot_id)
        return final_texts(texts, self.prompt)[0]

    def decoder_for(self, model: GPT) -> Decoder:
        """The kept decoder, reset to its state before the first token; a new one if it was made for
        another model, or for tensors no longer where they were."""
        if self.decoder is not None and self.decoder.model is model and addresses(model) == self.made_for:
            self.decoder.reset()  # the cache is emptied by the first token's ``restart``
            return self.decoder
        idx = torch.tensor([self.prompt_ids], device=model.lm_head.weight.device)  # (1, T)
        self.decoder = new_decoder(model, idx, self.max_new_tokens, eot_id=self.eot_id, **self.controls)
        self.made_for = addresses(model)  # after new_decoder, which may grow the position tables
        return self.decoder


def addresses(model: GPT) -> list[Address]:
    """Where each parameter and buffer of ``model`` lies: a change means one was replaced or moved."""
    return [(str(t.device), t.dtype, t.data_ptr()) for t in (*model.parameters(), *model.buffers())]
