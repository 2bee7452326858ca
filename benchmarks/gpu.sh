#!/usr/bin/env bash
# Every GPU row of the performance issue (11), TinyGPT and nanoGPT side by side, in one call of at most
# BUDGET_S seconds (470) on one GPU, compilation included:
#   OUT=DIR bash benchmarks/gpu_issue11.sh [NANOGPT_DIR]     # default .nanogpt (data/shakespeare_char prepared)
# SHAKESPEARE=FILE is tiny-shakespeare (default NANOGPT_DIR/data/shakespeare_char/input.txt). DRY=1 runs
# TinyGPT's rows on the CPU with tiny steps and no nanoGPT: a check of this script, not a measurement.
# Rows come in order of value (default model 4x, speedrun, sampling, 124M), each under `timeout`
# and within what is left of the budget, so a stuck row costs only its cap. Results go to $OUT/summary.md
# as they come (also printed); every log is in $OUT. This script was benchmarks/gpu_perf.sh (issue 11's
# first measurement); nanoGPT's code is never committed here.
set -uo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
NANO=$(realpath "${1:-.nanogpt}")
OUT=${OUT:-/tmp/tinygpt-issue11}; mkdir -p "$OUT"
SHAKESPEARE=$(realpath "${SHAKESPEARE:-$NANO/data/shakespeare_char/input.txt}")
BUDGET_S=${BUDGET_S:-470}; DRY=${DRY:-0}
export TINYGPT_CACHE=${TINYGPT_CACHE:-/tmp/tinygpt-cache} PYTHONUNBUFFERED=1 PYTHONPATH=$HERE${PYTHONPATH:+:$PYTHONPATH}
SUMMARY=$OUT/summary.md; : > "$SUMMARY"
READ=(python "$HERE/benchmarks/issue11.py")

say() { echo "$*" | tee -a "$SUMMARY"; }
RESERVE=0  # seconds kept for the rows after this one
left() { echo $((BUDGET_S - SECONDS - RESERVE)); }
capped() {  # capped CAP COMMAND...: COMMAND under `timeout` of CAP s or what is left of the budget
  local cap=$1 l; shift; l=$(( $(left) - 5 ))
  if (( l < 20 )); then echo "skipped: ${l} s of the budget left" >&2; return 124; fi
  timeout -k 5 $(( cap < l ? cap : l )) "$@"
}
ours() {  # ours NAME CAP BENCH_ARGS...: python -m tinygpt.bench into $OUT/NAME.json (log NAME.log)
  local name=$1 cap=$2; shift 2
  capped "$cap" python -m tinygpt.bench --json "$OUT/$name.json" "$@" > "$OUT/$name.log" 2>&1
  echo "  ours $name (rc $?, ${SECONDS} s): $(tail -n 1 "$OUT/$name.log")"
}
nano() {  # nano NAME CAP ARGS...: a nanoGPT script, run in its checkout, into $OUT/NAME.log
  local name=$1 cap=$2; shift 2
  if (( DRY )); then echo "DRY: no nanoGPT" > "$OUT/$name.log"; return; fi
  (cd "$NANO" && capped "$cap" python "$@" > "$OUT/$name.log" 2>&1)
  echo "  nanoGPT $name (rc $?, ${SECONDS} s)"
}

if (( DRY )); then
  GPU=(device=cpu precision=fp32 compile=false); STEPS=(--steps 2 --warmup 1)
  G2=(--vocab-size 512 model.n_layer=2 model.n_head=2 model.n_embd=64 model.block_size=64 model.bias=false
      "${GPU[@]}")
  SPEED=(precision=fp32 compile=false cuda_graph=false device=cpu model.n_layer=2 model.n_embd=64 model.n_head=2
         model.block_size=64 batch_size=8 max_steps=20 eval_interval=10 eval_iters=2 stop_at_val_loss=9.0)
else
  GPU=(device=cuda precision=bf16 compile=true); STEPS=(--steps 200 --warmup 30)
  G2=(--vocab-size 50304 model.n_layer=12 model.n_head=12 model.n_embd=768 model.block_size=1024
      model.bias=false "${GPU[@]}")
  SPEED=()
fi

say "# Issue 11 GPU rows ($(date -u +%F), budget ${BUDGET_S} s)"
say "$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')," \
    "$(python -c 'import torch; print("torch", torch.__version__)'), $(nproc) CPU cores, DRY=$DRY"
say ""
if (( DRY )); then GRAPH=(); GRAPH_EAGER=(); else GRAPH=(cuda_graph=true); GRAPH_EAGER=(cuda_graph=true compile=false); fi

RESERVE=200  # the speedrun rows come after row 1
echo "=== 1. default model 4L-4H-128E, block 128, batch 64, bf16: nanoGPT train.py vs ours (target >= 4x)"
if (( ! DRY )); then
  capped 60 python "$HERE/benchmarks/step_graph_check.py" precision=fp32 > "$OUT/step_graph_check.log" 2>&1
  say "whole-step graph check (cuda_graph=true = eager step, fp32): $(grep -E 'PASS|FAIL|SKIP|Error' "$OUT/step_graph_check.log" | tail -n 1)"
  say "$(grep -E '^ms/step|^drawing' "$OUT/step_graph_check.log")"
fi
nano nano_default 100 train.py config/train_shakespeare_char.py --n_layer=4 --n_head=4 --n_embd=128 \
  --block_size=128 --batch_size=64 --dropout=0.0 --max_iters=300 --eval_interval=1000 --eval_iters=20 \
  --log_interval=10 --out_dir="$OUT/nano_default_out"
NANO_MS=$("${READ[@]}" nano-train "$OUT/nano_default.log")
say ""
say "| workload | nanoGPT ms/step | TinyGPT ms/step | tok/s | MFU | peak MiB | ratio | target |"
say "|---|---:|---:|---:|---:|---:|---:|---|"
row1() {  # row1 NAME LABEL OVERRIDES...: one of our variants of the default model against nanoGPT's train.py
  local name=$1 label=$2; shift 2
  ours "$name" 90 "${STEPS[@]}" "${GPU[@]}" "$@"
  label="$label; step graph recorded: $("${READ[@]}" field "$OUT/$name.json" graphed_step)"
  say "| default model, $label | $NANO_MS | $("${READ[@]}" ours "$OUT/$name.json") | $("${READ[@]}" ratio "$NANO_MS" "$("${READ[@]}" field "$OUT/$name.json" ms_per_step)") | >= 4x |"
}
row1 default_graph_compiled "cuda_graph=true + compile (default mode): the whole step one CUDA graph" "${GRAPH[@]}"
row1 default_graph "cuda_graph=true, no compile" "${GRAPH_EAGER[@]}"
row1 default_ro "compile_mode=reduce-overhead (forward+backward graphs, update graph)" compile_mode=reduce-overhead

RESERVE=60  # sampling
echo "=== 2. speedrun: wall time from the command to the first val loss <= 1.47 on tiny-shakespeare chars"
say ""
speed() {  # speed NAME CAP ARGS...: our speedrun, timed by until-val from the command's start
  local name=$1 cap=$2; shift 2
  local line; line=$(capped "$cap" "${READ[@]}" until-val 1.47 "$OUT/$name.log" -- python -m tinygpt.train \
    experiment=shakespeare_speedrun data.path="$SHAKESPEARE" hydra.run.dir="$OUT/$name" "${SPEED[@]}" "$@")
  say "speedrun TinyGPT $name ($*): ${line:-timed out}"
  # where the time went, in the summary itself (a GPU session may bring back only a few files)
  grep -E "using token|tokenizing|model:|replayed|val_loss|stopping|rror" "$OUT/$name.log" | cut -c1-140 | tee -a "$SUMMARY"
}
speed speedrun 80                                   # the recipe as committed: cuda_graph=true, no compile
(( DRY )) || speed speedrun_compiled 80 compile=true "${GRAPH[@]}"  # the same, compiled (~20 s, twice)
if (( DRY )); then say "speedrun nanoGPT: DRY, not run"
elif (( $(left) >= 110 )); then
  say "speedrun nanoGPT train_shakespeare_char: $(cd "$NANO" && capped 110 "${READ[@]}" until-val 1.47 \
    "$OUT/nano_speedrun.log" -- python train.py config/train_shakespeare_char.py --out_dir="$OUT/nano_speedrun_out")"
else say "speedrun nanoGPT: not run (budget); 72.1-90.0 s on an H100 in earlier calls (RESULTS.md)"; fi

RESERVE=0
echo "=== 3. sampling on the GPU"
if (( DRY )); then SAMPLE=(--tokens 20); else SAMPLE=(--device cuda); fi
capped 90 python "$HERE/benchmarks/generate_speed.py" "${SAMPLE[@]}" > "$OUT/sampling.log" 2>&1; RC=$?
say ""; say "sampling (benchmarks/generate_speed.py ${SAMPLE[*]}, rc $RC):"; say "$(grep -v '^\s*$' "$OUT/sampling.log" | tail -n 12)"

echo "=== 4. GPT-2 124M shape (12L-12H-768E, block 1024, vocab 50304), bf16, compile, batch 12: nanoGPT bench.py vs ours"
say ""
nano nano_bench_12 100 bench.py --batch_size=12 --real_data=False --compile=True
NANO_MS=$("${READ[@]}" nano-bench "$OUT/nano_bench_12.log")
ours g2_12_graph 100 --steps 20 --warmup 10 "${G2[@]}" batch_size=12 "${GRAPH[@]}"
say "| 124M shape, batch 12, compile + cuda_graph | $NANO_MS (MFU $("${READ[@]}" nano-mfu "$OUT/nano_bench_12.log")) | $("${READ[@]}" ours "$OUT/g2_12_graph.json") | $("${READ[@]}" ratio "$NANO_MS" "$("${READ[@]}" field "$OUT/g2_12_graph.json" ms_per_step)") | >= 1.25x |"
say ""; say "total ${SECONDS} s of the ${BUDGET_S} s budget"
