"""Export a training run as a Hugging Face transformers folder:

    from tinygpt.hf.export import export_run; export_run(run_dir, out_dir)

``out_dir`` then loads with ``AutoModelForCausalLM.from_pretrained(out_dir)`` and
``AutoTokenizer.from_pretrained(out_dir)``: config.json (the matching architecture, see
``tinygpt.hf.mapping``), model.safetensors, generation_config.json and the tokenizer files (a char
vocabulary becomes a fast tokenizer with one token per character and the same ids). A model whose
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
from tinygpt.errors import UserError
from tinygpt.hf.mapping import to_hf_config, to_hf_state
from tinygpt.inference.run import load_run, model_config
from tinygpt.model import GPT
from tinygpt.runtime.files import atomic_folder

log = logging.getLogger("tinygpt")
DOC_MASK_WARNING = (
    "model.doc_mask=true: the transformers model does not mask by document; it computes the same "
    "logits for text of one document (no <|endoftext|> after the first token), and attends across "
    "documents otherwise"
)


def hf_model(model_cfg: dict[str, Any], model: GPT, eot_id: int | None = None) -> Any:
    """The transformers model (eval mode, fp32 on CPU) computing what ``model`` computes, built from
    our resolved model config ``model_cfg`` and a copy of the weights; ``eot_id`` (<|endoftext|>, if
    the tokenizer has one) is its bos, eos and pad token."""
    from transformers import AutoConfig, AutoModelForCausalLM  # ~5 s: only when exporting

    config = to_hf_config(model_cfg, vocab_size=model.lm_head.out_features)
    special = dict(bos_token_id=eot_id, eos_token_id=eot_id, pad_token_id=eot_id)
    hf_config = AutoConfig.for_model(config.pop("model_type"), **config, **special)
    hf = AutoModelForCausalLM.from_config(hf_config, dtype=torch.float32)
    state = to_hf_state({k: v.detach().float().cpu() for k, v in model.state_dict().items()}, model_cfg)
    hf.load_state_dict(state, strict=True)
    return hf.eval()


def char_tokenizer_json(tokenizer: CharTokenizer) -> str:
    """Our char vocabulary as a Hugging Face tokenizer.json: one token per character (newlines and
    spaces included), the same ids, decoded by joining the characters."""
    from tokenizers import Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    vocab = {c: i for i, c in enumerate(tokenizer.chars)}
    hf = HFTokenizer(models.WordLevel(vocab, unk_token="<unk>"))  # "<unk>" is no token: unknown fails
    hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character
    hf.decoder = decoders.Fuse()
    return hf.to_str()


def save_tokenizer(tokenizer: Tokenizer, folder: Path) -> None:
    """tokenizer.json + tokenizer_config.json that ``AutoTokenizer.from_pretrained`` reads as a fast
    tokenizer; a BPE vocabulary's <|endoftext|> is its bos, eos and pad token."""
    from tokenizers import Tokenizer as HFTokenizer
    from transformers import PreTrainedTokenizerFast

    if isinstance(tokenizer, CharTokenizer):
        hf = HFTokenizer.from_str(char_tokenizer_json(tokenizer))
    else:
        hf = tokenizer.hf_tokenizer
    special = {}
    if getattr(tokenizer, "eot_id", None) is not None:
        special = dict(bos_token=EOT, eos_token=EOT, pad_token=EOT)
    fast = PreTrainedTokenizerFast(tokenizer_object=hf, clean_up_tokenization_spaces=False, **special)
    fast.save_pretrained(str(folder))


def check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"out={out} already exists and is not an empty folder; choose a new out folder")


def export_run(run: str | Path, out: str | Path, ckpt: str = "latest", ema: bool = False) -> Path:
    """Write the run's model and tokenizer to ``out`` as a transformers folder; returns its path."""
    out = Path(out).expanduser()
    check_out(out)
    run = Path(run).expanduser()
    loaded = load_run(run, ckpt, ema, device="cpu")
    model_cfg, _ = model_config(loaded.state, loaded.path)  # what built it
    if model_cfg.get("doc_mask"):
        log.warning(DOC_MASK_WARNING)
    hf = hf_model(model_cfg, loaded.model, getattr(loaded.tokenizer, "eot_id", None))
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_folder(out) as folder:
        hf.save_pretrained(str(folder), safe_serialization=True)
        save_tokenizer(loaded.tokenizer, folder)
        for path in folder.iterdir():  # safetensors writes its file private (0600): make all alike
            path.chmod(0o644)
        if out.exists():
            out.rmdir()  # empty (checked above); rename cannot replace a folder on every system
    return out
