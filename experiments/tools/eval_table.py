"""Answers of `python -m tinygpt.eval`, a line per tokenizer: `python experiments/tools/eval_table.py FILE`.

FILE holds the JSON objects the eval command printed, one after another (``for run in ...; do python -m
tinygpt.eval run=$run text=...; done > FILE``). Runs with the same tokenizer and vocabulary are one line:
loss (nats per token) and bits per byte as mean ± std over them, and the range of the bits per byte.
"""

import json
import statistics
import sys
from pathlib import Path

from tinygpt.evaluation.report import mean_std


def read_answers(path: Path) -> list[dict]:
    text, decoder, answers, pos = path.read_text(encoding="utf-8"), json.JSONDecoder(), [], 0
    while pos < len(text.rstrip()):
        answer, pos = decoder.raw_decode(text, text.index("{", pos))
        answers.append(answer)
    return answers


def main(path: Path) -> None:
    groups: dict[str, list[dict]] = {}
    for answer in read_answers(path):
        groups.setdefault(f"{answer['tokenizer']} {answer['vocab_size']}", []).append(answer)
    print("| tokenizer | runs | tokens scored | bytes | loss (nats per token) | bits per byte | min..max |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    by_mean = sorted(groups.items(), key=lambda kv: statistics.mean(a["bits_per_byte"] for a in kv[1]))
    for name, answers in by_mean:
        bpb = [a["bits_per_byte"] for a in answers]
        loss = mean_std([a["loss"] for a in answers])
        first = answers[0]
        print(f"| {name} | {len(answers)} | {first['tokens']} | {first['bytes']} | {loss} | {mean_std(bpb)} "
              f"| {min(bpb):.4f}..{max(bpb):.4f} |")  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1]))
