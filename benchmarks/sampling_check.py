"""The training loop's periodic sample with its decoder kept, and batch-1 sampling speed on three paths.

    python benchmarks/sampling_check.py --device cuda               # on a GPU (benchmarks/gpu.sh sampling)
    python benchmarks/sampling_check.py --device cpu --tokens 20    # a check of this script (gpu.sh CPU=1)

Both parts use the default model (4L-4H-128E, block 128) with random weights and a character vocabulary.

Periodic sample: the training loop's sample (``tinygpt.training.periodic.training_sample``) drawn
twice by one sampler, the weights changed in place in between as an optimizer step changes them. The
first draw makes the decoder (on CUDA: static cache, CUDA graph recorded), the second resets and reuses
it; a new sampler's draw at the same random state (what every sample cost before decoders were kept)
gives the text the second must equal. Prints the three times and PASS or FAIL.

Speed: batch 1, ``--tokens`` new tokens, seeded, on the KV cache eagerly (``static_cache=false``),
the static cache replayed as a CUDA graph, and the static cache with its step compiled, then replayed.
Each decoder is made and run once untimed (capture, compilation), then reset and timed: decoding alone.
Prints tok/s and how many leading tokens equal the KV cache path's (all, unless float rounding flips a
draw). On the CPU the static paths run uncaptured: there are no graphs there.

Exit status 0 on PASS, 1 otherwise. The table comes last.
"""

import argparse
import string
import sys
import time

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from tinygpt.config.schema import conf_dir
from tinygpt.data import CharTokenizer
from tinygpt.inference.engine import decode, generate, new_decoder
from tinygpt.model import GPT
from tinygpt.training.periodic import sample_text, training_sample

PATHS = {  # name -> path keywords of new_decoder; the first is the baseline
    "KV cache, eager": dict(static_cache=False),
    "static cache + CUDA graph": dict(static_cache=True),
    "static cache + compiled step + CUDA graph": dict(static_cache=True, compile_step=True),
}


def default_model(vocab_size: int, device: torch.device) -> GPT:
    with initialize_config_dir(version_base="1.3", config_dir=conf_dir()):
        cfg = compose("train")
    return instantiate(cfg.model)(vocab_size=vocab_size).to(device).eval()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, work):
    """(seconds, result) of ``work()``, the device waited for."""
    synchronize(device)
    start = time.perf_counter()
    result = work()
    synchronize(device)
    return time.perf_counter() - start, result


def periodic_check(model: GPT, tokenizer: CharTokenizer, tokens: int, device: torch.device) -> bool:
    """The periodic sample drawn twice by one sampler, then by a new one at the same random state."""
    kept = training_sample(tokenizer, tokens)
    torch.manual_seed(1)
    first_s, _ = timed(device, lambda: sample_text(model, kept))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.01)  # in place, as the optimizer's update
    torch.manual_seed(2)
    second_s, second = timed(device, lambda: sample_text(model, kept))
    torch.manual_seed(2)
    new_s, expected = timed(device, lambda: sample_text(model, training_sample(tokenizer, tokens)))
    same = second == expected
    print(
        f"periodic sample of {tokens} tokens: first (decoder made, on CUDA its graph recorded)"
        f" {first_s * 1e3:.0f} ms, second (kept decoder) {second_s * 1e3:.0f} ms,"
        f" a new decoder {new_s * 1e3:.0f} ms;"
        f" {'PASS' if same else 'FAIL'}: the kept decoder's text {'equals' if same else 'differs from'}"
        " the new decoder's"
    )
    return same


def path_speed(model: GPT, tokens: int, device: torch.device, path: dict) -> tuple[float, torch.Tensor]:
    """tok/s of decoding alone on ``path`` (the decoder made and run once before), and its tokens."""
    generator = torch.Generator(device).manual_seed(0)
    prompt = torch.zeros(1, 1, dtype=torch.long, device=device)  # (1, 1)
    decoder = new_decoder(model, prompt, tokens, temperature=1.0, generator=generator, **path)
    for _ in decode(decoder, tokens):  # compiles a compiled step's remaining shapes
        pass
    decoder.reset()
    generator.manual_seed(0)
    seconds, chunks = timed(device, lambda: list(decode(decoder, tokens)))
    return tokens / seconds, torch.cat(chunks, dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=500, help="new tokens per sample and per measurement")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    device = torch.device(args.device)
    tokenizer = CharTokenizer("\n" + string.ascii_letters + string.digits + " .,;:!?'-")
    torch.manual_seed(0)
    model = default_model(tokenizer.vocab_size, device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, {where}, default model, batch 1")
    generate(model, torch.zeros(1, 1, dtype=torch.long, device=device), 8, static_cache=False)  # kernels
    passed = periodic_check(model, tokenizer, args.tokens, device)
    results = {name: path_speed(model, args.tokens, device, path) for name, path in PATHS.items()}
    baseline, expected = next(iter(results.values()))
    print(f"\n| path ({args.tokens} new tokens) | tok/s | vs KV cache | same tokens |")
    print("|---|---:|---:|---:|")
    for name, (speed, tokens) in results.items():
        same = int((tokens == expected).cumprod(dim=1).sum())  # leading tokens equal to the baseline's
        print(f"| {name} | {speed:.0f} | {speed / baseline:.2f}x | {same}/{args.tokens} |")
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
