"""Module boundaries: no import cycle inside tinygpt, the model knows nothing of sampling, and loading a
run to sample from it does not pull in the training loop."""

import ast
import os
import subprocess
import sys
from graphlib import TopologicalSorter
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "tinygpt"


def module_name(path: Path) -> str:
    """tinygpt/model/gpt.py -> tinygpt.model.gpt; tinygpt/model/__init__.py -> tinygpt.model."""
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.AST, known: set[str]) -> set[str]:
    """The tinygpt modules a file imports anywhere: at the top, in functions, under TYPE_CHECKING."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # submodules by name
    return found & known


def import_graph() -> dict[str, set[str]]:
    """module -> the tinygpt modules it imports. Importing tinygpt.a.b also runs tinygpt/a/__init__.py,
    unless the importer is inside tinygpt.a (then that package is already being imported)."""
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        targets = imported_modules(ast.parse(path.read_text(encoding="utf-8")), set(files))
        for target in list(targets):
            package = target.rpartition(".")[0]
            while package != "tinygpt" and not (name == package or name.startswith(package + ".")):
                targets.add(package)
                package = package.rpartition(".")[0]
        graph[name] = targets - {name}
    return graph


def test_tinygpt_modules_import_each_other_without_a_cycle():
    graph = import_graph()
    assert {"tinygpt.train", "tinygpt.inference.engine", "tinygpt.model.gpt"} <= set(graph)  # found them
    assert "tinygpt.training.loop" in graph["tinygpt.train"]  # and their imports
    order = TopologicalSorter(graph)
    order.prepare()  # raises graphlib.CycleError naming the modules of a cycle


# The package's top level: the commands a user runs (python -m tinygpt.<command>), and the shared basics.
COMMANDS = {"train", "generate", "eval", "export", "report", "bench", "prepare"}
BASICS = {"__init__", "errors"}


def test_the_top_level_holds_only_commands_and_basics_and_every_other_module_a_folder():
    top = {path.stem for path in PACKAGE.glob("*.py")}
    assert top == COMMANDS | BASICS
    folders = {path.parent for path in PACKAGE.rglob("*.py")} - {PACKAGE}
    assert all(folder.parent == PACKAGE for folder in folders), folders  # one level of folders
    assert all((folder / "__init__.py").is_file() for folder in folders)


def test_no_command_imports_another_and_no_part_imports_a_command():
    commands = {f"tinygpt.{name}" for name in COMMANDS}
    for module, imports in import_graph().items():
        assert not imports & commands, f"{module} imports the command(s) {sorted(imports & commands)}"


def test_the_model_and_load_import_only_what_they_need():
    check = (
        "import sys, tinygpt.model\n"
        "print(sorted({'tinygpt.inference.sampling', 'tinygpt.inference.engine'} & set(sys.modules)))\n"
        "import tinygpt; tinygpt.load\n"
        "print('tinygpt.inference.run' in sys.modules, 'tinygpt.training.loop' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, cwd=REPO, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[]", "True False"]  # no sampler in the model; no trainer in load


def test_the_commands_leave_rich_unimported_off_a_terminal():
    """rich draws the progress bars, which only a terminal gets: a run into a pipe or a file, and
    sampling, start without importing it."""
    check = "import sys, tinygpt.train, tinygpt.generate\nprint('rich' in sys.modules)\n"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, cwd=REPO, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["False"]


def test_checking_a_runs_shapes_on_the_meta_device_leaves_torch_dynamo_unimported():
    """generate, eval and export build the run's model on the meta device first: initializing it there
    went through torch's Python meta kernels, which import torch._dynamo (about 1 s of start-up)."""
    check = (
        "import sys\n"
        "from functools import partial\n"
        "from hydra.utils import instantiate\n"
        "from conftest import compose_train\n"
        "from tinygpt.data.tokenizers import CharTokenizer\n"
        "from tinygpt.model.build import weight_shapes\n"
        "shapes = weight_shapes(instantiate(compose_train().model), CharTokenizer.train(['abcdef']))\n"
        "print(shapes['transformer.wte.weight'], 'torch._dynamo' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    proc = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, cwd=REPO, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["(6,", "32)", "False"]
