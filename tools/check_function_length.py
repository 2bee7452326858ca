"""Keep functions small: report every function longer than the limit (60 lines) and exit 1 if any is.

    python tools/check_function_length.py                 # tinygpt/ benchmarks/ experiments/ tools/
    python tools/check_function_length.py FILE_OR_DIR ... [--max 60]

A function's length runs from its ``def`` line to the last line of its body: decorators are left out,
its docstring, comments and blank lines inside it count. Nested functions and methods are measured on
their own (and count within the function around them). ``make lint`` runs it beside ruff's complexity
check. Tests are not checked: a test is one scenario read top to bottom, and tests/ is exempt from the
complexity limit for the same reason.
"""

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

LIMIT = 60
ROOTS = ("tinygpt", "benchmarks", "experiments", "tools")
REPO = Path(__file__).resolve().parent.parent


def python_files(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            found = (
                p
                for p in path.rglob("*.py")
                if not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            yield from sorted(found)
        elif path.suffix == ".py":
            yield path


def long_functions(path: Path, limit: int) -> Iterator[tuple[int, str, int]]:
    """(line of its ``def``, qualified name, lines) of every function in ``path`` longer than ``limit``."""
    yield from _walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), "", limit)


def _walk(node: ast.AST, prefix: str, limit: int) -> Iterator[tuple[int, str, int]]:
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield from _walk(child, prefix, limit)
            continue
        name = f"{prefix}{child.name}"
        lines = child.end_lineno - child.lineno + 1  # lineno is the def line, after any decorator
        if not isinstance(child, ast.ClassDef) and lines > limit:
            yield child.lineno, name, lines
        yield from _walk(child, f"{name}.", limit)


def shown(path: Path) -> Path:
    """``path`` relative to the checkout when it is inside it."""
    path = path.resolve()
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="files or folders (default: %(default)s)")
    parser.add_argument("--max", type=int, default=LIMIT, help="longest function allowed, in lines")
    args = parser.parse_args(argv)
    paths = args.paths or [REPO / root for root in ROOTS]
    found = 0
    for path in python_files(paths):
        for line, name, lines in long_functions(path, args.max):
            print(f"{shown(path)}:{line} {name} {lines} lines")
            found += 1
    if found:
        print(
            f"{found} function(s) over {args.max} lines: split each into smaller named steps", file=sys.stderr
        )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
