#!/usr/bin/env bash
# One GPU session: CUDA code paths of the CLI and the throughput figures in benchmarks/RESULTS.md.
# Run from the repository root on a CUDA machine with tinygpt importable (PYTHONPATH=$PWD) and a
# local tiny-shakespeare copy at $SHAKESPEARE. Writes its logs to ${OUT:-/tmp/tinygpt-gpu}.
set -uo pipefail
OUT=${OUT:-/tmp/tinygpt-gpu}
SHAKESPEARE=${SHAKESPEARE:-.devdata/tinyshakespeare.txt}
export TINYGPT_CACHE=/tmp/tinygpt-cache PYTHONUNBUFFERED=1
mkdir -p "$OUT"
step() { echo "=== $*" | tee -a "$OUT/summary.txt"; }
tail_to_summary() { grep -E "val_loss|tok/s|error|Error" "$1" | tail -n "${2:-4}" >> "$OUT/summary.txt"; }

step "device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$OUT/summary.txt"
python -c "import torch, tokenizers; print('torch', torch.__version__, 'tokenizers', tokenizers.__version__)" \
  | tee -a "$OUT/summary.txt"

step "loop throughput, default model (4L-4H-128E, batch 64 x 128)"
python benchmarks/train_speed.py --device cuda --model default --steps 300 --precisions fp32,bf16 \
  --compile false 2>&1 | tee -a "$OUT/summary.txt"
python benchmarks/train_speed.py --device cuda --model default --steps 300 --precisions bf16 \
  --compile true 2>&1 | grep '^| default' | tee -a "$OUT/summary.txt"

step "bf16 + fused AdamW + EMA, then resume"
python -m tinygpt.train device=cuda precision=bf16 ema_decay=0.99 max_steps=300 eval_interval=150 \
  sample_interval=300 hydra.run.dir=/tmp/g1 > "$OUT/g1.log" 2>&1; echo "rc=$?" >> "$OUT/summary.txt"
python -m tinygpt.train device=cuda precision=bf16 ema_decay=0.99 max_steps=400 eval_interval=150 \
  sample_interval=0 hydra.run.dir=/tmp/g1 resume=true >> "$OUT/g1.log" 2>&1; echo "rc=$?" >> "$OUT/summary.txt"
tail_to_summary "$OUT/g1.log"

step "fp16 GradScaler + Muon + gradient checkpointing"
python -m tinygpt.train device=cuda precision=fp16 optim=muon grad_checkpointing=true max_steps=100 \
  eval_interval=100 hydra.run.dir=/tmp/g2 > "$OUT/g2.log" 2>&1; echo "rc=$?" >> "$OUT/summary.txt"
tail_to_summary "$OUT/g2.log" 2

step "torchrun, 1 process, nccl"
torchrun --standalone --nproc_per_node=1 -m tinygpt.train device=cuda max_steps=50 eval_interval=50 \
  hydra.run.dir=/tmp/g3 > "$OUT/g3.log" 2>&1; echo "rc=$?" >> "$OUT/summary.txt"
tail_to_summary "$OUT/g3.log" 2

step "generation on cuda (EMA weights), KV cache and not"
python -m tinygpt.generate run=/tmp/g1 prompt="Once" max_new_tokens=300 device=cuda ema=true seed=1 \
  > "$OUT/gen.txt" 2> "$OUT/gen.err"; echo "rc=$?" >> "$OUT/summary.txt"
head -c 400 "$OUT/gen.txt" >> "$OUT/summary.txt"; echo >> "$OUT/summary.txt"
python benchmarks/generate_speed.py --device cuda 2>&1 | tail -n 8 | tee -a "$OUT/summary.txt"

step "nanoGPT's shakespeare_char recipe: 6L-6H-384E, block 256, batch 64, dropout 0.2, 5000 steps, bf16, compile"
python -m tinygpt.train data=shakespeare_char data.path="$SHAKESPEARE" model.n_layer=6 model.n_head=6 \
  model.n_embd=384 model.block_size=256 model.dropout=0.2 model.bias=false batch_size=64 optim.lr=1e-3 \
  'optim.betas=[0.9,0.99]' schedule.warmup_steps=100 max_steps=5000 eval_interval=250 eval_iters=200 \
  log_interval=250 sample_interval=0 precision=bf16 compile=true device=cuda hydra.run.dir=/tmp/shakes \
  > "$OUT/shakes.log" 2>&1; echo "rc=$?" >> "$OUT/summary.txt"
grep -E "val_loss" "$OUT/shakes.log" | sort -t' ' -k9 -n | head -n 1 >> "$OUT/summary.txt"
tail_to_summary "$OUT/shakes.log" 3
cp /tmp/shakes/metrics.jsonl "$OUT/shakes_metrics.jsonl" 2>/dev/null
