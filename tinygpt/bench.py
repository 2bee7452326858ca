"""Training speed on the training code path: ``python -m tinygpt.bench [key=value ...]``.

    python -m tinygpt.bench                                   # the default model on this machine
    python -m tinygpt.bench steps=50 model=llama precision=bf16 device=cuda json=out.json

Its config is the training config plus bench's own keys (tinygpt/config/commands.py: BenchSchema), so
any training override works, e.g. model=llama. The measurement itself is tinygpt/training/speed.py.
"""

import json
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from tinygpt.config.argv import BENCH_FLAGS, check_keys, command_line, flags_translated, translate_argv
from tinygpt.config.commands import check_command, own_keys
from tinygpt.config.overrides import override_key
from tinygpt.config.schema import conf_dir
from tinygpt.errors import UserError, exit_on_user_error


def bench_args(argv: list[str]) -> list[str]:
    """The command line as Hydra reads it: bench's former flags (``--steps 50``) as keys, flat training
    keys as their config keys; a key neither config has is refused with the nearest ones."""
    args = translate_argv(flags_translated(argv, "bench", BENCH_FLAGS))
    check_keys(args, "bench")
    return args


def parse_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """Bench's own overrides, and the training overrides, among ``argv`` (translated as above)."""
    args = translate_argv(flags_translated(argv, "bench", BENCH_FLAGS))
    own = own_keys("bench")
    mine = [a for a in args if override_key(a) in own]
    return mine, [a for a in args if a not in mine]


def cli(cfg: DictConfig) -> dict[str, Any]:
    """The command, given its composed config: time the steps, print the table row, write ``json``."""
    from tinygpt.training.flops import peak_flops  # torch: not imported for --help
    from tinygpt.training.speed import HEADER, measure, report

    check_command("bench", cfg)
    if cfg.json:
        check_json_folder(Path(cfg.json).expanduser())
    raw = measure(cfg, cfg.steps, cfg.warmup, cfg.vocab_size, cfg.eager_update)
    peak, source = (
        (cfg.peak_tflops * 1e12, "peak_tflops")
        if cfg.peak_tflops
        else peak_flops(raw["device"], str(raw["cfg"].precision))
    )
    result = report(raw, peak, source)
    mfu = f"{100 * result['mfu']:.1f}%" if result["mfu"] is not None else "n/a"
    print(HEADER)
    print("|---|---|---:|---|---|---:|---:|---:|---:|---:|")
    print(
        f"| {result['device']} | {result['model']} | {result['batch_size']} | {result['precision']} | "
        f"{result['compile']} | {result['ms_per_step']:.2f} | {result['tokens_per_s']:,.0f} | {mfu} | "
        f"{result['peak_memory_bytes'] / 2**20:,.0f} MiB | {result['warmup_s']:.1f} |"
    )
    print(f"peak: {source}", file=sys.stderr)
    if cfg.json:
        write_json(Path(cfg.json).expanduser(), result)
    return result


def check_json_folder(path: Path) -> None:
    """Refuse ``json=`` whose folder is missing (or is a file, or a directory is named) before the
    minutes of timing, not after them."""
    if path.is_dir():
        raise UserError(f"json={path} is a folder; name a file in it, e.g. json={path / 'bench.json'}")
    if path.parent.exists() and not path.parent.is_dir():
        raise UserError(
            f"json={path} is under {path.parent}, which is a file, not a folder; name another file"
        )
    if not path.parent.is_dir():
        raise UserError(
            f"json={path}: its folder {path.parent} does not exist; create it first "
            f"(mkdir -p {path.parent}) or name a file in an existing folder"
        )


def write_json(path: Path, result: dict[str, Any]) -> None:
    try:
        path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write json={path} ({exc.strerror or exc}); name a writable file") from exc


@command_line("bench", bench_args)
@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="bench")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    cli(cfg)


if __name__ == "__main__":
    main()
