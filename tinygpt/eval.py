"""Evaluating a trained run: ``python -m tinygpt.eval run=DIR [text=FILE | data=<group> ...]``.

Scores every token of the run's validation split (or ``split=train``, or ``text=FILE``, or the data
of ``data=<group>``), not a sample of batches, and prints one JSON object: loss (mean nats per
token), perplexity and bits per byte (``tinygpt.scoring``), with what was evaluated.

The run's data is tokenized with the run's own tokenizer, through the token cache and in the same
chunks as training did, so the split's ids are the ones training saw; the tokenizer is never trained
again. The run directory is untrusted input (``tinygpt.untrusted``): its data config may only name
the data loaders of ``tinygpt.data``, and its files go to the token cache of this command's
``cache_dir``, never to a folder the stored config names.
"""

import gc
import json
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from tinygpt.config import conf_dir
from tinygpt.data import Tokenizer
from tinygpt.data.cache import encode_documents
from tinygpt.data.text import check_documents, find_documents
from tinygpt.device import DTYPES
from tinygpt.errors import UserError, exit_on_user_error
from tinygpt.generate import LoadedRun, check_run_and_device, load_run, stored_config
from tinygpt.scoring import Score, count_bytes, score_tokens
from tinygpt.untrusted import instantiate_data

log = logging.getLogger("tinygpt")

SPLITS = ("val", "train")


def check_keys(cfg: DictConfig) -> None:
    """Refuse bad values by name before anything is loaded."""
    check_run_and_device(cfg)
    if cfg.precision not in DTYPES:
        raise UserError(f"precision must be one of {', '.join(DTYPES)}, got {cfg.precision!r}")
    if cfg.split not in SPLITS:
        raise UserError(f"split must be one of {', '.join(SPLITS)}, got {cfg.split!r}")
    if not isinstance(cfg.batch_size, int) or cfg.batch_size < 1:
        raise UserError(f"batch_size must be a positive integer, got {cfg.batch_size!r}")
    if cfg.stride is not None and (not isinstance(cfg.stride, int) or cfg.stride < 1):
        raise UserError(f"stride must be a positive integer (at most model.block_size), got {cfg.stride!r}")
    if cfg.text is not None and cfg.get("data") is not None:
        raise UserError("give text=FILE or data=<group>, not both: each says what to evaluate")
    if cfg.out is not None and Path(str(cfg.out)).exists():
        raise UserError(
            f"out={cfg.out} exists; an evaluation never replaces one: remove it or pick another name"
        )


def text_tokens(path: str, tokenizer: Tokenizer) -> np.ndarray:
    """(N,) ids of a UTF-8 file (or every .txt under a folder), encoded as the token cache encodes."""
    docs = find_documents(path, "text")
    check_documents(docs, "text", lambda n: None)  # UTF-8 with some text in it: at least one chunk
    return np.concatenate(list(encode_documents(docs, tokenizer)))


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
    load_data = instantiate_data({**loader, "_partial_": True}, source, "data", loaders=True)
    try:
        data = load_data(tokenizer=run.tokenizer, min_tokens=2)
    except TypeError as exc:  # a key the loader does not take
        raise UserError(f"cannot load the data of {source}: {exc}") from exc
    return data.val if cfg.split == "val" else data.train


def evaluate_run(cfg: DictConfig) -> dict[str, Any]:
    """Load the run, score every token of what ``cfg`` names, and say what was evaluated."""
    run = load_run(cfg.run, cfg.ckpt, cfg.ema, cfg.device)
    model, tokenizer = run.model, run.tokenizer
    stride = cfg.stride if cfg.stride is not None else model.block_size
    if stride > model.block_size:
        raise UserError(
            f"stride={stride} is more than model.block_size={model.block_size}: tokens would be skipped"
        )
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
    score = Score(nats, tokens, count_bytes(ids[1:], tokenizer.token_bytes()))  # ids[0] is never predicted
    if score.bytes is None:
        log.warning(
            "bits_per_byte is null: this tokenizer's vocabulary does not say how many bytes a token is"
        )
    return {
        "run": str(cfg.run),
        "ckpt": cfg.ckpt,
        "ema": cfg.ema,
        "step": run.state.get("step"),
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


def write_result(result: dict[str, Any], out: str | None) -> None:
    """The JSON to stdout, and to ``out`` (a new file: an existing one is never replaced)."""
    text = json.dumps(result, indent=2) + "\n"
    if out is not None:
        try:
            with open(out, "x", encoding="utf-8") as f:
                f.write(text)
        except FileExistsError as exc:
            raise UserError(
                f"out={out} exists; an evaluation never replaces one: remove it or pick another name"
            ) from exc
        except OSError as exc:
            raise UserError(f"cannot write out={out}: {exc.strerror}; pick a writable path") from exc
    sys.stdout.write(text)
    sys.stdout.flush()


def cli(cfg: DictConfig) -> dict[str, Any]:
    """The command, given its composed config: check, evaluate, print (and write) the JSON."""
    check_keys(cfg)
    result = evaluate_run(cfg)
    write_result(result, None if cfg.out is None else str(cfg.out))
    log.info(
        "loss %.4f | perplexity %.2f | %s bits per byte | %d tokens, %s bytes",
        result["loss"],
        result["perplexity"],
        "unknown" if result["bits_per_byte"] is None else f"{result['bits_per_byte']:.4f}",
        result["tokens"],
        result["bytes"],
    )
    return result


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="eval")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    cli(cfg)


if __name__ == "__main__":
    main()
    gc.freeze()  # as in tinygpt.generate: skip the interpreter's last collection at exit
