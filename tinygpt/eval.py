"""Evaluating a trained run: ``python -m tinygpt.eval run=DIR [text=FILE | data=<group> ...]``.

Scores every token of the run's validation split (or ``split=train``, or ``text=FILE``, or the data
of ``data=<group>``), not a sample of batches, and prints one JSON object: loss (mean nats per
token), perplexity and bits per byte (``tinygpt.evaluation.scoring``), with what was evaluated.
``documents=separate`` scores each document of text= on its own, as lm-evaluation-harness does
(``tinygpt.evaluation.documents``).

The scoring itself is tinygpt/evaluation/evaluate.py.
"""

import gc
import json
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from tinygpt.config.argv import command_args, command_line
from tinygpt.config.commands import check_command
from tinygpt.config.schema import conf_dir
from tinygpt.errors import UserError, exit_on_user_error

log = logging.getLogger("tinygpt")


def check_keys(cfg: DictConfig) -> None:
    """Refuse bad values by name before anything is loaded: each key's own check (its declaration in
    tinygpt/config/commands.py), then those between keys."""
    check_command("eval", cfg)
    if cfg.text is not None and cfg.get("data") is not None:
        raise UserError("give text=FILE or data=<group>, not both: each says what to evaluate")
    if cfg.documents == "separate" and cfg.text is None:
        raise UserError(
            "documents=separate scores the files of text=FILE (or a folder of .txt files) one by one; "
            "give text=..., or use documents=joined for a split"
        )
    if cfg.out is not None and Path(str(cfg.out)).exists():
        raise UserError(
            f"out={cfg.out} exists; an evaluation never replaces one: remove it or pick another name"
        )


def write_result(result: dict[str, Any], out: str | None) -> None:
    """The JSON to stdout, and to ``out`` (a new file: an existing one is never replaced)."""
    text = json.dumps(result, indent=2) + "\n"
    if out is not None:
        try:
            with open(out, "x", encoding="utf-8") as f:
                f.write(text)
        except FileExistsError as exc:
            raise UserError(
                f"out={out} exists; an evaluation never replaces one: remove it or pick another name"
            ) from exc
        except OSError as exc:
            raise UserError(f"cannot write out={out}: {exc.strerror}; pick a writable path") from exc
    sys.stdout.write(text)
    sys.stdout.flush()


def cli(cfg: DictConfig) -> dict[str, Any]:
    """The command, given its composed config: check, evaluate, print (and write) the JSON."""
    from tinygpt.evaluation.evaluate import evaluate_run  # torch: not imported for --help

    check_keys(cfg)
    result = evaluate_run(cfg)
    write_result(result, None if cfg.out is None else str(cfg.out))
    log.info(
        "loss %.4f | perplexity %.2f | %s bits per byte | %d tokens, %s bytes",
        result["loss"],
        result["perplexity"],
        "unknown" if result["bits_per_byte"] is None else f"{result['bits_per_byte']:.4f}",
        result["tokens"],
        result["bytes"],
    )
    return result


arguments = command_args("eval", ("run", "text", "out"))  # the command line; these keys' text as typed


@command_line("eval", arguments)
@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="eval")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    cli(cfg)


if __name__ == "__main__":
    main()
    gc.freeze()  # as in tinygpt.generate: skip the interpreter's last collection at exit
