"""Generation speed: tokens/s of ``tinygpt.engine.generate`` with and without the KV cache.

Batch 1, a one-token prompt, random weights (speed does not depend on them), sampling at
temperature 1. Past block_size both paths follow the same context rule
(``tinygpt.engine.past_block_size``), so they do the same work per token but for the recomputation
the cache saves. Each model runs on one thread and on torch's default number: decoding is many small
ops, and on a busy machine threads that wait for each other can cost more than they bring. The load
average is printed alongside.

    python benchmarks/generate_speed.py                  # 500 new tokens, both models
    python benchmarks/generate_speed.py --tokens 50      # a quick look
    python benchmarks/generate_speed.py --device cuda    # on a GPU (threads do not apply there)
"""

import argparse
import os
import time

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from tinygpt.config import conf_dir
from tinygpt.engine import generate
from tinygpt.model import GPT

# name -> (overrides of the training config, vocabulary size of the char corpus it goes with)
MODELS = {
    "4L-4H-128E, block 128 (default)": ([], 74),
    "6L-6H-384E, block 256": (
        ["model.n_layer=6", "model.n_head=6", "model.n_embd=384", "model.block_size=256"],
        65,
    ),
}


def build(overrides: list[str], vocab_size: int) -> GPT:
    with initialize_config_dir(version_base="1.3", config_dir=conf_dir()):
        cfg = compose("train", overrides=overrides)
    return instantiate(cfg.model)(vocab_size=vocab_size).eval()


def tokens_per_s(model: GPT, new_tokens: int, kv_cache: bool, device: torch.device) -> float:
    prompt = torch.zeros(1, 1, dtype=torch.long, device=device)
    generate(model, prompt, 20, kv_cache=kv_cache)  # warm-up: first calls allocate and pick kernels
    synchronize(device)
    start = time.perf_counter()
    generate(model, prompt, new_tokens, kv_cache=kv_cache, generator=torch.Generator(device).manual_seed(0))
    synchronize(device)
    return new_tokens / (time.perf_counter() - start)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=500, help="new tokens per measurement")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    thread_counts = (
        sorted({1, torch.get_num_threads()}) if device.type == "cpu" else [torch.get_num_threads()]
    )
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} CPUs"
    print(f"torch {torch.__version__}, {where}, {args.tokens} new tokens, batch 1")
    print(f"load average before: {load_average()}\n")
    print("| model | parameters | threads | KV cache (tok/s) | no cache (tok/s) | speed-up |")
    print("|---|---|---|---|---|---|")
    for name, (overrides, vocab_size) in MODELS.items():
        model = build(overrides, vocab_size).to(device)
        params = model.num_params(non_embedding=False) / 1e6
        for threads in thread_counts:
            torch.set_num_threads(threads)
            cached = tokens_per_s(model, args.tokens, kv_cache=True, device=device)
            full = tokens_per_s(model, args.tokens, kv_cache=False, device=device)
            row = f"| {name} | {params:.2f}M | {threads} | {cached:.0f} | {full:.0f} | {cached / full:.1f}x |"
            print(row, flush=True)
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
