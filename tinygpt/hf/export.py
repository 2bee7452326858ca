"""Export a training run as a Hugging Face transformers folder:

    from tinygpt.hf.export import export_run; export_run(run_dir, out_dir)

``out_dir`` then loads with ``AutoModelForCausalLM.from_pretrained(out_dir)`` and
``AutoTokenizer.from_pretrained(out_dir)``: config.json (the matching architecture, see
``tinygpt.hf.mapping``), model.safetensors, generation_config.json and the tokenizer files (a char
vocabulary becomes a fast tokenizer with one token per character and the same ids, plus the special
tokens transformers tools expect: see ``CHAR_SPECIALS``). The tokenizer's ``model_max_length`` is the
model's ``block_size``. transformers older than 5 is refused (``require_transformers``). A model whose
options no transformers architecture has is refused with one line naming the option; one trained with
``model.doc_mask=true`` is exported with a warning (see ``DOC_MASK_WARNING``). ``out_dir`` must
not exist or be empty: the folder is written beside it and renamed into place
(``tinygpt.runtime.files.atomic_folder``), so nothing is overwritten and no half-written folder is left.
"""

import logging
from pathlib import Path
from typing import Any

import torch

from tinygpt.data import CharTokenizer, Tokenizer
from tinygpt.data.tokenizers import EOT
from tinygpt.errors import MACHINE_FAULTS, UserError
from tinygpt.hf.mapping import require_transformers, to_hf_config, to_hf_state
from tinygpt.inference.run import load_run, model_config
from tinygpt.model import GPT
from tinygpt.runtime.files import atomic_folder

log = logging.getLogger("tinygpt")
# Added to a char vocabulary of V characters as ids V and V+1: <|endoftext|> is the bos, eos and pad
# token and <unk> stands for a character outside the vocabulary (tools such as lm-evaluation-harness,
# pipeline and generate need them). The trained ids keep their rows, so the characters' logits are
# ours; each new id's rows are the mean of the characters' (``with_mean_rows``), and generation_config
# suppresses them, so generate picks the characters ours picks.
CHAR_SPECIALS = (EOT, "<unk>")
DOC_MASK_WARNING = (
    "model.doc_mask=true: the transformers model does not mask by document; it computes the same "
    "logits for text of one document (no <|endoftext|> after the first token), and attends across "
    "documents otherwise"
)


def mean_rows(table: torch.Tensor, rows: int) -> torch.Tensor:
    """(V, D) ``table`` with ``rows`` rows appended, each the mean of its V rows: (V + rows, D)."""
    return torch.cat([table, table.mean(0, keepdim=True).expand(rows, -1)])


def with_mean_rows(state: dict[str, torch.Tensor], rows: int) -> dict[str, torch.Tensor]:
    """``state`` (ours, fp32 on CPU) with ``rows`` rows appended to the embedding and the output layer
    (vocab -> vocab + rows), each the mean of the trained rows: as an input, the average character; as
    an output, a logit that is the mean of the characters' logits, so each new id gets at most 1/vocab
    of the probability (Jensen: logsumexp >= log(vocab) + mean), far less once the model has learned."""
    out = dict(state)
    for name in ("transformer.wte.weight", "lm_head.weight"):
        out[name] = mean_rows(state[name], rows)  # (vocab, n_embd) -> (vocab + rows, n_embd)
    return out


def hf_model(model_cfg: dict[str, Any], model: GPT, eot_id: int | None = None, extra_rows: int = 0) -> Any:
    """The transformers model (eval mode, fp32 on CPU) computing what ``model`` computes, built from
    our resolved model config ``model_cfg`` and a copy of the weights; ``eot_id`` (<|endoftext|>, if
    the tokenizer has one) is its bos, eos and pad token. ``extra_rows`` mean rows follow our
    vocabulary (the ids of ``CHAR_SPECIALS``); tied weights stay tied, their rows being alike."""
    require_transformers()
    from transformers import AutoConfig, AutoModelForCausalLM  # ~5 s: only when exporting

    config = to_hf_config(model_cfg, vocab_size=model.lm_head.out_features + extra_rows)
    special = dict(bos_token_id=eot_id, eos_token_id=eot_id, pad_token_id=eot_id)
    hf_config = AutoConfig.for_model(config.pop("model_type"), **config, **special)
    hf = AutoModelForCausalLM.from_config(hf_config, dtype=torch.float32)
    state = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    if extra_rows:
        state = with_mean_rows(state, extra_rows)
    hf.load_state_dict(to_hf_state(state, model_cfg), strict=True)
    return hf.eval()


def char_tokenizer_json(tokenizer: CharTokenizer) -> str:
    """Our char vocabulary as a Hugging Face tokenizer.json: one token per character (newlines and
    spaces included), the same ids, decoded by joining the characters; then ``CHAR_SPECIALS`` as
    special tokens (ids V, V+1), a character outside the vocabulary encoding as <unk>."""
    from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    vocab = {c: i for i, c in enumerate(tokenizer.chars)}
    vocab.update({token: len(vocab) + i for i, token in enumerate(CHAR_SPECIALS)})
    hf = HFTokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character
    hf.decoder = decoders.Fuse()
    hf.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in CHAR_SPECIALS])
    return hf.to_str()


def save_tokenizer(tokenizer: Tokenizer, folder: Path, block_size: int) -> None:
    """tokenizer.json + tokenizer_config.json that ``AutoTokenizer.from_pretrained`` reads as a fast
    tokenizer, with ``model_max_length`` = ``block_size``; <|endoftext|> is its bos, eos and pad token
    (a BPE vocabulary's own, a char vocabulary's added one, with <unk>)."""
    from tokenizers import Tokenizer as HFTokenizer
    from transformers import PreTrainedTokenizerFast

    special: dict[str, str] = {}
    if isinstance(tokenizer, CharTokenizer):
        hf = HFTokenizer.from_str(char_tokenizer_json(tokenizer))
        special["unk_token"] = "<unk>"
    else:
        hf = tokenizer.hf_tokenizer
    if hf.token_to_id(EOT) is not None:
        special.update(bos_token=EOT, eos_token=EOT, pad_token=EOT)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=hf, clean_up_tokenization_spaces=False, model_max_length=block_size, **special
    )
    fast.save_pretrained(str(folder))


def exported_model(model_cfg: dict[str, Any], model: GPT, tokenizer: Tokenizer) -> Any:
    """``hf_model`` for the run's tokenizer: a char vocabulary gets the rows of ``CHAR_SPECIALS``,
    which generation never picks (``suppress_tokens``). ``generate`` without arguments (and a
    pipeline, whose own default is 256 new tokens) stops at ``block_size`` tokens, the model's context
    (learned positions have no row past it)."""
    if isinstance(tokenizer, CharTokenizer):
        vocab = model.lm_head.out_features
        hf = hf_model(model_cfg, model, eot_id=vocab, extra_rows=len(CHAR_SPECIALS))
        hf.generation_config.suppress_tokens = list(range(vocab, vocab + len(CHAR_SPECIALS)))
    else:
        hf = hf_model(model_cfg, model, getattr(tokenizer, "eot_id", None))
    hf.generation_config.max_length = model_cfg["block_size"]
    return hf


def check_out(out: Path) -> None:
    """Refuse an ``out`` that cannot become the export's folder, before the run is loaded: one that
    exists and is not an empty folder, a symbolic link (dangling or not: the rename that puts the
    folder in place would not follow it), or a path under a regular file."""
    try:
        problem = out_problem(out)
    except OSError as exc:  # e.g. a name too long, a folder it may not read
        raise path_error(out, exc) from exc
    if problem:
        raise UserError(f"out={out} {problem}")


def out_problem(out: Path) -> str | None:
    if out.is_symlink():
        return "is a symbolic link; name a new folder (not a link to one)"
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        return "already exists and is not an empty folder; choose a new out folder"
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"is under {parent}, which is a file, not a folder; choose another out folder"
    return None


def path_error(out: Path, exc: OSError) -> Exception:
    """A failure to create or fill ``out`` as one line naming it; a full disk or a read-only
    filesystem is left to ``tinygpt.errors`` (it names their fix)."""
    if exc.errno in MACHINE_FAULTS:
        return exc
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(out) else ""
    return UserError(f"cannot write out={out}{where}: {exc.strerror or exc}; choose another out folder")


def export_run(run: str | Path, out: str | Path, ckpt: str = "latest", ema: bool = False) -> Path:
    """Write the run's model and tokenizer to ``out`` as a transformers folder; returns its path."""
    out = Path(out).expanduser()
    check_out(out)
    run = Path(run).expanduser()
    loaded = load_run(run, ckpt, ema, device="cpu")
    model_cfg, _ = model_config(loaded.state, loaded.path)  # what built it
    if model_cfg.get("doc_mask"):
        log.warning(DOC_MASK_WARNING)
    hf = exported_model(model_cfg, loaded.model, loaded.tokenizer)
    try:
        write_folder(out, hf, loaded.tokenizer, model_cfg["block_size"])
    except OSError as exc:
        raise path_error(out, exc) from exc
    return out


def write_folder(out: Path, hf: Any, tokenizer: Tokenizer, block_size: int) -> None:
    """The transformers folder at ``out``, written beside it and renamed into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_folder(out) as folder:
        hf.save_pretrained(str(folder), safe_serialization=True)
        save_tokenizer(tokenizer, folder, block_size)
        for path in folder.iterdir():  # safetensors writes its file private (0600): make all alike
            path.chmod(0o644)
        if out.exists():
            out.rmdir()  # empty (checked above); rename cannot replace a folder on every system
