"""The function-length check that ``make lint`` runs: a function of 61 lines is reported (its file, its
line, its name, its length) and fails the check; one of 60 passes, decorators not counted."""

import subprocess
import sys

from conftest import REPO

CHECK = REPO / "tools" / "check_function_length.py"


def function(name: str, lines: int, indent: str = "") -> str:
    """A function of exactly ``lines`` lines from its def to its last line, behind a decorator."""
    body = [f"{indent}    x = {i}\n" for i in range(lines - 2)]
    return f"{indent}@staticmethod\n{indent}def {name}():\n{''.join(body)}{indent}    return x\n"


def check(*paths) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECK), *map(str, paths)], capture_output=True, text=True)


def test_a_61_line_function_fails_the_check_and_a_60_line_one_passes(tmp_path):
    short, long = tmp_path / "short.py", tmp_path / "pkg" / "long.py"
    short.write_text(function("fits", 60) + "\n\nclass Step:\n" + function("fits_too", 60, "    "))
    long.parent.mkdir()
    long.write_text("import os\n\n\nclass Step:\n" + function("too_long", 61, "    "))
    assert check(short).returncode == 0
    proc = check(tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [f"{long}:6 Step.too_long 61 lines"]
