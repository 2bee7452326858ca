"""The keys of the commands other than training (generate, eval, export, report, bench, prepare), each
declared once with its default, type, check and meaning; registered with Hydra as each command's schema.

Keys whose wrong values a user should hear about in our words (``ckpt must be one of latest, best``)
are typed loosely (``str``, ``Any``) and carry a check; the command runs the checks before it loads
anything.
"""

from dataclasses import dataclass, fields
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from tinygpt.config.keys import (
    BOOLEAN,
    OPTIONAL_TEXT,
    POSITIVE,
    TEXT,
    Check,
    check_given,
    check_values,
    checks_of,
    is_int,
    is_number,
    key,
    one_of,
)
from tinygpt.config.schema import DEVICES, PRECISIONS, TrainSchema

CHECKPOINT_NAMES = ("latest", "best")  # tinygpt.inference.run.CHECKPOINTS maps them to files
SPLITS = ("val", "train")  # tinygpt.evaluation.evaluate.SPLITS
EVAL_DOCUMENTS = ("joined", "separate")  # tinygpt.eval documents=: tinygpt.evaluation.documents
DOCUMENT_MODES = ("file", "blank_line", "line")  # tinygpt.data.sources.DOCUMENT_MODES
RUN_DIR = "a training run's directory (its hydra.run.dir): ckpt.pt, tokenizer.json"
CKPT = "latest (ckpt.pt) | best (ckpt_best.pt, lowest val loss)"
DEVICE = "auto | cpu | cuda | mps"


@dataclass
class GenerateSchema:
    """``python -m tinygpt.generate``: sampling from a training run."""

    run: str = key(MISSING, RUN_DIR)
    prompt: Any = key("\n", 'text to continue; "-" reads it from stdin; "" starts from <|endoftext|>', TEXT)
    max_new_tokens: int = key(200, "tokens to generate per sample", POSITIVE)
    temperature: float = key(
        1.0,
        "0 = greedy (always the most likely token)",
        Check(lambda v: is_number(v) and v >= 0, "a number >= 0 (0 = greedy)"),
    )
    top_k: int | None = key(
        None,
        "keep only the k most likely tokens; null = all",
        Check(
            lambda v: v is None or (is_int(v) and v >= 1), "a positive integer, or null to keep every token"
        ),
    )
    top_p: float = key(
        1.0,
        "nucleus: keep the most likely tokens until their mass reaches p; 1 = all",
        Check(lambda v: is_number(v) and 0 < v <= 1, "in (0, 1] (1 keeps every token)"),
    )
    repetition_penalty: float = key(
        1.0,
        "> 1 makes tokens already in the text less likely (CTRL); 1 = off",
        Check(lambda v: is_number(v) and v > 0, "> 0 (1 = no penalty)"),
    )
    num_samples: int = key(1, "samples drawn together in one batch", POSITIVE)
    seed: int | None = key(None, "an integer makes the samples reproducible")
    stop: Any = key(None, "end a sample just before this text", OPTIONAL_TEXT)
    ckpt: str = key("latest", CKPT, one_of(CHECKPOINT_NAMES))
    ema: bool = key(False, "sample with the checkpoint's EMA weights")
    kv_cache: bool = key(True, "false recomputes the whole context every token: same text, slower")
    static_cache: Any = key(
        "auto",
        "fixed-shape KV cache + a CUDA graph per token: auto = on CUDA only; true | false",
        Check(lambda v: v == "auto" or isinstance(v, bool), "auto, true or false"),
    )
    compile: Any = key(
        False, "torch.compile the static cache's one-token step: a wait up front, then fewer kernels", BOOLEAN
    )
    device: str = key("auto", DEVICE, one_of(DEVICES))


@dataclass
class EvalSchema:
    """``python -m tinygpt.eval``: loss, perplexity and bits per byte of a run over a whole split."""

    run: str = key(MISSING, RUN_DIR)
    ckpt: str = key("latest", CKPT, one_of(CHECKPOINT_NAMES))
    ema: bool = key(False, "evaluate the checkpoint's EMA weights")
    split: str = key("val", "val | train: which split of the run's data (or of data=...)", one_of(SPLITS))
    text: str | None = key(None, "a UTF-8 file (or folder of .txt files) to evaluate instead of a split")
    stride: int | None = key(
        None,
        "windows start every stride tokens; null = model.block_size (no overlap)",
        Check(lambda v: v is None or (is_int(v) and v >= 1), "a positive integer (at most model.block_size)"),
    )
    documents: str = key(
        "joined",
        "joined | separate: text=FILE's documents as one sequence (as training sees them), or each on "
        "its own after a prefix token, as lm-evaluation-harness's rolling loglikelihood scores them",
        one_of(EVAL_DOCUMENTS),
    )
    batch_size: int = key(16, "windows per forward pass", POSITIVE)
    device: str = key("auto", DEVICE, one_of(DEVICES))
    precision: str = key(
        "fp32", "fp32 | bf16 | fp16 (autocast; the loss itself is summed in fp32/fp64)", one_of(PRECISIONS)
    )
    cache_dir: str = key("${oc.env:TINYGPT_CACHE,'~/.cache/tinygpt'}", "token cache for the run's data")
    out: str | None = key(None, "also write the JSON to this file (refused if it exists)")
    data: Any = None  # data=<group>: other data than the run's (tokenized as the run's); conf/data/


@dataclass
class ExportSchema:
    """``python -m tinygpt.export``: a training run as a Hugging Face transformers folder."""

    run: str = key(MISSING, RUN_DIR)
    out: str = key(MISSING, "the folder to write: must not exist yet, or be empty")
    ckpt: str = key("latest", CKPT, one_of(CHECKPOINT_NAMES))
    ema: bool = key(False, "export the checkpoint's EMA weights")


@dataclass
class PrepareSchema:
    """``python -m tinygpt.prepare``: a corpus as a folder of token shards (tinygpt/data/prepare.py)."""

    input: str = key(
        MISSING, "a .txt / .jsonl / .json (JSON lines) / .parquet file, a folder of them, or a glob"
    )
    out: str = key(MISSING, "the folder to write (a killed run continues there when run again)")
    text_key: str = key("text", "the JSONL field / parquet column holding each document's text", TEXT)
    documents: str = key(
        "file",
        ".txt documents: file (each file one) | blank_line (paragraphs) | line (each line with text)",
        one_of(DOCUMENT_MODES),
    )
    tokenizer: str = key(
        "bpe", "char | bpe (trained on the input) | a tokenizer.json's path (e.g. GPT-2's)", TEXT
    )
    vocab_size: int = key(
        8000,
        "tokenizer=bpe: tokens in the vocabulary",
        Check(lambda v: is_int(v) and v >= 257, "an integer >= 257"),
    )
    tokenizer_sample_bytes: int = key(
        100_000_000, "tokenizer=bpe: trained on the input's first this-many bytes", POSITIVE
    )
    val_tokens: int = key(
        1_000_000,
        "validation: the first whole documents until they hold this many tokens; 0 = none",
        Check(lambda v: is_int(v) and v >= 0, "an integer >= 0"),
    )
    shard_tokens: int = key(
        100_000_000,
        "tokens per shard file (FineWeb's 100M)",
        Check(lambda v: is_int(v) and 1 <= v < 1 << 31, "a positive integer below 2**31"),
    )
    workers: int | None = key(
        None,
        "threads encoding the text; null = every core (the output is the same for any count)",
        Check(lambda v: v is None or (is_int(v) and v >= 1), "a positive integer, or null for every core"),
    )


@dataclass
class ReportSchema:
    """``python -m tinygpt.report``: report.md (one row per run) and loss_curves.png."""

    paths: list[str] = key(MISSING, "a Hydra multirun directory, or run directories")
    out: str | None = key(None, "where to write (null: the sweep directory; for run directories, the cwd)")
    logy: bool = key(False, "log-scale loss axis in the plot")
    seeds: bool = key(
        False, "also a table over seeds: runs that differ only in `seed` as one line, mean ± std and range"
    )


@dataclass
class BenchSchema(TrainSchema):
    """``python -m tinygpt.bench``: training speed; every training key works beside these."""

    steps: int = key(20, "timed steps", POSITIVE)
    warmup: int = key(3, "untimed steps first, compilation included", Check(lambda v: v >= 0, ">= 0"))
    json: str | None = key(None, "also write the result to this file (its folder must exist)")
    peak_tflops: float | None = key(
        None,
        "the device's peak in TFLOP/s, instead of the table/probe",
        Check(lambda v: v is None or (is_number(v) and v > 0), "a number > 0 (or null: the table/probe)"),
    )
    vocab_size: int | None = key(
        None,
        "build the model with this many token ids (e.g. GPT-2's 50304)",
        Check(lambda v: v is None or (is_int(v) and v >= 1), "a positive integer (or null: the data's)"),
    )
    eager_update: bool = key(
        False, "with compile_mode=reduce-overhead, keep the update out of CUDA graphs (to compare)"
    )


def own_keys(command: str) -> list[str]:
    """A command's own keys: bench's without the training keys its schema inherits."""
    inherited = {f.name for f in fields(TrainSchema)} if command == "bench" else set()
    return [f.name for f in fields(SCHEMAS[command]) if f.name not in inherited]


def check_command(command: str, cfg: DictConfig) -> None:
    """Refuse a required key left unset, then any value its declaration's check refuses."""
    schema = SCHEMAS[command]
    check_given(cfg, schema, USAGE[command].split(": ", 1)[0])
    check_values(cfg, checks_of(schema))


SCHEMAS: dict[str, type] = {
    "train": TrainSchema,
    "generate": GenerateSchema,
    "eval": EvalSchema,
    "export": ExportSchema,
    "report": ReportSchema,
    "bench": BenchSchema,
    "prepare": PrepareSchema,
}
for _name, _schema in SCHEMAS.items():
    if _name != "train":  # schema.py registers train_schema
        ConfigStore.instance().store(name=f"{_name}_schema", node=_schema)

# Three examples of each command, as its --help shows them.
EXAMPLES = {
    "train": [
        "python -m tinygpt.train max_steps=200 hydra.run.dir=out/my_model",
        "python -m tinygpt.train model=llama optim=lion optim.lr=3e-4",
        "python -m tinygpt.train -m optim=adamw,lion seed=1,2    # a sweep: 4 runs under multirun/",
    ],
    "generate": [
        'python -m tinygpt.generate run=out/my_model prompt="Hello, world!"',
        "python -m tinygpt.generate run=out/my_model prompt=ROMEO: temperature=0.8 top_p=0.9 seed=7",
        'echo "To be" | python -m tinygpt.generate run=out/my_model prompt=- num_samples=3',
    ],
    "eval": [
        "python -m tinygpt.eval run=out/my_model",
        "python -m tinygpt.eval run=out/my_model text=held_out.txt",
        "python -m tinygpt.eval run=out/my_model ckpt=best split=train out=eval.json",
    ],
    "export": [
        "python -m tinygpt.export run=out/my_model out=hf/my_model",
        "python -m tinygpt.export run=out/my_model out=hf/my_model_ema ema=true",
        "python -m tinygpt.export run=out/my_model out=hf/best ckpt=best",
    ],
    "report": [
        "python -m tinygpt.report multirun/2026-12-02/10-00-00",
        "python -m tinygpt.report runs/a runs/b out=compare",
        "python -m tinygpt.report multirun/2026-12-02/10-00-00 seeds=true logy=true",
    ],
    "prepare": [
        "python -m tinygpt.prepare input=books/ out=prepared/books",
        "python -m tinygpt.prepare input=plays.txt out=prepared/plays documents=blank_line tokenizer=bpe",
        "python -m tinygpt.prepare input='dump/*.jsonl' out=prepared/dump tokenizer=gpt2/tokenizer.json",
    ],
    "bench": [
        "python -m tinygpt.bench",
        "python -m tinygpt.bench steps=50 model=llama precision=bf16 device=cuda",
        "python -m tinygpt.bench compile=true json=bench.json",
    ],
}

# The first line of each command's --help (and of its section in docs/keys.md).
USAGE = {
    "train": "python -m tinygpt.train [key=value ...] [group=option ...]: train a model; each run writes "
    "one run directory (hydra.run.dir)",
    "generate": "python -m tinygpt.generate run=DIR [key=value ...]: sample text from a training run",
    "eval": "python -m tinygpt.eval run=DIR [key=value ...]: loss, perplexity and bits per byte of a "
    "training run over a whole split (or text=FILE), as JSON on stdout",
    "export": "python -m tinygpt.export run=DIR out=DIR2 [key=value ...]: write a training run as a Hugging "
    "Face transformers folder (config.json, model.safetensors, tokenizer files)",
    "report": "python -m tinygpt.report SWEEP_DIR | RUN_DIR ... [key=value ...]: summarize a sweep or "
    "several runs in report.md (one row per run) and loss_curves.png",
    "prepare": "python -m tinygpt.prepare input=PATH out=DIR [key=value ...]: tokenize a corpus (text, "
    "JSONL or parquet) once into a folder of token shards with its tokenizer and meta.json",
    "bench": "python -m tinygpt.bench [key=value ...]: training speed (ms/step, tokens/s, MFU, memory) on "
    "the training code path; every training key and group works here too",
}
