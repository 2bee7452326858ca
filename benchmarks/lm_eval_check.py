"""lm-evaluation-harness on TinyGPT exports, for real, with no network: does it run, and does
``tinygpt.eval documents=separate`` give its bits per byte?

    python benchmarks/lm_eval_check.py --lm-eval-python /tmp/lmeval-venv/bin/python

lm-eval lives in its own environment (``pip install 'lm-eval[hf]'``: it pins its own dependencies),
named by ``--lm-eval-python``. In a scratch folder (``--work``, default a new temporary one) the script

1. writes a small corpus (numbered sentences) and trains a char run and a BPE run on it
   (``python -m tinygpt.train``, 2 layers, 32 wide, ``--steps`` steps), exporting each
   (``python -m tinygpt.export``);
2. writes two local lm-eval tasks in its YAML format over JSONL files it made: ``tinygpt_mc`` (multiple
   choice: a sentence's start, the ending
   naming the place its thing is sold at against three other places; acc, acc_norm) and
   ``tinygpt_ppl`` (``loglikelihood_rolling`` over held-out documents: word_perplexity, byte_perplexity,
   bits_per_byte);
3. runs ``lm_eval --model hf --model_args pretrained=EXPORT --tasks ... --include_path ... --device
   cpu`` on each export, and ``python -m tinygpt.eval text=FOLDER`` on the same documents (as .txt
   files) with ``documents=separate`` and ``documents=joined``;
4. prints one Markdown table: the task results, and lm-eval's bits per byte against tinygpt.eval's.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NAMES = ["Ada", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Ivy"]
THINGS = ["apples", "bread", "coffee", "lamps", "maps", "books", "shoes", "tea"]
PLACES = [
    "the market",
    "the mill",
    "the harbour",
    "the station",
    "the park",
    "the library",
    "the inn",
    "the pier",
]
TASKS = {
    "tinygpt_mc": {
        "output_type": "multiple_choice",
        "doc_to_text": "context",
        "doc_to_choice": "choices",
        "doc_to_target": "label",
        "target_delimiter": "",
        "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}],
    },
    "tinygpt_ppl": {
        "output_type": "loglikelihood_rolling",
        "doc_to_text": "",
        "doc_to_target": "text",
        "metric_list": [{"metric": m} for m in ("word_perplexity", "byte_perplexity", "bits_per_byte")],
    },
}


def sentence(rng: random.Random, i: int) -> tuple[str, str]:
    """One sentence of the corpus as (start, ending): each thing is sold at its own place, so a model
    that learned the corpus tells the right ending from the other places'."""
    name, t = rng.choice(NAMES), rng.randrange(len(THINGS))
    return f"{i}: {name} buys {THINGS[t]}", ending(PLACES[t])


def ending(place: str) -> str:
    return f" at {place} and walks home.\n"


def write_data(work: Path) -> Path:
    """The training corpus, the held-out documents (.txt files and ppl.jsonl) and mc.jsonl; returns
    the folder of documents."""
    rng = random.Random(0)
    lines = ["".join(sentence(rng, i)) for i in range(3000)]
    (work / "corpus.txt").write_text("".join(lines), encoding="utf-8")
    docs = work / "docs"
    docs.mkdir()
    held_out = [
        "".join("".join(sentence(rng, 5000 + 10 * d + k)) for k in range(1 + d % 4)).rstrip("\n")
        for d in range(8)
    ]  # 1 to 4 sentences each, ~45-180 characters: one to several windows of 64 tokens
    for d, text in enumerate(held_out):
        (docs / f"doc{d}.txt").write_text(text, encoding="utf-8")
    write_jsonl(work / "ppl.jsonl", [{"text": text} for text in held_out])
    questions = []
    for q in range(40):
        start, right = sentence(rng, 7000 + q)
        others = rng.sample([ending(p) for p in PLACES if ending(p) != right], 3)
        choices = [e.rstrip("\n") for e in [right, *others]]
        rng.shuffle(choices)
        questions.append({"context": start, "choices": choices, "label": choices.index(right.rstrip("\n"))})
    write_jsonl(work / "mc.jsonl", questions)
    return docs


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def write_tasks(work: Path) -> Path:
    """The tasks' YAML files (JSON is YAML) in a folder for ``--include_path``."""
    folder = work / "tasks"
    folder.mkdir()
    for task, fields in TASKS.items():
        data = str(work / ("mc.jsonl" if task == "tinygpt_mc" else "ppl.jsonl"))
        config = {
            "task": task,
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": data}},
            "test_split": "test",
            **fields,
            "metadata": {"version": 1.0},
        }
        (folder / f"{task}.yaml").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return folder


def run(command: list[str], env: dict[str, str]) -> str:
    """Run ``command`` from the repository root; its stdout, or exit with its stderr's tail."""
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(command[:4])} ... exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc.stdout


def train_and_export(work: Path, kind: str, steps: int, env: dict[str, str]) -> tuple[Path, Path]:
    """Train a tiny ``kind`` ("char" or "bpe") run on the corpus and export it: (run, export)."""
    run_dir, export = work / f"{kind}_run", work / f"{kind}_hf"
    tokenizer = ["data/tokenizer=bpe", "data.tokenizer.vocab_size=320"] if kind == "bpe" else []
    model = ["model.n_layer=2", "model.n_head=2", "model.n_embd=32", "model.block_size=64"]
    run(
        [sys.executable, "-m", "tinygpt.train", "data=text", f"data.path={work / 'corpus.txt'}", *tokenizer,
         *model, f"max_steps={steps}", "batch_size=16", "eval_interval=1000", "device=cpu",
         f"hydra.run.dir={run_dir}"],
        env,
    )  # fmt: skip
    run([sys.executable, "-m", "tinygpt.export", f"run={run_dir}", f"out={export}"], env)
    return run_dir, export


def lm_eval(python: str, export: Path, tasks: Path, out: Path, env: dict[str, str]) -> dict:
    """lm-eval's results for both tasks on ``export``: {task: {metric: value}}."""
    run(
        [python, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={export},dtype=float32",
         "--tasks", ",".join(TASKS), "--include_path", str(tasks), "--device", "cpu", "--batch_size", "8",
         "--output_path", str(out)],
        env,
    )  # fmt: skip
    found = sorted(out.rglob("results_*.json"))
    if not found:
        sys.exit(f"error: lm_eval wrote no results_*.json under {out}")
    results = json.loads(found[-1].read_text(encoding="utf-8"))["results"]
    return {
        task: {k.split(",")[0]: v for k, v in results[task].items() if k.endswith(",none")} for task in TASKS
    }


def tinygpt_eval(run_dir: Path, docs: Path, documents: str, env: dict[str, str]) -> dict:
    out = run(
        [sys.executable, "-m", "tinygpt.eval", f"run={run_dir}", f"text={docs}", "device=cpu",
         f"documents={documents}"],
        env,
    )  # fmt: skip
    return json.loads(out)


def table_rows(kind: str, found: dict, separate: dict, joined: dict) -> list[str]:
    mc, ppl = found["tinygpt_mc"], found["tinygpt_ppl"]
    gap = separate["bits_per_byte"] - ppl["bits_per_byte"]
    return [
        f"| {kind} | {mc['acc']:.3f} | {mc['acc_norm']:.3f} | {ppl['word_perplexity']:.3f} | "
        f"{ppl['byte_perplexity']:.4f} | {ppl['bits_per_byte']:.6f} | {separate['bits_per_byte']:.6f} | "
        f"{gap:+.1e} | {joined['bits_per_byte']:.6f} |"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--lm-eval-python", required=True, help="the python of an environment with lm-eval[hf]"
    )
    parser.add_argument("--steps", type=int, default=30, help="training steps of each tiny run")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a new temporary one)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="lm_eval_check_"))
    work.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ, "PYTHONPATH": str(REPO), "TINYGPT_CACHE": str(work / "cache"),
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(work / "hf_home"),
        "TOKENIZERS_PARALLELISM": "false",
    }  # fmt: skip
    docs, tasks = write_data(work), write_tasks(work)
    print(f"scratch folder: {work}", file=sys.stderr)
    rows = []
    for kind in ("char", "bpe"):
        run_dir, export = train_and_export(work, kind, args.steps, env)
        found = lm_eval(args.lm_eval_python, export, tasks, work / f"{kind}_lm_eval", env)
        separate = tinygpt_eval(run_dir, docs, "separate", env)
        joined = tinygpt_eval(run_dir, docs, "joined", env)
        rows += table_rows(kind, found, separate, joined)
    print(
        "| run | mc acc | mc acc_norm | word ppl | byte ppl | lm-eval bpb | tinygpt.eval separate bpb "
        "| separate - lm-eval | tinygpt.eval joined bpb |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
