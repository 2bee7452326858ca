"""Sampling from a trained run: ``python -m tinygpt.generate run=DIR prompt="..."``.

The command line around ``tinygpt.inference`` (loading the run: run.py; sampling: engine.py). Generated
text goes to stdout, and nothing else does; log lines go to stderr; no files are written.
"""

import gc
import logging
import sys
from collections.abc import Iterator
from typing import BinaryIO, TextIO

import hydra
from omegaconf import DictConfig

from tinygpt.config.argv import command_args, command_line
from tinygpt.config.commands import check_command
from tinygpt.config.schema import conf_dir
from tinygpt.errors import UserError, exit_on_user_error

log = logging.getLogger("tinygpt")


def write_samples(stream: Iterator[list[str]], out: TextIO, live: bool, hold: int = 0) -> None:
    """Print the final samples, each ended by a newline and separated by a ``---`` line.

    ``live`` prints the first sample as it grows, keeping back its last ``hold`` characters (a stop
    string may be starting there) and a partial character; the rest of it comes at the end.
    """
    texts: list[str] = []
    printed = 0
    for texts in stream:
        if live:
            settled = texts[0][: len(texts[0]) - hold].rstrip("\ufffd")
            if len(settled) > printed:
                out.write(settled[printed:])
                out.flush()
                printed = len(settled)
    out.write(texts[0][printed:] + "\n")
    for text in texts[1:]:
        out.write("---\n" + text + "\n")
    out.flush()


def stdin_prompt(stdin: BinaryIO) -> str:
    """The prompt piped in, decoded strictly as UTF-8, less the newline ``echo`` ends its line with."""
    data = stdin.read()
    try:
        return data.decode("utf-8").removesuffix("\n")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"the prompt on stdin is not valid UTF-8 (byte offset {exc.start}); convert it first, "
            "e.g. iconv -f latin1 -t utf-8 FILE | python -m tinygpt.generate run=... prompt=-"
        ) from exc


def cli(cfg: DictConfig) -> None:
    """The command, given its composed config: check, load the run, sample, print."""
    from tinygpt.inference.engine import describe_context, stream_text  # torch: not imported for --help
    from tinygpt.inference.run import load

    check_command("generate", cfg)
    prompt = stdin_prompt(sys.stdin.buffer) if cfg.prompt == "-" else cfg.prompt
    stop = cfg.stop
    model, tokenizer = load(cfg.run, cfg.ckpt, cfg.ema, cfg.device)
    log.info(describe_context(model))
    texts = stream_text(
        model,
        tokenizer,
        prompt,
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=cfg.top_p,
        repetition_penalty=cfg.repetition_penalty,
        num_samples=cfg.num_samples,
        seed=cfg.seed,
        stop=stop,
        kv_cache=cfg.kv_cache,
        static_cache=None if cfg.static_cache == "auto" else cfg.static_cache,  # None: on CUDA only
        compile_step=cfg.compile,
    )
    live = sys.stdout.isatty() and cfg.num_samples == 1
    write_samples(texts, sys.stdout, live=live, hold=max(len(stop or "") - 1, 0))


arguments = command_args("generate", ("run", "prompt", "stop"))  # the command line; these keys' text as typed


@command_line("generate", arguments)
@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="generate")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    cli(cfg)


if __name__ == "__main__":
    main()
    # Exit without the interpreter's last garbage collection over all that torch and Hydra allocated
    # (~0.3 s of a ~1.4 s command): the OS frees those objects instead, and none needs finalizing.
    gc.freeze()
