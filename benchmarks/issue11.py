"""The reading side of benchmarks/gpu_issue11.sh: figures out of each program's own log or JSON.

    python benchmarks/issue11.py nano-train LOG     # nanoGPT train.py: median ms/iter, 3 first left out
    python benchmarks/issue11.py nano-bench LOG     # nanoGPT bench.py: its "time per iteration" in ms
    python benchmarks/issue11.py nano-mfu LOG       # nanoGPT bench.py: its MFU, against 989 TFLOP/s
    python benchmarks/issue11.py ours JSON          # python -m tinygpt.bench --json: ms, tok/s, MFU, memory
    python benchmarks/issue11.py field JSON KEY     # one value of that JSON ("n/a" if missing)
    python benchmarks/issue11.py ratio A B          # A / B to two decimals ("n/a" unless both are numbers)
    python benchmarks/issue11.py until-val TARGET LOG -- COMMAND...

``until-val`` runs COMMAND, writes its output to LOG with the seconds since the start before each line,
and ends it at the first evaluation whose val loss is <= TARGET (nanoGPT's ``step N: ... val loss X``
or TinyGPT's ``step N | val_loss X``). It prints one line: the time to that evaluation from the
command's start, or, if none reached TARGET, the best val loss and when it came.
"""

import json
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

VAL_LINE = re.compile(r"step (\d+)\D.*?val[_ ]loss ([\d.]+)")


def nano_train(log: str) -> str:
    times = [float(t) for t in re.findall(r"iter \d+: .*?time ([\d.]+)ms", log)]
    return f"{statistics.median(times[3:]):.2f}" if len(times) > 3 else "n/a"


def nano_bench(log: str) -> str:
    found = re.findall(r"time per iteration: ([\d.]+)ms", log)
    return f"{float(found[-1]):.2f}" if found else "n/a"


def nano_mfu(log: str, peak_tflops: float = 989.0) -> str:
    """bench.py's MFU is against an A100's 312 TFLOP/s: restated against ``peak_tflops`` (H100/H200 bf16)."""
    found = re.findall(r"MFU: ([\d.]+)%", log)
    return f"{float(found[-1]) * 312 / peak_tflops:.1f}%" if found else "n/a"


def ours(path: Path) -> str:
    """'ms | tok/s | MFU | peak MiB' of a tinygpt.bench JSON, or n/a when the run left none."""
    try:
        r = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "n/a | n/a | n/a | n/a"
    mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") else "n/a"
    return (
        f"{r['ms_per_step']:.2f} | {r['tokens_per_s']:,.0f} | {mfu} | {r['peak_memory_bytes'] / 2**20:,.0f}"
    )


def field(path: Path, key: str) -> str:
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))[key])
    except (OSError, ValueError, KeyError):
        return "n/a"


def ratio(a: str, b: str) -> str:
    try:
        return f"{float(a) / float(b):.2f}x"
    except (ValueError, ZeroDivisionError):
        return "n/a"


def read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


class Stopped(Exception):
    """A `timeout` around this script sent SIGTERM."""


def until_val(target: float, log_path: Path, command: list[str]) -> str:
    start = time.perf_counter()
    best: tuple[float, int, float] | None = None  # (val loss, step, seconds)

    def stop(*_: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # `timeout` signals the whole group: once is enough
        raise Stopped

    signal.signal(signal.SIGTERM, stop)
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            for line in proc.stdout:
                seconds = time.perf_counter() - start
                log.write(f"[{seconds:7.2f}s] {line}")
                match = VAL_LINE.search(line)
                if not match:
                    continue
                step, val = int(match.group(1)), float(match.group(2))
                if best is None or val < best[0]:
                    best = (val, step, seconds)
                if val <= target:
                    return f"val {val:.4f} <= {target} at step {step} after {seconds:.1f} s"
            ended = f"exit {proc.wait()}"
        except Stopped:
            ended = "timed out"
        finally:
            proc.kill()  # never left running on the GPU
            proc.wait()
    spent = f"{ended} after {time.perf_counter() - start:.1f} s"
    if best is None:
        return f"no evaluation ({spent})"
    return f"never <= {target} ({spent}): best val {best[0]:.4f} at step {best[1]} after {best[2]:.1f} s"


def main(argv: list[str]) -> str:
    kind = argv[0]
    if kind == "nano-train":
        return nano_train(read(argv[1]))
    if kind == "nano-bench":
        return nano_bench(read(argv[1]))
    if kind == "field":
        return field(Path(argv[1]), argv[2])
    if kind == "nano-mfu":
        return nano_mfu(read(argv[1]))
    if kind == "ratio":
        return ratio(argv[1], argv[2])
    if kind == "ours":
        return ours(Path(argv[1]))
    if kind == "until-val":
        return until_val(float(argv[1]), Path(argv[2]), argv[argv.index("--") + 1 :])
    raise SystemExit(__doc__)


if __name__ == "__main__":
    print(main(sys.argv[1:]))
