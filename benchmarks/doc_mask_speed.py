"""What ``model.doc_mask`` costs a training step: forward + backward of the model, with and without it.

    python benchmarks/doc_mask_speed.py                      # the default shape: B=64, T=128
    python benchmarks/doc_mask_speed.py --compile            # both through torch.compile as well
    python benchmarks/doc_mask_speed.py model=llama model.sliding_window=32

Builds the model of the training config (overrides as for ``python -m tinygpt.train``) twice from the
same seed, ``model.doc_mask=false`` (SDPA's causal kernel, no mask) and ``true`` (SDPA with a boolean
(B, 1, T, T) mask built from the ids), and times forward + loss + backward on the same random batch
of ids (``--vocab``, BPE's 8000 by default) holding a document token every ~``--doc-len`` tokens.
The variants take turns for ``--rounds`` rounds so that a shared machine's load falls on both alike.
``--compile`` adds both through torch.compile (compiled in an untimed warm-up call). Each prints its
best and median milliseconds per step, and its best CPU time per step: with ``--threads 1`` that is
what a busy machine disturbs least. The table is printed at the end.
"""

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from tinygpt.config.schema import conf_dir
from tinygpt.model import GPT

BOS = 0  # stands for <|endoftext|>


def build(overrides: list[str], doc_mask: bool, vocab_size: int) -> GPT:
    with initialize_config_dir(version_base="1.3", config_dir=conf_dir()):
        cfg = compose("train", overrides=[*overrides, f"model.doc_mask={doc_mask}"])
    torch.manual_seed(0)
    return instantiate(cfg.model)(vocab_size=vocab_size, bos_id=BOS).train()


def batch(B: int, T: int, vocab_size: int, doc_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) ids and targets with a document token at random places, one per ``doc_len`` on average."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, vocab_size, (B, T + 1), generator=g)
    ids[torch.rand(B, T + 1, generator=g) < 1 / doc_len] = BOS
    return ids[:, :-1], ids[:, 1:]


def step_fn(model: torch.nn.Module, idx: torch.Tensor, targets: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(idx, targets=targets).backward()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=8000, help="default: BPE's (conf/data/tokenizer)")
    parser.add_argument("--doc-len", type=int, default=40, help="mean document length in tokens")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant and round")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args, overrides = parser.parse_known_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    models = {f"doc_mask={on}": build(overrides, on, args.vocab) for on in (False, True)}
    idx, targets = batch(args.batch, next(iter(models.values())).block_size, args.vocab, args.doc_len)
    steps = {name: step_fn(model, idx, targets) for name, model in models.items()}
    if args.compile:
        steps |= {f"{name}, compiled": step_fn(torch.compile(m), idx, targets) for name, m in models.items()}
    for name, step in steps.items():  # warm-up (and compile)
        start = time.perf_counter()
        step()
        print(f"warm-up {name}: {time.perf_counter() - start:.1f} s", flush=True)
    times: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                step()
            times[name].append((time.perf_counter() - start) / args.steps * 1e3)
            cpu[name].append((time.process_time() - start_cpu) / args.steps * 1e3)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}")
    shape = f"B={args.batch}, T={idx.size(1)}, vocab {args.vocab}"
    print(f"{shape}, a document every ~{args.doc_len} tokens, overrides {overrides}")
    print("| variant | best ms/step | median ms/step | best CPU ms/step |\n|---|---:|---:|---:|")
    for name, ms in times.items():
        print(f"| {name} | {min(ms):.1f} | {statistics.median(ms):.1f} | {min(cpu[name]):.1f} |")


if __name__ == "__main__":
    main()
