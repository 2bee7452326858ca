#!/usr/bin/env bash
# The GPU rows of the performance issue, both programs in one call, alternating where it matters:
#   bash benchmarks/gpu_perf.sh NANOGPT_DIR      # a nanoGPT checkout whose data/shakespeare_char is prepared
# Prints markdown rows; logs go to ${OUT:-/tmp/tinygpt-perf}. nanoGPT's code is never committed here.
set -uo pipefail
NANO=$(realpath "${1:?usage: gpu_perf.sh NANOGPT_DIR}")
OUT=${OUT:-/tmp/tinygpt-perf}; mkdir -p "$OUT"
export TINYGPT_CACHE=/tmp/tinygpt-cache PYTHONUNBUFFERED=1
HERE=$PWD
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python -c "import torch; print('torch', torch.__version__)"

nano_ms() {  # median ms/iter of nanoGPT's train.py log, its first 3 logged iterations left out
  python - "$1" <<'PY'
import re, statistics, sys
times = [float(t) for t in re.findall(r"iter \d+: .*?time ([\d.]+)ms", open(sys.argv[1]).read())]
print(f"{statistics.median(times[3:]):.2f}" if len(times) > 3 else "n/a")
PY
}
ours() { timeout 300 python -m tinygpt.bench "$@" 2>>"$OUT/ours.err" | tail -n 1; }

echo "=== default model 4L-4H-128E, block 128, batch 64: nanoGPT train.py (its defaults: bf16, compile) vs ours"
for round in 1; do
  (cd "$NANO" && timeout 300 python train.py config/train_shakespeare_char.py --n_layer=4 --n_head=4 --n_embd=128 \
    --block_size=128 --batch_size=64 --dropout=0.0 --max_iters=300 --eval_interval=1000 --eval_iters=20 \
    --log_interval=10 --out_dir="$OUT/nano_default" > "$OUT/nano_default_$round.log" 2>&1)
  echo "nanoGPT train.py round $round: $(nano_ms "$OUT/nano_default_$round.log") ms/iter"
  ours --steps 200 --warmup 30 device=cuda precision=bf16 compile=true
  ours --steps 200 --warmup 30 device=cuda precision=bf16 compile=true compile_mode=reduce-overhead
done
ours --steps 200 --warmup 10 device=cuda precision=fp32
ours --steps 200 --warmup 10 device=cuda precision=bf16

echo "=== GPT-2 124M shape (12L-12H-768E, block 1024, vocab 50304), bf16, compile: nanoGPT bench.py vs ours"
G2=(--vocab-size 50304 model.n_layer=12 model.n_head=12 model.n_embd=768 model.block_size=1024 model.bias=false
    device=cuda precision=bf16 compile=true)
for batch in 12 32; do
  (cd "$NANO" && timeout 300 python bench.py --batch_size=$batch --real_data=False --compile=True \
    > "$OUT/nano_bench_$batch.log" 2>&1)
  echo "nanoGPT bench.py batch $batch: $(grep 'time per iteration' "$OUT/nano_bench_$batch.log")"
  ours --steps 20 --warmup 10 "${G2[@]}" batch_size=$batch
done

echo "=== gradient checkpointing, 124M shape, batch 32, bf16, eager: peak memory"
G2E=(--vocab-size 50304 model.n_layer=12 model.n_head=12 model.n_embd=768 model.block_size=1024 model.bias=false
     device=cuda precision=bf16 batch_size=32)
ours --steps 5 --warmup 2 "${G2E[@]}" grad_checkpointing=false
ours --steps 5 --warmup 2 "${G2E[@]}" grad_checkpointing=true
cd "$HERE"
