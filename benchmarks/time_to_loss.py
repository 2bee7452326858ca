"""Wall time from a training command's start to its first evaluation at or below a target val loss.

    python benchmarks/time_to_loss.py TARGET LOG -- COMMAND...
    python benchmarks/time_to_loss.py 1.47 ours.log -- python -m tinygpt.train experiment=shakespeare_speedrun
    cd nanoGPT && python ../benchmarks/time_to_loss.py 1.47 nano.log -- python train.py CONFIG

Runs COMMAND, writes its output to LOG with the seconds since the start before each line, and ends it at
the first evaluation whose val loss is <= TARGET (nanoGPT's ``step N: ... val loss X`` or TinyGPT's
``step N | val_loss X``), so both programs are timed alike, start-up and compilation included. Prints
one line: ``val X <= TARGET at step N after S s``, or, if no evaluation reached TARGET (the command
ended, or a ``timeout`` around this script stopped it), the best val loss and when it came. A target of
0 runs the command to its end and reports its best evaluation. The command never outlives this script.
"""

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

VAL_LINE = re.compile(r"step (\d+)\D.*?val[_ ]loss ([\d.]+)")


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
    if "--" not in argv or argv.index("--") != 2 or len(argv) < 4:
        raise SystemExit(__doc__)
    return until_val(float(argv[0]), Path(argv[1]), argv[3:])


if __name__ == "__main__":
    print(main(sys.argv[1:]))
