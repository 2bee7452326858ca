"""Text corpora -> token arrays -> training batches.

Batches are a pure function of (seed, step, rank): resuming at step s, or running on several ranks,
draws exactly the windows an uninterrupted single run would have drawn, with no sampler state to save.
"""

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from tinygpt.data.tokenizers import CharTokenizer
from tinygpt.errors import UserError

TRAIN_STREAM, VAL_STREAM = 0, 1  # mixed into batch seeds so the two splits never share draws


@dataclass
class TextData:
    train: np.ndarray  # (N_train,) token ids
    val: np.ndarray  # (N_val,) token ids
    tokenizer: CharTokenizer


def embedded_corpus_path() -> Path:
    """data/tiny_corpus.txt: shipped inside the wheel as tinygpt/corpus, or at the checkout's top."""
    packaged = resources.files("tinygpt").joinpath("corpus", "tiny_corpus.txt")
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "data" / "tiny_corpus.txt"


def read_text(path: str | Path) -> str:
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"data.path {path} does not exist; point data.path at a UTF-8 text file")
    if not path.is_file():
        raise UserError(f"data.path {path} is not a file; point data.path at a UTF-8 text file")
    raw = path.read_bytes()
    if not raw.strip():
        raise UserError(f"data.path {path} is empty; it needs text to train on")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"data.path {path} is not valid UTF-8 (byte offset {exc.start}); convert it to UTF-8 first"
        ) from exc


def load_text_data(
    tokenizer: Callable[[str], CharTokenizer], path: str | None = None, val_fraction: float = 0.1
) -> TextData:
    """Read the corpus, build the tokenizer from it, and split it: the last ``val_fraction`` is val."""
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"data.val_fraction must be between 0 and 1, got {val_fraction}")
    text = read_text(path if path is not None else embedded_corpus_path())
    tok = tokenizer(text)
    ids = tok.encode(text)
    n_train = int(len(ids) * (1.0 - val_fraction))
    return TextData(train=ids[:n_train], val=ids[n_train:], tokenizer=tok)


def check_fits(data: TextData, block_size: int) -> None:
    for name, ids in (("train", data.train), ("validation", data.val)):
        if len(ids) <= block_size:
            raise UserError(
                f"the {name} split has {len(ids)} tokens, too few for one window of model.block_size="
                f"{block_size} (+1 target); lower model.block_size or use a larger corpus"
            )


def get_batch(
    ids: np.ndarray,
    batch_size: int,
    block_size: int,
    seed: tuple[int, ...],
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows: x (B, T) and its next-token targets y (B, T), drawn from ``seed`` alone."""
    rng = np.random.default_rng(list(seed))
    starts = rng.integers(0, len(ids) - block_size, size=batch_size)
    offsets = np.arange(block_size + 1)
    windows = torch.from_numpy(ids[starts[:, None] + offsets].astype(np.int64))  # (B, T+1)
    x, y = windows[:, :-1], windows[:, 1:]
    if torch.device(device).type == "cuda":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)
