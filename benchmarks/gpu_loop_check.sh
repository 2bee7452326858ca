#!/usr/bin/env bash
# GPU checks of the reworked loop, in one short call: is the step free of host syncs on CUDA (every
# optimizer and precision), how fast is the loop next to an older tree ($OLD, alternating), and does
# every CUDA path of the CLI still run. Run from the repository root with tinygpt and Hydra importable.
#   OLD=.gpu_old bash benchmarks/gpu_loop_check.sh      # OLD: a checkout of the tree to compare with
set -uo pipefail
OUT=${OUT:-/tmp/tinygpt-gpu}; OLD=${OLD:-}
export TINYGPT_CACHE=/tmp/tinygpt-cache PYTHONUNBUFFERED=1
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

echo "=== step sync check (torch.cuda.set_sync_debug_mode('error') around train_step)"
python benchmarks/step_sync.py

echo "=== loop throughput: this tree vs \$OLD ($OLD), alternating, default model, 300 steps"
for round in 1 2; do
  for tree in . ${OLD:+"$OLD"}; do
    echo "--- $tree (round $round)"
    (cd "$tree" && PYTHONPATH="/tmp/site:$PWD" python benchmarks/train_speed.py \
      --device cuda --model default --steps 300 --precisions fp32,bf16 --compile false 2>&1 | grep '^| default')
  done
done

run() { local name=$1; shift; "$@" > "$OUT/$name.log" 2>&1; echo "$name rc=$? $(grep -E 'val_loss|error' "$OUT/$name.log" | tail -n 1)"; }
echo "=== CUDA paths of the CLI"
run bf16_ema python -m tinygpt.train device=cuda precision=bf16 ema_decay=0.99 max_steps=200 eval_interval=100 \
  sample_interval=200 hydra.run.dir=/tmp/g1
run bf16_ema_resume python -m tinygpt.train device=cuda precision=bf16 ema_decay=0.99 max_steps=300 \
  eval_interval=100 sample_interval=0 hydra.run.dir=/tmp/g1 resume=auto
run fp16_muon_ckpt python -m tinygpt.train device=cuda precision=fp16 optim=muon grad_checkpointing=true \
  max_steps=100 eval_interval=100 hydra.run.dir=/tmp/g2
run sgd_lion_bf16 python -m tinygpt.train device=cuda precision=bf16 optim=lion max_steps=100 eval_interval=100 \
  hydra.run.dir=/tmp/g4
run compile_bf16 python -m tinygpt.train device=cuda precision=bf16 compile=true max_steps=100 eval_interval=100 \
  hydra.run.dir=/tmp/g5
run torchrun_nccl torchrun --standalone --nproc_per_node=1 -m tinygpt.train device=cuda max_steps=50 \
  eval_interval=50 hydra.run.dir=/tmp/g3
run generate python -m tinygpt.generate run=/tmp/g1 prompt="Once" max_new_tokens=200 device=cuda ema=true seed=1
head -c 300 "$OUT/generate.log"; echo
