"""Bits per byte of runs, on one held-out text: ``python experiments/tools/bits_per_byte.py TEXT SWEEP...``.

Each run's final val loss (nats per token, estimated on the val batches it evaluated) x the number of
tokens its tokenizer makes of TEXT / TEXT's bytes / ln 2. Meaningful when TEXT is the runs' val split
(``data.val_path``). Runs with the same tokenizer are one line: mean ± std over their seeds.
"""

import json
import math
import statistics
import sys
from pathlib import Path

from tinygpt.data.tokenizers import load_tokenizer
from tinygpt.evaluation.report import mean_std


def run_line(run: Path, text: str) -> tuple[str, float, float, float, float]:
    """(tokenizer, bytes per token, training FLOPs per token, final val loss, bits per byte)."""
    cfg = json.loads((run / "effective_config.json").read_text())
    tokenizer = load_tokenizer(run / "tokenizer.json")
    n_bytes, n_tokens = len(text.encode("utf-8")), len(tokenizer.encode(text))
    records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    val = [r["val_loss"] for r in records if "val_loss" in r][-1]
    m = cfg[
        "model"
    ]  # FLOPs as tinygpt.training.flops counts them, for the GELU GPT: 12 n_embd^2 weights per layer
    weights = 12 * m["n_layer"] * m["n_embd"] ** 2 + tokenizer.vocab_size * m["n_embd"]
    flops = 6 * weights + 12 * m["n_layer"] * m["n_embd"] * m["block_size"]
    bpe = "vocab_size" in cfg["data"]["tokenizer"]
    name = f"BPE {tokenizer.vocab_size}" if bpe else f"char ({tokenizer.vocab_size} symbols)"
    return name, n_bytes / n_tokens, flops, val, val * n_tokens / n_bytes / math.log(2)


def main(text_path: str, sweeps: list[str]) -> None:
    text = Path(text_path).read_text(encoding="utf-8")
    groups: dict[str, list[tuple[str, float, float, float, float]]] = {}
    for sweep in sweeps:
        for run in sorted(p for p in Path(sweep).iterdir() if (p / "effective_config.json").is_file()):
            line = run_line(run, text)
            groups.setdefault(line[0], []).append(line)
    print(f"held-out text {text_path}: {len(text.encode('utf-8'))} bytes\n")
    print("| tokenizer | bytes per token | training FLOPs per token | seeds | val loss (nats per token) "
          "| bits per byte | bits per byte min..max |")  # fmt: skip
    print("|---|--:|--:|--:|--:|--:|--:|")
    for name, lines in sorted(groups.items(), key=lambda kv: statistics.mean(line[4] for line in kv[1])):
        bpb, loss = [line[4] for line in lines], [line[3] for line in lines]
        spread = f"{min(bpb):.4f}..{max(bpb):.4f}"
        print(f"| {name} | {lines[0][1]:.2f} | {lines[0][2] / 1e6:.2f}M | {len(lines)} "
              f"| {mean_std(loss)} | {mean_std(bpb)} | {spread} |")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
