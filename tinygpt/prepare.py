"""Tokenize a corpus once into a folder of token shards that training reads without loading it:

    python -m tinygpt.prepare input=books/ out=prepared/books [tokenizer=bpe] [key=value ...]

The work (sources, tokenizer, shards, resuming after a kill) is tinygpt/data/prepare.py.
"""

import gc

import hydra
from omegaconf import DictConfig, OmegaConf

from tinygpt.config.argv import command_args, command_line
from tinygpt.config.commands import check_command
from tinygpt.config.schema import conf_dir
from tinygpt.errors import exit_on_user_error


def cli(cfg: DictConfig) -> None:
    from tinygpt.data.prepare import PrepareSettings, prepare  # torch (via tinygpt.data): not for --help

    check_command("prepare", cfg)
    keys = OmegaConf.to_container(cfg, resolve=True)
    print(prepare(PrepareSettings(**{k: v for k, v in keys.items() if k != "hydra"})))


arguments = command_args("prepare", ("input", "out", "tokenizer"))  # the command line; paths as typed


@command_line("prepare", arguments)
@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="prepare")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    cli(cfg)


if __name__ == "__main__":
    main()
    gc.freeze()  # as in tinygpt.generate: skip the interpreter's last collection at exit
