"""Scoring a trained run over a whole split of its data (or a text file, or another data group), every
token once: the split's ids are the ones training saw (the run's own tokenizer, through the token cache,
in the same chunks), and the run's stored data config may only name the loaders of ``tinygpt.data``
(``tinygpt.config.untrusted``), its files going to this command's ``cache_dir``.
"""

import logging
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from tinygpt.config.untrusted import instantiate_data
from tinygpt.data import Tokenizer
from tinygpt.data.cache import encode_documents
from tinygpt.data.text import check_documents, find_documents
from tinygpt.errors import UserError
from tinygpt.evaluation.documents import score_documents
from tinygpt.evaluation.scoring import Score, count_bytes, score_tokens
from tinygpt.inference.run import LoadedRun, load_run, stored_config

log = logging.getLogger("tinygpt")

SPLITS = ("val", "train")


def text_documents(path: str) -> list[Path]:
    """The documents of ``text=``: a UTF-8 file, or every .txt under a folder, checked to hold text."""
    docs = find_documents(path, "text")
    check_documents(docs, "text", lambda n: None)  # UTF-8 with some text in it: at least one chunk
    return docs


def text_tokens(path: str, tokenizer: Tokenizer) -> np.ndarray:
    """(N,) ids of ``text_documents(path)``, encoded as the token cache encodes."""
    return np.concatenate(list(encode_documents(text_documents(path), tokenizer)))


def split_tokens(cfg: DictConfig, run: LoadedRun) -> np.ndarray:
    """(N,) ids of a split of the run's data (or of ``data=<group>``), tokenized by the run's tokenizer."""
    if cfg.get("data") is not None:
        data_cfg = OmegaConf.to_container(cfg.data, resolve=True)  # typed by the user: trusted
        source = "the command line's data"
    else:
        data_cfg, source = stored_config(run.state, run.path, "data")
        data_cfg = {**data_cfg, "cache_dir": cfg.cache_dir}  # never a folder named by the run directory
    # The run's tokenizer replaces the config's (which would train a new one on the text).
    loader = {key: value for key, value in data_cfg.items() if key != "tokenizer"}
    load_data = instantiate_data({**loader, "_partial_": True}, source, "data", group="data")
    try:
        data = load_data(tokenizer=run.tokenizer, min_tokens=2)
    except TypeError as exc:  # a key the loader does not take
        raise UserError(f"cannot load the data of {source}: {exc}") from exc
    return data.val if cfg.split == "val" else data.train


def score_joined(cfg: DictConfig, run: LoadedRun, stride: int) -> tuple[Score, dict[str, Any]]:
    """Every token of what ``cfg`` names as one sequence (``documents=joined``), and what that was."""
    model, tokenizer = run.model, run.tokenizer
    if cfg.text is not None:
        ids = text_tokens(str(cfg.text), tokenizer)
        evaluated = {"split": None, "text": str(cfg.text), "data": None}
    else:
        ids = split_tokens(cfg, run)
        evaluated = {
            "split": cfg.split,
            "text": None,
            "data": "run" if cfg.get("data") is None else "command line",
        }
    if len(ids) < 2:
        what = f"text={cfg.text}" if cfg.text is not None else f"the {cfg.split} split"
        raise UserError(f"{what} holds {len(ids)} token(s); evaluation needs at least 2 (one to predict)")
    device = next(model.parameters()).device
    log.info(
        "scoring %d tokens in windows of %d, stride %d, on %s", len(ids), model.block_size, stride, device
    )
    nats, tokens = score_tokens(model, ids, model.block_size, stride, cfg.batch_size, device, cfg.precision)
    return Score(nats, tokens, count_bytes(ids[1:], tokenizer.token_bytes())), evaluated  # ids[0]: unscored


def score_separate(cfg: DictConfig, run: LoadedRun, stride: int) -> tuple[Score, dict[str, Any]]:
    """Each document of ``text=`` on its own, after a prefix token (``documents=separate``,
    ``tinygpt.evaluation.documents``; check_keys has made sure text= is given), and what that was."""
    docs = text_documents(str(cfg.text))
    score, scored = score_documents(run.model, run.tokenizer, docs, stride, cfg.batch_size, cfg.precision)
    log.info("scored %d documents, each after a prefix token, stride %d", scored, stride)
    return score, {"split": None, "text": str(cfg.text), "data": None}


def evaluate_run(cfg: DictConfig) -> dict[str, Any]:
    """Load the run, score every token of what ``cfg`` names, and say what was evaluated."""
    run = load_run(cfg.run, cfg.ckpt, cfg.ema, cfg.device)
    model, tokenizer = run.model, run.tokenizer
    stride = cfg.stride if cfg.stride is not None else model.block_size
    if stride > model.block_size:
        raise UserError(
            f"stride={stride} is more than model.block_size={model.block_size}: tokens would be skipped"
        )
    scorer = score_separate if cfg.documents == "separate" else score_joined
    score, evaluated = scorer(cfg, run, stride)
    if score.bytes is None:
        log.warning(
            "bits_per_byte is null: this tokenizer's vocabulary does not say how many bytes a token is"
        )
    return {
        "run": str(cfg.run),
        "ckpt": cfg.ckpt,
        "ema": cfg.ema,
        "step": run.state.get("step"),
        "documents": cfg.documents,
        **evaluated,
        "tokenizer": tokenizer.kind,
        "vocab_size": tokenizer.vocab_size,
        "block_size": model.block_size,
        "stride": stride,
        "tokens": score.tokens,
        "bytes": score.bytes,
        "loss": score.loss,
        "perplexity": score.perplexity,
        "bits_per_byte": score.bits_per_byte,
    }
