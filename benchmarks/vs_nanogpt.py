"""TinyGPT's and nanoGPT's figures, read out of each program's own logs: the reading side of
benchmarks/vs_nanogpt.sh (the side-by-side table) and benchmarks/gpu.sh (one figure per call).

    python benchmarks/vs_nanogpt.py peak --device cpu [--precision bf16]  # FLOP/s of a square matmul
    python benchmarks/vs_nanogpt.py table WORK --peak fp32=2.1e11 --peak bf16=6.4e11 --ng-precision fp32 \
        --text tinyshakespeare.txt
    python benchmarks/vs_nanogpt.py nano-train LOG     # nanoGPT train.py: median ms/iter, 3 first left out
    python benchmarks/vs_nanogpt.py nano-bench LOG     # nanoGPT bench.py: its "time per iteration" in ms
    python benchmarks/vs_nanogpt.py nano-mfu LOG       # nanoGPT bench.py: its MFU, against 989 TFLOP/s
    python benchmarks/vs_nanogpt.py ours JSON          # tinygpt.bench --json: ms, tok/s, MFU, memory
    python benchmarks/vs_nanogpt.py field JSON KEY     # one value of that JSON ("n/a" if missing)
    python benchmarks/vs_nanogpt.py ratio A B          # A / B to two decimals ("n/a" unless both are numbers)

Each reader prints one figure (or a row's cells), "n/a" where the log or JSON lacks it, so that a row of
a budgeted GPU call that was cut short still prints.

WORK is the script's work directory: ``rows.tsv`` (per training row: name, n_layer, n_embd, block, batch,
steps), ``wall.tsv`` (row, program, round, seconds), per row and round nanoGPT's log
``<row>/ng_<round>.log`` and TinyGPT's run directory ``<row>/tg_<round>/`` (its metrics.jsonl, and the
precision it trained in from effective_config.json), and ``bench/`` (the bare-step logs, or a ``skipped``
note). Each program's share of the peak is against the matmul peak of the precision it trained in.
"""

import argparse
import json
import re
import statistics
import time
from collections import defaultdict
from pathlib import Path

NANOGPT_ITER = re.compile(r"^iter (\d+): loss \S+, time ([\d.]+)ms", re.MULTILINE)
NANOGPT_BENCH = re.compile(r"time per iteration: ([\d.]+)ms")
NANOGPT_MFU = re.compile(r"MFU: ([\d.]+)%")
TINYGPT_BENCH = re.compile(r"([\d,.]+) ?(tok/s|tokens/s|ms)")
PROGRAMS = ("ng", "tg")  # nanoGPT, TinyGPT
HEADER = (
    "row",
    "nanoGPT tok/s",
    "TinyGPT tok/s",
    "TinyGPT ÷ nanoGPT",
    "nanoGPT ms/step",
    "TinyGPT ms/step",
    "nanoGPT wall s",
    "TinyGPT wall s",
    "nanoGPT % of peak",
    "TinyGPT % of peak",
)


def matmul_peak(device: str, precision: str) -> float:
    """FLOP/s of a square matmul in ``precision`` (fp32 or bf16): 2048 on the CPU, 8192 on a GPU."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    n = 2048 if device == "cpu" else 8192
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(5):
        if device != "cpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / 10)
    return 2 * n**3 / best


def flops_per_step(n_layer: int, n_embd: int, block: int, batch: int, vocab: int) -> float:
    """6·N per token plus attention, as nanoGPT's estimate_mfu (N: no biases, no position table)."""
    params = vocab * n_embd + n_layer * (12 * n_embd**2 + 2 * n_embd) + n_embd
    return (6 * params + 12 * n_layer * n_embd * block) * block * batch


def step_ms(work: Path, row: str, rnd: str, tokens: int, warm: int) -> dict[str, float]:
    """Median ms/step past warm-up of nanoGPT (its "iter k: ... time" lines) and TinyGPT (metrics.jsonl)."""
    log = (work / row / f"ng_{rnd}.log").read_text()
    ng = [float(ms) for step, ms in NANOGPT_ITER.findall(log) if int(step) > warm]
    lines = (work / row / f"tg_{rnd}" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    tg = [1000 * tokens / r["tokens_per_s"] for r in records if "tokens_per_s" in r and r["step"] > warm]
    return {"ng": statistics.median(ng), "tg": statistics.median(tg)}


def fmt(value: object) -> str:
    """A table cell: floats as 1,234 (from 100), 12.3 (from 10) or 1.23; None as an empty cell."""
    if value is None:
        return ""
    if not isinstance(value, float):
        return str(value)
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def cells(*values: object) -> None:
    print("| " + " | ".join(fmt(v) for v in values) + " |")


def tg_precision(work: Path, row: str) -> str:
    """The precision TinyGPT's round-1 run of ``row`` trained in (its effective_config.json)."""
    config = json.loads((work / row / "tg_1" / "effective_config.json").read_text(encoding="utf-8"))
    return str(config["precision"])


def train_rows(work: Path, peaks: dict[str, float], ng_precision: str, vocab: int, wall: dict) -> list[str]:
    notes = []
    for spec in (work / "rows.tsv").read_text().splitlines():
        row, n_layer, n_embd, block, batch, steps = spec.split("\t")
        tokens = int(block) * int(batch)
        warm = max(10, int(steps) // 8)
        rounds = sorted({p.stem.split("_")[1] for p in (work / row).glob("ng_*.log")})
        medians = [step_ms(work, row, r, tokens, warm) for r in rounds]
        ms = {p: min(m[p] for m in medians) for p in PROGRAMS}  # the least disturbed round
        tok = {p: 1000 * tokens / ms[p] for p in PROGRAMS}
        flops = flops_per_step(int(n_layer), int(n_embd), int(block), int(batch), vocab)
        precision = {"ng": ng_precision, "tg": tg_precision(work, row)}
        share = (100 * flops * tok[p] / tokens / peaks.get(precision[p], float("nan")) for p in PROGRAMS)
        walls = (wall[row, p] for p in PROGRAMS)
        name = f"train {row} ({precision['ng']} / {precision['tg']}), {steps} steps"
        cells(name, *tok.values(), tok["tg"] / tok["ng"], *ms.values(), *walls, *share)
        by_round = ", ".join(f"{m['ng']:,.0f} / {m['tg']:,.0f}" for m in medians)
        notes.append(f"train {row}: ms/step (nanoGPT / TinyGPT) by round {by_round}; steps to {warm} dropped")
    return notes


def sample_rows(work: Path, wall: dict) -> None:
    """Whole-command tokens/s, and the rate past startup: (new - 1) / (wall of `new` tokens - wall of 1)."""
    new = int((work / "sample_tokens").read_text())
    long, short = ({p: wall[f"sample_{n}", p] for p in PROGRAMS} for n in (new, 1))
    whole = {p: new / long[p] for p in PROGRAMS}
    name = f"sample {new} tokens, batch 1, whole command"
    cells(name, *whole.values(), whole["tg"] / whole["ng"], None, None, *long.values(), None, None)
    if min(long[p] - short[p] for p in PROGRAMS) > 0:
        rate = {p: (new - 1) / (long[p] - short[p]) for p in PROGRAMS}
        name = "sample, past startup (wall − wall of a 1-token run)"
        cells(name, *rate.values(), rate["tg"] / rate["ng"], None, None, *short.values(), None, None)


def bench_row(bench: Path) -> str:
    """The bare-step row (nanoGPT's bench.py: GPT-2 124M shape, batch 12 x 1024) where both programs ran."""
    ng_log, tg_log = bench / "ng.log", bench / "tg.log"
    ng = NANOGPT_BENCH.search(ng_log.read_text()) if ng_log.exists() else None
    tg = ([None, *TINYGPT_BENCH.finditer(tg_log.read_text())] if tg_log.exists() else [None])[-1]
    if not (ng and tg):
        skipped = (bench / "skipped").read_text().strip() if (bench / "skipped").exists() else "no result"
        return f"bare step: {skipped}"
    tokens = 12 * 1024
    ms = {"ng": float(ng.group(1))}
    ms["tg"] = (
        float(tg.group(1)) if tg.group(2) == "ms" else 1000 * tokens / float(tg.group(1).replace(",", ""))
    )
    tok = {p: 1000 * tokens / ms[p] for p in PROGRAMS}
    cells("bare step, GPT-2 124M shape", *tok.values(), tok["tg"] / tok["ng"], *ms.values(), *[None] * 4)
    return "bare step: nanoGPT's bench.py (random tokens, no grad clipping) vs `python -m tinygpt.bench`"


def table(work: Path, peaks: dict[str, float], ng_precision: str, vocab: int) -> None:
    walls: dict[tuple[str, str], list[float]] = defaultdict(list)
    for line in (work / "wall.tsv").read_text().splitlines():
        row, prog, _, secs = line.split("\t")
        walls[row, prog].append(float(secs))
    wall = {key: min(v) for key, v in walls.items()}  # the least disturbed round
    rounds = ", ".join(
        f"{row} {prog} {' / '.join(f'{t:.1f}' for t in v)}" for (row, prog), v in walls.items()
    )
    cells(*HEADER)
    print("|---" + "|---:" * (len(HEADER) - 1) + "|")
    notes = train_rows(work, peaks, ng_precision, vocab, wall)
    if (work / "sample_tokens").exists():
        sample_rows(work, wall)
    notes.append(bench_row(work / "bench"))
    notes.append(f"wall s by round: {rounds}")
    print("\n" + "\n".join(notes))


def read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def nano_train(log: str) -> str:
    """Median ms per iteration of nanoGPT's train.py, its first 3 logged iterations (compilation) left out."""
    times = [float(ms) for _, ms in NANOGPT_ITER.findall(log)]
    return f"{statistics.median(times[3:]):.2f}" if len(times) > 3 else "n/a"


def nano_bench(log: str) -> str:
    found = NANOGPT_BENCH.findall(log)
    return f"{float(found[-1]):.2f}" if found else "n/a"


def nano_mfu(log: str, peak_tflops: float = 989.0) -> str:
    """bench.py's MFU is against an A100's 312 TFLOP/s: restated against ``peak_tflops`` (H100/H200 bf16)."""
    found = NANOGPT_MFU.findall(log)
    return f"{float(found[-1]) * 312 / peak_tflops:.1f}%" if found else "n/a"


def ours(path: str) -> str:
    """'ms | tok/s | MFU | peak MiB' of a tinygpt.bench JSON, or n/a when the run left none."""
    try:
        r = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "n/a | n/a | n/a | n/a"
    mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") else "n/a"
    return (
        f"{r['ms_per_step']:.2f} | {r['tokens_per_s']:,.0f} | {mfu} | {r['peak_memory_bytes'] / 2**20:,.0f}"
    )


def field(path: str, key: str) -> str:
    try:
        return str(json.loads(Path(path).read_text(encoding="utf-8"))[key])
    except (OSError, ValueError, KeyError):
        return "n/a"


def ratio(a: str, b: str) -> str:
    try:
        return f"{float(a) / float(b):.2f}x"
    except (ValueError, ZeroDivisionError):
        return "n/a"


# reader -> (what it takes, how it reads)
READERS = {
    "nano-train": (["log"], lambda log: nano_train(read(log))),
    "nano-bench": (["log"], lambda log: nano_bench(read(log))),
    "nano-mfu": (["log"], lambda log: nano_mfu(read(log))),
    "ours": (["json"], ours),
    "field": (["json", "key"], field),
    "ratio": (["a", "b"], ratio),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    peak = sub.add_parser("peak")
    peak.add_argument("--device", default="cpu")
    peak.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    tab = sub.add_parser("table")
    tab.add_argument("work", type=Path)
    tab.add_argument(
        "--peak", action="append", required=True, help="PRECISION=FLOP/s, repeated (the best per precision)"
    )
    tab.add_argument("--ng-precision", default="fp32", help="the precision nanoGPT trained in")
    tab.add_argument("--text", type=Path, required=True, help="the character corpus (its vocabulary)")
    for name, (takes, _) in READERS.items():
        reader = sub.add_parser(name)
        for arg in takes:
            reader.add_argument(arg)
    args = parser.parse_args()
    if args.cmd in READERS:
        takes, reader = READERS[args.cmd]
        print(reader(*(getattr(args, arg) for arg in takes)))
    elif args.cmd == "peak":
        print(f"{matmul_peak(args.device, args.precision):.4g}")
    else:
        measured: dict[str, list[float]] = defaultdict(list)
        for item in args.peak:
            precision, _, flops = item.partition("=")
            measured[precision].append(float(flops))
        for precision, values in measured.items():
            runs = ", ".join(f"{v / 1e9:.0f}" for v in values)
            best = max(values) / 1e9
            print(f"{precision} matmul peak: {best:.1f} GFLOP/s (the best of {runs}: before, after)")
        peaks = {precision: max(values) for precision, values in measured.items()}
        print()
        table(args.work, peaks, args.ng_precision, len(set(args.text.read_text(encoding="utf-8"))))


if __name__ == "__main__":
    main()
