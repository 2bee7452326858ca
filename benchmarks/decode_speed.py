"""Generation speed: tokens/s of ``tinygpt.inference.engine.generate`` on each decode path (``PATHS``).

Batch 1, a one-token prompt, random weights (speed does not depend on them), sampling at
temperature 1 with the same seed on every path. Past block_size all paths follow the same context
rule (``tinygpt.inference.cache.past_block_size``), so they do the same work per token but for the
recomputation a cache saves. Every path is the one decode loop with the one KV cache: the baseline
reads back only the cache's written slots each token (the CPU default); "static cache"
(``static_cache=true``, the CUDA default) gives the cache fixed shapes, so each token attends over
every slot under a mask and, on CUDA, is one CUDA graph replay, timed end to end, graph capture
included. "static cache, compiled" is the same with its one-token step through torch.compile
(``compile=true`` of generate): the warm-up call compiles it, so the timed call shows decoding alone,
and the compile time is printed apart. "same tokens" counts the leading tokens equal to the
baseline's: all of them, unless float rounding flips a draw.

Each model runs on one thread and on torch's default number: decoding is many small
ops, and on a busy machine threads that wait for each other can cost more than they bring. The load
average is printed alongside.

    python benchmarks/decode_speed.py                  # 500 new tokens, both models
    python benchmarks/decode_speed.py --tokens 50      # a quick look
    python benchmarks/decode_speed.py --device cuda    # on a GPU (threads do not apply there)

The table is printed at the end, as the last lines of the output.
"""

import argparse
import os
import time

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from tinygpt.config.schema import conf_dir
from tinygpt.inference.engine import generate
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


# path -> keywords of tinygpt.inference.engine.generate; the first is the baseline of the others
PATHS = {
    "KV cache (baseline)": dict(kv_cache=True, static_cache=False),
    "static cache": dict(kv_cache=True, static_cache=True),  # fixed shapes; + a CUDA graph per token on CUDA
    # compiled in the warm-up call (its compile time is not in the timed call; printed apart)
    "static cache, compiled": dict(kv_cache=True, static_cache=True, compile_step=True),
    "no cache": dict(kv_cache=False),
}


def timed(model: GPT, new_tokens: int, device: torch.device, path: dict) -> tuple[float, torch.Tensor]:
    """tok/s of one seeded ``generate`` call (after a warm-up call), and the tokens it drew."""
    prompt = torch.zeros(1, 1, dtype=torch.long, device=device)
    start = time.perf_counter()
    warm_up = torch.Generator(device).manual_seed(1)  # a generator, as below: compiled code guards on it
    generate(model, prompt, 20, generator=warm_up, **path)  # first calls allocate, pick kernels, compile
    synchronize(device)
    if path.get("compile_step"):
        print(f"compiling the decode step took {time.perf_counter() - start:.1f} s (the warm-up call)")
    start = time.perf_counter()
    out = generate(model, prompt, new_tokens, generator=torch.Generator(device).manual_seed(0), **path)
    synchronize(device)
    return new_tokens / (time.perf_counter() - start), out


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
    rows = []
    for name, (overrides, vocab_size) in MODELS.items():
        model = build(overrides, vocab_size).to(device)
        params = model.num_params(non_embedding=False) / 1e6
        for threads in thread_counts:
            torch.set_num_threads(threads)
            results = {
                path_name: timed(model, args.tokens, device, path) for path_name, path in PATHS.items()
            }
            baseline, expected = next(iter(results.values()))
            for path_name, (speed, out) in results.items():
                same = int((out == expected).cumprod(dim=1).sum()) - 1  # tokens equal to the baseline's
                rows.append(
                    f"| {name} | {params:.2f}M | {threads} | {path_name} | {speed:.0f} | "
                    f"{speed / baseline:.2f}x | {same}/{args.tokens} |"
                )
    print(f"load average after: {load_average()}\n")
    # the table comes last, as one block: a GPU session keeps only the tail of this output
    print("| model | parameters | threads | path | tok/s | vs baseline | same tokens |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
