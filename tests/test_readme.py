"""Every command in README.md and docs/*.md runs in the test suite, as written, shrunk to seconds.

What counts as a command: each line of an indented or fenced code block (``\\`` continuations joined,
``# comments`` dropped), and `inline code` in prose that starts with a command word (``python``,
``make``, ``pip``, ``torchrun``, ...); tables, which name commands and keys, are not run. Lines are
picked up by their command prefix, so a line added to the docs runs without touching this file; a
line no rule can run must be listed in EXCEPTIONS with the reason, or
test_every_code_line_is_run_or_a_listed_exception fails.

How a line runs:

- ``python -m tinygpt.<module> ...`` runs the module's ``__main__`` (runpy) inside this interpreter:
  ~0.4 s instead of ~3 s for a fresh one. Lines with shell syntax (a pipe, ``$VAR``) run in a real
  ``bash -c`` with the venv's ``python`` and ``torchrun`` first on PATH, and so does the first line
  of each kind (module, or torchrun) that has no such line: one real process start per kind.
- ``torchrun``: its first line runs in bash on CPU with gloo, ``--nproc_per_node`` capped at 2; the
  others differ from it only in rank count and overrides: checked for their own world size, they
  train in-process on one rank. ``srun CMD`` runs CMD (what srun does on one node), ``SLURM_JOB_ID``
  set to a number.
- Python blocks run as a program in a fresh interpreter. ``make`` lines: ``make -n`` shows that the
  target exists and that ``ARGS`` reach its command (running it would build a venv). ``pip`` lines
  cannot run offline: what they name is checked.
- Each line runs in its own folder standing for the checkout (``configs/`` and ``data/`` linked in).
  Placeholders are filled (``<date>/<time>``, a ``...`` path part -> ``2026-11-26/10-00-00``). What
  the line reads that earlier commands would have made is put there first: a run directory it names
  under ``out/`` or ``runs/`` (``run=``, a path argument, a file inside a run, the ``hydra.run.dir``
  of ``resume=true``) is a copy of a tiny trained run with EMA weights; a sweep directory under
  ``multirun/`` a copy of a tiny 2-job sweep; a missing ``data.path=``, ``data.val_path=``,
  ``data_path=`` or (eval's) ``text=`` a 40 KB slice of the embedded corpus (two such files in a
  folder for a path ending with ``/``); any other missing path that a documented command writes
  (``out=``, ``--out``, ...) is made by running that command first (``init_from=hf/x`` after
  ``export ... out=hf/x``).

The shrink, the only change to a line. Training overrides appended after the line's own (so they win):
a 2-layer model of 8 dimensions per head (the line's head counts and block size are kept: a longer
text than a tiny context holds fails in transformers), 4 sequences per rank and micro-step (a
batch-size schedule starting from 1), 2 steps, 2 eval batches, 8-token samples, ``device=cpu``;
tiny-shakespeare (no network here) is a local file via ``data.path``. A resume keeps the keys it sets
itself (but max_steps), so that what a resume refuses is refused here too. A sweep runs two jobs (its
first swept key keeps two values, any other one), Optuna 2 trials, joblib in this process
(``n_jobs=1``: two workers importing torch cost ~12 s; test_sweeps.py runs them). ``bench`` times 2
steps after 1 warm-up. ``compile=true`` uses torch.compile's ``eager`` backend in-process (Dynamo
still captures the model) and becomes ``compile=false`` in bash: inductor's C++ build takes 60-70 s
per line on a 2-core machine (measured; test_recipe_train.py runs it). Processes get
``OMP_NUM_THREADS=1`` (on a busy 2-core machine two threads per process spin against each other) and
``WANDB_MODE=offline``. Before it is shrunk, a training line's config is composed and checked as
written (keys, JSON config, values, every value of a sweep) and its model built on the meta device, so
its shape checks run.
"""

import contextlib
import gc
import io
import logging
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import REPO, corpus_documents, fineweb_folder, prepared_folder
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from tinygpt.bench import parse_args as bench_args
from tinygpt.config.argv import check_keys, translate_argv
from tinygpt.config.jsonconfig import splice_json_config
from tinygpt.config.overrides import override_key, parse_override
from tinygpt.config.schema import check_train_config, conf_dir
from tinygpt.data import embedded_corpus_path
from tinygpt.data.tokenizers import BPETokenizer

# docs/keys.md is generated from the config schemas (tests/test_keys.py keeps it so): its command lines
# are synopses with placeholders, not commands.
GENERATED = {"docs/keys.md"}
PAGES = [str(p.relative_to(REPO)) for p in sorted((REPO / "docs").glob("*.md"))]
DOCS = ["README.md", *(page for page in PAGES if page not in GENERATED)]

# Lines no test here can run, and why. A pattern is searched for in the line.
EXCEPTIONS = {
    r"^pip install ": "installs from the package index (no network in tests); "
    "test_pip_lines_install_the_checkout_with_its_own_extras checks what it names",
    r"--nnodes=(?!1\b)": "needs several machines (a multi-node rendezvous)",
    r"hydra/launcher=submitit_slurm": "needs a SLURM cluster; submitit_local, the same launcher code, "
    "runs in test_sweeps.py",
    r"^head=\$\(scontrol ": "SLURM's scontrol, in the multi-node sbatch script",
    r"^python tools/make_tiny_corpus\.py$": "rewrites data/tiny_corpus.txt in the checkout; "
    "test_tiny_corpus.py runs the generator and compares",
    r"^lm_eval ": "lm-evaluation-harness is not a dependency of the project (not installed)",
    r"^vllm ": "vLLM needs a GPU",
    r"^tail -c \d+ data/tiny_corpus\.txt > heldout\.txt$": "a shell tool making a file; the eval lines "
    "that read heldout.txt run with one the test makes",
    r"^TINYGPT_TRUSTED_MODULES=my_norms ": "needs the user's own module; test_trusted_modules.py runs "
    "the same with one it writes",
}
# Sections whose code blocks are not commands.
NOT_COMMANDS = {"Layout": "a file tree"}
OUTPUT_LANGUAGES = ("json", "text")  # fenced blocks showing what a command printed

COMMAND_WORD = re.compile(r"^(python3?|make|pip|torchrun|echo|srun|sbatch|lm_eval|vllm)\s+\S")
BARE_MODULE = re.compile(r"^python -m tinygpt\.\w+$")
SHELL_SYNTAX = re.compile(r"[|$;&<>`]")
SLURM_ENV = {"SLURM_JOB_ID": "4242"}
ENV = {"OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", **SLURM_ENV}
WHEN = "2026-11-26/10-00-00"  # a run's or sweep's <date>/<time>
OUTPUT_KEYS = ("hydra.run.dir", "out_dir", "out")  # keys naming what a command writes
TRAINING_OVERRIDES = {  # modules that take training overrides, and how to find them among their args
    "tinygpt.train": lambda args: args,
    "tinygpt.bench": lambda args: bench_args(args)[1],
}
MODULE_SHRINK = {
    "tinygpt.bench": ["--steps", "2", "--warmup", "1"],
    "tinygpt.prepare": ["vocab_size=400", "val_tokens=2000", "shard_tokens=5000"],
}


@dataclass(frozen=True)
class Snippet:
    where: str  # "README.md:123"
    heading: str  # the section it is in
    text: str  # one command line, or a whole Python program
    python: bool = False

    def __str__(self) -> str:
        return f"{self.where} {self.text}"[:120]


# ---- finding the commands ------------------------------------------------------------------------


def drop_comment(line: str) -> str:
    """``line`` without a shell ``# comment`` (a ``#`` after a space, outside quotes)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def block_snippets(where: tuple[str, int], heading: str, lines: list[str], lang: str) -> list[Snippet]:
    """A code block's commands: one per logical line, or the whole block for Python."""
    doc, first = where
    code = [line for line in lines if line.strip()]
    if heading in NOT_COMMANDS or lang in OUTPUT_LANGUAGES or not code:
        return []
    if lang == "python" or code[0].startswith(("import ", "from ")):
        return [Snippet(f"{doc}:{first}", heading, "\n".join(lines), python=True)]
    found, joined, start = [], "", first
    for number, line in enumerate(lines, first):
        if not joined:
            start = number
        if line.endswith("\\"):
            joined += line[:-1].strip() + " "
            continue
        text = drop_comment(joined + line.strip())
        joined = ""
        if text:  # comment lines (#SBATCH, #!) are for sbatch and bash, not commands
            found.append(Snippet(f"{doc}:{start}", heading, text))
    return found


def inline_snippets(doc: str, number: int, heading: str, paragraph: str) -> list[Snippet]:
    spans = [s.strip() for s in re.findall(r"`([^`]+)`", paragraph)]
    # a bare `python -m tinygpt.eval` in a sentence names a command; its runnable forms are in blocks
    commands = [s for s in spans if COMMAND_WORD.match(s) and not BARE_MODULE.match(s)]
    return [Snippet(f"{doc}:{number}", heading, s) for s in commands]


def doc_snippets(doc: str) -> list[Snippet]:
    """Every code block line and inline command of a Markdown file; tables (which name commands and
    keys) are not read."""
    lines = (REPO / doc).read_text(encoding="utf-8").splitlines()
    found, heading, paragraph, i = [], "", [], 0
    while i < len(lines):
        line = lines[i]
        fenced = line.startswith("```")
        indented = line.startswith("    ") and not paragraph and (i == 0 or not lines[i - 1].strip())
        if paragraph and (fenced or indented or not line.strip() or line.startswith(("#", "|"))):
            found += inline_snippets(doc, i - len(paragraph) + 1, heading, " ".join(paragraph))
            paragraph = []
        if fenced:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            found += block_snippets((doc, i + 2), heading, lines[i + 1 : end], line[3:].strip())
            i = end + 1
        elif indented:
            end = i
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                end += 1
            found += block_snippets((doc, i + 1), heading, [x[4:] for x in lines[i:end]], "")
            i = end
        else:
            if line.startswith("#"):
                heading = line.lstrip("#").strip()
            elif line.strip() and not line.startswith("|"):
                paragraph.append(line.strip())
            i += 1
    if paragraph:
        found += inline_snippets(doc, len(lines) - len(paragraph) + 1, heading, " ".join(paragraph))
    return found


def exception_for(snippet: Snippet) -> str | None:
    return next((why for pattern, why in EXCEPTIONS.items() if re.search(pattern, snippet.text)), None)


def unique(snippets: list[Snippet]) -> list[Snippet]:
    """The first snippet of each text: a command written twice runs once."""
    first: dict[str, Snippet] = {}
    for snippet in snippets:
        first.setdefault(snippet.text, snippet)
    return list(first.values())


SNIPPETS = unique([s for doc in DOCS for s in doc_snippets(doc)])
PYTHON = [s for s in SNIPPETS if s.python]
MAKE = [s for s in SNIPPETS if s.text.startswith("make ")]
EXCEPTED = [s for s in SNIPPETS if not s.python and exception_for(s)]


# ---- reading a command line ----------------------------------------------------------------------


@dataclass
class Command:
    launcher: list[str]  # torchrun and its options; empty for python -m
    module: str  # tinygpt.train, ...
    args: list[str]


def filled(text: str) -> str:
    """The line with its placeholders filled: ``<date>``, ``<time>``, a ``...`` path part."""
    text = text.replace("<date>/<time>", WHEN).replace("<date>", WHEN[:10]).replace("<time>", WHEN[11:])
    return re.sub(r"(?<=\w/)\.\.\.(?=[\s/]|$)", WHEN, text)


def expanded(text: str) -> str:
    """``$SLURM_...`` variables as SLURM would set them."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: SLURM_ENV.get(m[1], m[0]), text)


def parse_command(text: str) -> Command | None:
    """The command a line runs: its last pipeline stage, ``srun`` stripped."""
    try:
        words = shlex.split(expanded(text.rsplit("|", 1)[-1]))
    except ValueError:  # not shell words (unbalanced quotes)
        return None
    if words[:1] == ["srun"]:
        words = words[1:]
    if len(words) > 2 and words[:2] == ["python", "-m"] and words[2].startswith("tinygpt."):
        return Command([], words[2], words[3:])
    if words[:1] == ["torchrun"] and "-m" in words[:-1]:
        at = words.index("-m")
        return Command(words[:at], words[at + 1], words[at + 2 :])
    return None


def kind_of(snippet: Snippet) -> str:
    command = parse_command(filled(snippet.text))
    return "torchrun" if command.launcher else command.module


def run_in_subprocesses(commands: list[Snippet]) -> set[Snippet]:
    """The lines that run in bash: those with shell syntax, and the first of each kind that has none."""
    chosen = [s for s in commands if SHELL_SYNTAX.search(filled(s.text))]
    for snippet in commands:
        if kind_of(snippet) not in {kind_of(s) for s in chosen}:
            chosen.append(snippet)
    return set(chosen)


COMMANDS = [s for s in SNIPPETS if not s.python and not exception_for(s) and parse_command(filled(s.text))]
IN_BASH = run_in_subprocesses(COMMANDS)


def world_size(command: Command) -> int:
    nproc = [re.fullmatch(r"--nproc[_-]per[_-]node=(\d+)", w) for w in command.launcher]
    return max([int(m[1]) for m in nproc if m] or [1])


# ---- the shrink ----------------------------------------------------------------------------------


def as_written(overrides: list[str], world: int) -> DictConfig:
    """A training line's config as written, composed and checked as the command checks it before it
    runs, and its model built on the meta device (no memory) for the shape checks; a sweep's every
    value is checked so (the others at their first). Returns the config of the first job."""
    args = splice_json_config(translate_argv(overrides))
    plain = [a for a in args if "=" in a and not a.startswith("-")]
    return [checked(variant, world) for variant in sweep_variants(plain)][0]


def checked(overrides: list[str], world: int) -> DictConfig:
    check_keys(overrides)
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=conf_dir()):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    check_train_config(cfg, world)
    with torch.device("meta"):
        instantiate(cfg.model)(vocab_size=256, bos_id=0)  # a document token, as BPE vocabularies have
    return cfg


def swept(override: str) -> tuple[str, list[str]] | None:
    """``key=a,b`` -> ``("key", ["a", "b"])``; None for an override that is not a list sweep."""
    parsed = parse_override(override)
    if parsed is None or not parsed.is_discrete_sweep():
        return None
    return parsed.get_key_element(), list(parsed.sweep_string_iterator())


def sweep_variants(overrides: list[str]) -> list[list[str]]:
    """The overrides with every swept key at each of its values in turn, the others at their first;
    the first variant is the sweep's first job."""
    sweeps = {i: found for i, o in enumerate(overrides) if (found := swept(o))}
    first = [f"{sweeps[i][0]}={sweeps[i][1][0]}" if i in sweeps else o for i, o in enumerate(overrides)]
    variants = [first]
    for i, (key, values) in sweeps.items():
        variants += [[*first[:i], f"{key}={value}", *first[i + 1 :]] for value in values[1:]]
    return variants


def two_jobs(args: list[str]) -> list[str]:
    """A sweep's arguments cut to two jobs: its first swept key keeps two values, the others one."""
    out, kept = [], 2
    for arg in args:
        found = swept(arg) if "=" in arg else None
        out.append(f"{found[0]}={','.join(found[1][:kept])}" if found else arg)
        kept = 1 if found else kept
    return out


def training_shrink(cfg: DictConfig, world: int, stand_in: Path, in_process: bool) -> list[str]:
    """Overrides that make the run tiny; appended after the line's own, so they win."""
    shrink = [
        "model.n_layer=2",
        f"model.n_embd={8 * cfg.model.n_head}",
        f"batch_size={4 * world * cfg.grad_accum_steps}",
        "max_steps=2",
        "eval_iters=2",
        "log_interval=1",
        "sample_tokens=8",
        "device=cpu",
    ]
    if cfg.data._target_.endswith("load_downloaded") and cfg.data.path is None:
        shrink.append(f"data.path={stand_in}")  # no network: a local file stands in for the download
    if "n_trials" in cfg.hydra.sweeper:
        shrink.append("hydra.sweeper.n_trials=2")
    if "n_jobs" in cfg.hydra.launcher:  # joblib: two workers, each importing torch, cost ~12-15 s
        shrink.append("hydra.launcher.n_jobs=1")  # 1 runs the jobs in this process
    if cfg.compile and not in_process:
        shrink.append("compile=false")
    if cfg.batch_size_start is not None:  # the schedule stays on: from 1 sequence per rank and micro-step
        shrink.append(f"batch_size_start={world * cfg.grad_accum_steps}")
    return shrink


def shrunk(command: Command, stand_in: Path, in_bash: bool) -> tuple[list[str], list[str]]:
    """The command's arguments (a sweep cut to two jobs), and the shrink to append. Under
    torchrun (in bash) it runs on at most 2 ranks, in-process on one.

    A resume continues the tiny run as it was trained: the shrink leaves out what the line sets
    itself (but max_steps), so that a change the resume would refuse is refused here too."""
    args = two_jobs(command.args) if "-m" in command.args else command.args
    extra = MODULE_SHRINK.get(command.module, [])
    if command.module in TRAINING_OVERRIDES:
        overrides = TRAINING_OVERRIDES[command.module](command.args)
        cfg = as_written(overrides, world_size(command))
        world = min(world_size(command), 2) if in_bash else 1
        shrink = training_shrink(cfg, world, stand_in, in_process=not in_bash)
        if cfg.resume is True:
            own = {override_key(o) for o in translate_argv(overrides)} - {"max_steps"}
            shrink = [o for o in shrink if override_key(o) not in own]
        extra = [*shrink, *extra]
    return args, extra


# ---- the folder a line runs in -------------------------------------------------------------------


def sample_text(size: int = 40_000, skip: int = 0) -> str:
    return embedded_corpus_path().read_text(encoding="utf-8")[skip : skip + size]


def provide_runs(checkout: Path, text: str, made: dict[str, Path]) -> None:
    """Copy the tiny run (or sweep) to each run path the line reads and the checkout lacks, and to
    runs/<date>/<time>/ for a resume=true without hydra.run.dir (it continues the latest run there)."""
    if re.search(r"tinygpt\.train .*resume=true", text) and "hydra.run.dir=" not in text:
        shutil.copytree(made["run"], checkout / "runs" / WHEN)
    for match in re.finditer(r"""(?:^|(?<=[\s"'=]))((?:out|runs|multirun)/[^\s"';|]+)""", text):
        is_output = any(text[: match.start()].endswith(f"{key}=") for key in OUTPUT_KEYS)
        path = match[1].rstrip("/")
        if (is_output and "resume=true" not in text) or (checkout / path).exists():
            continue
        parts = path.split("/")
        if parts[0] == "multirun":
            shutil.copytree(made["sweep"], checkout.joinpath(*parts[:3]))
        else:
            target = checkout / path
            shutil.copytree(made["run"], target.parent if target.suffix else target)


def provide_data(checkout: Path, text: str) -> None:
    """Make each data file or folder the line names and the checkout lacks."""
    if "data=shards" in text:
        provide_shards(checkout, text)
        return
    for value in re.findall(r"(?:data\.path|data\.val_path|data_path|(?<![\w.])(?:text|input))=(\S+)", text):
        path = checkout / value.strip("'\"")
        if path.exists():
            continue
        if value.endswith("/"):
            path.mkdir(parents=True)
            (path / "part1.txt").write_text(sample_text(20_000), encoding="utf-8")
            (path / "part2.txt").write_text(sample_text(20_000, skip=20_000), encoding="utf-8")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(sample_text(), encoding="utf-8")


def provide_shards(checkout: Path, text: str) -> None:
    """data=shards: a prepared folder for ``data.path=`` (unless a documented command writes it), and
    shards laid out as llm.c writes FineWeb for ``data.train=``, with the tokenizer.json it names."""
    docs = corpus_documents()
    tokenizer = BPETokenizer.train(docs, vocab_size=300)
    folder = re.search(r"data\.path=(\S+)", text)
    if folder and not any(folder[1] in outputs(s) for s in COMMANDS):
        prepared_folder(checkout / folder[1], tokenizer, docs)
    train = re.search(r"data\.train='?([^'\s]+)/", text)
    if train:
        fineweb_folder(checkout / train[1], tokenizer, docs)
        tokenizer_json = checkout / re.search(r"data\.tokenizer_json=(\S+)", text)[1]
        tokenizer_json.parent.mkdir(parents=True, exist_ok=True)
        tokenizer.save(tokenizer_json)


def outputs(snippet: Snippet) -> list[str]:
    """The paths a documented command writes, as it names them."""
    args = parse_command(filled(snippet.text)).args
    named = [a.split("=", 1)[1] for a in args if a.split("=", 1)[0] in OUTPUT_KEYS]
    return named + [path for flag, path in zip(args, args[1:], strict=False) if flag in ("--out", "--json")]


def read_paths(snippet: Snippet) -> list[str]:
    """What may be a path the snippet reads: a string literal of a Python block, a value of a command
    (not what it writes), with a ``/`` in it."""
    if snippet.python:
        return re.findall(r"""["']([\w.-]+/[\w./-]*)["']""", snippet.text)
    args = [a.partition("=") for a in parse_command(filled(snippet.text)).args]
    return [value for key, _, value in args if "/" in value and key not in OUTPUT_KEYS]


def provide_outputs(checkout: Path, snippet: Snippet, made: dict[str, Path]) -> None:
    """Run first the documented command that writes a path this snippet reads (``init_from=hf/x``
    after ``out=hf/x``) and the checkout lacks."""
    for value in read_paths(snippet):
        if (checkout / value).exists():
            continue
        producer = next((s for s in COMMANDS if value in outputs(s)), None)
        if producer is not None:
            outcome, _ = run_line(producer, checkout, made, in_bash=False)
            assert outcome.code in (0, None), f"{producer}, run to make {value}:\n{outcome.stderr[-3000:]}"


def new_checkout(tmp_path: Path) -> Path:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("configs", "data"):
        (checkout / name).symlink_to(REPO / name)
    return checkout


def files_in(checkout: Path) -> dict[Path, float]:
    """Files the line may have written: everything but the linked parts of the checkout."""
    return {
        p: p.stat().st_mtime
        for top in checkout.iterdir()
        if not top.is_symlink()
        for p in ([top] if top.is_file() else top.rglob("*"))
        if p.is_file()
    }


# ---- running a line ------------------------------------------------------------------------------


@dataclass
class Outcome:
    code: int | str | None
    stdout: str
    stderr: str


REAL_COMPILE = torch.compile


def eager_compile(model: torch.nn.Module, *args, **kwargs) -> torch.nn.Module:
    """torch.compile with Dynamo's capture but no code generation (inductor's mode is dropped)."""
    return REAL_COMPILE(model, backend="eager")


def run_in_process(module: str, args: list[str], cwd: Path) -> Outcome:
    """``python -m module args`` in this interpreter, through the module's ``__main__`` code."""
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level, threads = root.handlers[:], root.level, torch.get_num_threads()
    code = 0
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mp.chdir(cwd)
        mp.setattr(sys, "argv", [module, *args])
        mp.setattr(torch, "compile", eager_compile)
        for key, value in {**ENV, "PYTHONPATH": str(REPO)}.items():
            mp.setenv(key, value)  # for processes a command starts (a launcher's workers)
        torch.set_num_threads(1)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "'tinygpt", RuntimeWarning)  # runpy: already imported
                runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            code = exc.code
        finally:
            gc.unfreeze()  # the commands freeze what they allocated, for a faster exit
            torch.set_num_threads(threads)
            torch._dynamo.reset()
            for handler in set(root.handlers) - set(handlers):
                handler.close()
            root.handlers[:] = handlers
            root.setLevel(level)
            GlobalHydra.instance().clear()
    return Outcome(code, out.getvalue(), err.getvalue())


def process_env() -> dict[str, str]:
    """This environment, the checkout importable and the venv's python and torchrun first on PATH."""
    env = {**os.environ, **ENV, "PYTHONPATH": str(REPO)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def run_in_shell(command: str, cwd: Path) -> Outcome:
    proc = subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=process_env(), capture_output=True, text=True, timeout=600
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


def shell_line(text: str, extra: list[str]) -> str:
    text = re.sub(r"^srun\s+", "", text)  # srun on one node runs the command once
    text = re.sub(r"(--nproc[_-]per[_-]node=)(\d+)", lambda m: m[1] + str(min(int(m[2]), 2)), text)
    return " ".join([text, *map(shlex.quote, extra)])


def run_line(snippet: Snippet, checkout: Path, made: dict[str, Path], in_bash: bool) -> tuple[Outcome, list]:
    """Run a documented command in the checkout once what it reads is there, shrunk; returns what it
    printed and the files it wrote."""
    text = filled(snippet.text)
    command = parse_command(text)
    provide_runs(checkout, expanded(text), made)
    provide_outputs(checkout, snippet, made)  # first: data.path=prepared/x is what prepare writes
    provide_data(checkout, expanded(text))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(checkout)  # config_json= paths are relative to the checkout
        args, extra = shrunk(command, made["text"], in_bash)
    before, start = files_in(checkout), time.time()
    if in_bash:
        for old, new in zip(command.args, args, strict=True):
            text = text.replace(old, new)  # a sweep cut to two jobs
        outcome = run_in_shell(shell_line(text, extra), checkout)
    else:
        outcome = run_in_process(command.module, [*args, *extra], checkout)
    written = [p for p, mtime in files_in(checkout).items() if before.get(p) != mtime or mtime >= start]
    return outcome, written


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """What a user has after the README's first commands, tiny: a run with EMA weights, a 2-job
    sweep, and a text file standing in for tiny-shakespeare."""
    home = tmp_path_factory.mktemp("made")
    (home / "shakespeare.txt").write_text(sample_text(), encoding="utf-8")
    tiny = training_shrink(as_written([], 1), 1, home, in_process=True)
    runs = {
        "run": ["ema_decay=0.999", *tiny, "max_steps=1", f"hydra.run.dir={home / 'run'}"],
        "sweep": ["-m", "optim=adamw,lion", *tiny, "max_steps=1", f"hydra.sweep.dir={home / 'sweep'}"],
    }
    for args in runs.values():
        outcome = run_in_process("tinygpt.train", args, home)
        assert outcome.code in (0, None), outcome.stderr[-3000:]
    return {"run": home / "run", "sweep": home / "sweep", "text": home / "shakespeare.txt"}


# ---- the tests -----------------------------------------------------------------------------------


def test_every_code_line_is_run_or_a_listed_exception():
    runnable = {*PYTHON, *MAKE, *EXCEPTED, *COMMANDS}
    orphans = "\n".join(str(s) for s in SNIPPETS if s not in runnable)
    assert not orphans, f"no test runs these lines: run them, or list them in EXCEPTIONS\n{orphans}"
    assert len(COMMANDS) >= 40 and PYTHON and MAKE


@pytest.mark.parametrize("snippet", COMMANDS, ids=str)
def test_a_documented_command_runs(snippet, tmp_path, made):
    command = parse_command(filled(snippet.text))
    outcome, written = run_line(snippet, new_checkout(tmp_path), made, snippet in IN_BASH)
    assert outcome.code in (0, None), f"{snippet.where} `{snippet.text}` failed:\n{outcome.stderr[-4000:]}"
    assert "Traceback" not in outcome.stderr, outcome.stderr[-4000:]
    assert not [p for p in written if p.name == "error.txt"], "a sweep job failed"
    if command.module == "tinygpt.train" and "--cfg" not in command.args:
        assert any(p.name == "ckpt.pt" for p in written), "the run saved no checkpoint"
    assert outcome.stdout or written, "the command printed nothing and wrote nothing"


@pytest.mark.parametrize("snippet", PYTHON, ids=str)
def test_a_documented_python_block_runs(snippet, tmp_path, made):
    checkout = new_checkout(tmp_path)
    provide_runs(checkout, snippet.text, made)
    provide_outputs(checkout, snippet, made)
    program = [sys.executable, "-c", snippet.text]
    proc = subprocess.run(
        program, cwd=checkout, env=process_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"{snippet.where}:\n{proc.stderr[-4000:]}"
    assert proc.stdout.strip() and "Warning" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("snippet", MAKE, ids=str)
def test_a_documented_make_line_reaches_its_command_with_its_args(snippet):
    words = shlex.split(snippet.text)
    # run from `make test`, make's own variables would make this a sub-make that prints "make[1]: ..."
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    make = ["make", "-n", "--no-print-directory", *words[1:]]
    proc = subprocess.run(make, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{snippet.where} `{snippet.text}`: {proc.stderr}"
    recipe = shlex.split(proc.stdout.strip().splitlines()[-1])
    args = shlex.split(next((w[len("ARGS=") :] for w in words if w.startswith("ARGS=")), ""))
    assert recipe[0].endswith("python") and recipe[1] == "-m"
    assert recipe[len(recipe) - len(args) :] == args, f"ARGS do not reach {recipe}"


def test_pip_lines_install_the_checkout_with_its_own_extras():
    """pip cannot run offline, but what a pip line names can be checked: the checkout (``-e .``) with
    extras pyproject.toml defines, nothing else."""
    pyproject = (REPO / "pyproject.toml").read_text()
    section = pyproject.split("[project.optional-dependencies]")[1].split("\n[")[0]
    extras = set(re.findall(r"^(\w+) = ", section, re.MULTILINE))
    spans = [s for doc in DOCS for s in re.findall(r"`(pip install [^`]*)`", (REPO / doc).read_text())]
    assert spans
    for span in spans:
        for word in shlex.split(span)[2:]:
            named = re.fullmatch(r"\.\[([\w,]+)\]", word)
            assert word == "-e" or (named and set(named[1].split(",")) <= extras), (
                f"`{span}` asks pip for {word!r}: not the checkout with one of its extras {sorted(extras)}"
            )
