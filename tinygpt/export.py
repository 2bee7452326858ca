"""Export a training run as a Hugging Face transformers folder:

    python -m tinygpt.export run=DIR out=DIR2 [ckpt=best] [ema=true]

The export itself (what the folder holds, how it is written) is tinygpt/hf/export.py.
"""

import gc

import hydra
from omegaconf import DictConfig

from tinygpt.config.argv import command_args, command_line
from tinygpt.config.commands import check_command
from tinygpt.config.schema import conf_dir
from tinygpt.errors import exit_on_user_error


def cli(cfg: DictConfig) -> None:
    """The command, given its composed config: check, export, say where it is and how to load it."""
    from tinygpt.hf.export import export_run  # torch: not imported for --help

    check_command("export", cfg)
    out = export_run(cfg.run, cfg.out, cfg.ckpt, cfg.ema)
    print(f"exported {cfg.run} to {out}: load it with AutoModelForCausalLM.from_pretrained({str(out)!r})")


arguments = command_args("export", ("run", "out"))  # the command line; these keys' text as typed


@command_line("export", arguments)
@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="export")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    cli(cfg)


if __name__ == "__main__":
    main()
    gc.freeze()  # as in tinygpt.generate: skip the interpreter's last collection at exit
