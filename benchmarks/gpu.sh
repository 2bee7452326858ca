#!/usr/bin/env bash
# Every GPU row of benchmarks/RESULTS.md in one call on one CUDA GPU, TinyGPT beside nanoGPT where RESULTS
# compares them. From the repository root:
#   OUT=DIR NANOGPT=DIR bash benchmarks/gpu.sh [ROW ...]
# ROWs (default: all but recipe and shards, in this order: the order of value, as a call cut short by BUDGET_S
# loses the last ones):
#   checks    the CUDA-graph step and update train as the eager ones; the step asks the host nothing
#   step      training step speed, default model (4L-4H-128E, batch 64, bf16): nanoGPT train.py vs ours
#   speedrun  wall time from the command to the first val loss <= 1.47 on tiny-shakespeare characters
#   decode    sampling speed at batch 1 (benchmarks/decode_speed.py --device cuda)
#   sampling  the periodic sample's kept decoder (first draw records the graph, the second reuses it) and
#             batch-1 500-token speed: KV cache, static + graph, static + compiled + graph (sampling_check.py)
#   124m      GPT-2 124M shape: nanoGPT bench.py vs ours; gradient checkpointing's memory
#   cli       the commands' CUDA paths run: bf16 + EMA, resume, generate (static cache or not), eval,
#             export, fp16 + Muon + gradient checkpointing, torchrun with nccl
#   recipe    nanoGPT's shakespeare_char recipe, 5000 steps (experiments/README.md; ~80 s more)
#   shards    a 2B-token shard set against the embedded corpus: time to step 1, peak RSS, step time
#             (benchmarks/shards_startup.py; writes 3.8 GB under $RUNS once)
#   startup   the speedrun's start-up phases (docs/training.md#start-up), as committed and with compile=true
# Prints, and writes to $OUT/summary.md as the rows come, one Markdown section per row; every log lies
# beside it. Run directories and checkpoints go to $RUNS (default /tmp/tinygpt-gpu-runs), not to $OUT.
# Env: OUT (default /tmp/tinygpt-gpu); NANOGPT, a checkout of karpathy/nanoGPT (without it, its side of
# each row is skipped); SHAKESPEARE, a local tinyshakespeare.txt (default shared/data/ or ../shared/data/:
# the GPU machine has no network); BUDGET_S (600): each command runs under `timeout`, capped by what is
# left of it; PYTHON (python). Hydra and OmegaConf are installed from .whl/ when missing (pack them with
# ../shared/tools/device-wheels.sh and carry .whl/). CPU=1 runs every row on the CPU with tiny sizes and
# few steps (nanoGPT's train.py too, bench.py not): a check of this script, its figures mean nothing.
# Without a CUDA device and without CPU=1 it stops with one line before anything runs.
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python} CPU=${CPU:-0} BUDGET_S=${BUDGET_S:-600}
OUT=${OUT:-/tmp/tinygpt-gpu} RUNS=${RUNS:-/tmp/tinygpt-gpu-runs}
ROWS=("$@"); (( ${#ROWS[@]} )) || ROWS=(checks step speedrun decode sampling 124m cli)
die() { echo "error: $*" >&2; exit 2; }

for row in "${ROWS[@]}"; do
  [[ " checks step speedrun decode sampling 124m cli recipe shards startup " == *" $row "* ]] ||
    die "no row '$row': choose among checks step speedrun decode sampling 124m cli recipe shards startup"
done
if (( ! CPU )) && ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2> /dev/null; then
  die "no CUDA device here: gpu.sh measures GPU rows (CPU=1 checks the script on the CPU)"
fi
if ! "$PY" -c 'import hydra, omegaconf' 2> /dev/null; then
  compgen -G "$REPO/.whl/*.whl" > /dev/null ||
    die "hydra-core is not installed and .whl/ holds no wheels: run ../shared/tools/device-wheels.sh first"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/tinygpt-site \
    "$REPO"/.whl/*.whl || die "could not install .whl/*.whl into /tmp/tinygpt-site"
  export PYTHONPATH=/tmp/tinygpt-site
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export TINYGPT_CACHE=${TINYGPT_CACHE:-$RUNS/cache}
mkdir -p "$OUT" "$RUNS" && OUT=$(cd "$OUT" && pwd) RUNS=$(cd "$RUNS" && pwd)
SUMMARY=$OUT/summary.md; : > "$SUMMARY"
READ=("$PY" "$REPO/benchmarks/vs_nanogpt.py")
TIME_TO=("$PY" "$REPO/benchmarks/time_to_loss.py")

# --- the two modes: what differs between a GPU measurement and a CPU check of this script
if (( CPU )); then
  DEVICE=cpu TARGET=9.0
  TINY=(device=cpu precision=fp32 compile=false cuda_graph=false compile_mode=default model.n_layer=2
        model.n_head=2 model.n_embd=64 model.block_size=64 batch_size=8)
  BENCH_TINY=(--steps 2 --warmup 1 --vocab-size 512)
  RUN_TINY=(max_steps=20 eval_interval=10 eval_iters=2 sample_interval=0)
  NANO_TINY=(--device=cpu --compile=False --dtype=float32 --n_layer=1 --n_head=1 --n_embd=32 --block_size=32
             --batch_size=4 --max_iters=8 --eval_interval=4 --eval_iters=2 --log_interval=1)
  DECODE=(--tokens 20) SAMPLING=(--device cpu --tokens 20)
  SPEEDRUN_TINY=(model.short_window=16 model.value_embeds=1 model.fp8_head=false)  # a tiny block, no FP8
else
  DEVICE=cuda TARGET=1.47 TINY=() BENCH_TINY=() RUN_TINY=() NANO_TINY=() DECODE=(--device cuda)
  SAMPLING=(--device cuda)
  SPEEDRUN_TINY=()
fi

say() { echo "$*" | tee -a "$SUMMARY"; }
left() { echo $((BUDGET_S - SECONDS)); }
capped() {  # capped CAP COMMAND...: COMMAND under `timeout`, CAP s or what is left of the budget
  local cap=$1 l; shift; l=$(( $(left) - 5 ))
  if (( l < 20 )); then echo "skipped: ${l} s of the budget left" >&2; return 124; fi
  timeout -k 5 $(( cap < l ? cap : l )) "$@"
}
logged() {  # logged NAME CAP COMMAND...: COMMAND into $OUT/NAME.log; prints "rc N, S s"
  local name=$1 cap=$2 start=$SECONDS; shift 2
  capped "$cap" "$@" > "$OUT/$name.log" 2>&1
  echo "rc $?, $((SECONDS - start)) s"
}
bench() {  # bench NAME CAP ARGS...: python -m tinygpt.bench into $OUT/NAME.json (log NAME.log)
  local name=$1 cap=$2; shift 2
  echo "  bench $name: $(logged "$name" "$cap" "$PY" -m tinygpt.bench --json "$OUT/$name.json" "$@" \
    "${TINY[@]}" "${BENCH_TINY[@]}")"
}
nano() {  # nano NAME CAP SCRIPT ARGS...: one of nanoGPT's scripts, in its working copy, into NAME.log
  local name=$1 cap=$2; shift 2
  if [[ -z $NG ]]; then echo "nanoGPT not run: $NG_WHY" > "$OUT/$name.log"; return; fi
  echo "  nanoGPT $name: $(cd "$NG" && logged "$name" "$cap" "$PY" "$@" "${NANO_TINY[@]}")"
}
unstamp() { sed -E 's/\[[0-9-]+ [0-9:,]+\]\[[^]]*\]\[[A-Z]+\] - //' | cut -c1-160; }  # logging's prefix
last_line() { grep -E "${2:-.}" "$OUT/$1.log" 2> /dev/null | tail -n 1 | unstamp; }

# --- the rows
row_checks() {
  say ""; say "## checks: CUDA graphs against the eager step, host syncs"
  local r
  r=$(logged graph_step 120 "$PY" "$REPO/benchmarks/cuda_graph_check.py" step precision=fp32)
  say "- whole step as one CUDA graph, \`cuda_graph_check.py step precision=fp32\` ($r):" \
    "$(last_line graph_step 'PASS|FAIL|SKIP|rror')"
  grep -E '^ms/step|^drawing' "$OUT/graph_step.log" | sed 's/^/  - /' | tee -a "$SUMMARY"
  r=$(logged graph_update 90 "$PY" "$REPO/benchmarks/cuda_graph_check.py" update ema_decay=0.99)
  say "- the update as a CUDA graph, \`cuda_graph_check.py update ema_decay=0.99\` ($r):" \
    "$(last_line graph_update 'PASS|FAIL|SKIP|rror'); $(last_line graph_update '^update alone')"
  r=$(logged step_syncs 120 "$PY" "$REPO/benchmarks/train_step_syncs.py")
  say "- host syncs in the step, \`train_step_syncs.py\` ($r): $(last_line step_syncs 'CUDA|rror')"
  grep '^|' "$OUT/step_syncs.log" | tee -a "$SUMMARY"
}

step_variant() {  # step_variant NAME LABEL OVERRIDES...: one row of the default model's table
  local name=$1 label=$2; shift 2
  bench "$name" 120 --steps 200 --warmup 30 device=cuda precision=bf16 "$@"
  local ms; ms=$("${READ[@]}" field "$OUT/$name.json" ms_per_step)
  say "| \`$label\` | $nano_ms | $("${READ[@]}" ours "$OUT/$name.json") | $("${READ[@]}" ratio "$nano_ms" "$ms")" \
    "| $("${READ[@]}" field "$OUT/$name.json" graphed_step) |"
}

row_step() {
  say ""; say "## training step speed, default model 4L-4H-128E, block 128, batch 64, bf16"
  nano nano_default 150 train.py config/train_shakespeare_char.py --n_layer=4 --n_head=4 --n_embd=128 \
    --block_size=128 --batch_size=64 --dropout=0.0 --max_iters=300 --eval_interval=1000 --eval_iters=20 \
    --log_interval=10 --out_dir="$RUNS/nano_default"
  local nano_ms; nano_ms=$("${READ[@]}" nano-train "$OUT/nano_default.log")
  say "nanoGPT: \`train.py config/train_shakespeare_char.py\` at this size (compile, bf16), median ms/iter;" \
    "ours: \`python -m tinygpt.bench --steps 200 --warmup 30\`"
  say ""
  say "| ours | nanoGPT ms/step | ours ms/step | tok/s | MFU | peak MiB | nanoGPT ÷ ours | step graph recorded |"
  say "|---|---:|---:|---:|---:|---:|---:|---|"
  step_variant default_graph_compiled "cuda_graph=true compile=true" cuda_graph=true compile=true
  step_variant default_graph "cuda_graph=true compile=false" cuda_graph=true compile=false
}

row_speedrun() {
  say ""; say "## speedrun: from the command to the first val loss <= $TARGET, tiny-shakespeare characters"
  [[ -n $SHAKESPEARE ]] || { say "not run: no tiny-shakespeare here (set SHAKESPEARE=FILE)"; return; }
  local line
  line=$(capped 90 "${TIME_TO[@]}" "$TARGET" "$OUT/speedrun.log" -- "$PY" -m tinygpt.train \
    experiment=shakespeare_speedrun data.path="$SHAKESPEARE" hydra.run.dir="$RUNS/speedrun" "${TINY[@]}" \
    "${RUN_TINY[@]}")
  say "- TinyGPT \`experiment=shakespeare_speedrun\`: ${line:-not run (budget)}"
  say '  ```'  # where the time went, from the stamped log
  grep -E "using token|model:|start-up|replayed|recorded|val_loss|stopping|rror" "$OUT/speedrun.log" | unstamp |
    tee -a "$SUMMARY"
  say '  ```'
  if [[ -z $NG ]]; then say "- nanoGPT: not run ($NG_WHY)"; return; fi
  line=$(cd "$NG" && capped 130 "${TIME_TO[@]}" "$TARGET" "$OUT/nano_speedrun.log" -- "$PY" train.py \
    config/train_shakespeare_char.py --out_dir="$RUNS/nano_speedrun" "${NANO_TINY[@]}")
  say "- nanoGPT \`train.py config/train_shakespeare_char.py\`: ${line:-not run (budget)}"
}

row_decode() {
  local r; r=$(logged decode 150 "$PY" "$REPO/benchmarks/decode_speed.py" "${DECODE[@]}")
  say ""; say "## decoding at batch 1, \`benchmarks/decode_speed.py ${DECODE[*]}\` ($r)"
  grep -E '^torch|^\|' "$OUT/decode.log" | tee -a "$SUMMARY"
}

row_sampling() {
  local r; r=$(logged sampling 150 "$PY" "$REPO/benchmarks/sampling_check.py" "${SAMPLING[@]}")
  say ""; say "## periodic samples and batch-1 sampling, \`benchmarks/sampling_check.py ${SAMPLING[*]}\` ($r)"
  grep -E '^periodic|^\||rror' "$OUT/sampling.log" | tee -a "$SUMMARY"
}

row_shards() {  # a 2B-token shard set (3.8 GB under $RUNS) against the embedded corpus: start-up, RSS, step
  local args=(--rounds 3 --steps 30 --folder "$RUNS/shards-2b")
  (( CPU )) && args=(--tokens 2000000 --rounds 1 --steps 6 --folder "$RUNS/shards-2m")
  local r; r=$(logged shards 400 "$PY" "$REPO/benchmarks/shards_startup.py" "${args[@]}")
  say ""; say "## token shards vs the embedded corpus, \`benchmarks/shards_startup.py ${args[*]}\` ($r)"
  grep -E '^\|' "$OUT/shards.log" | tee -a "$SUMMARY"
}

row_124m() {
  local g2=(--vocab-size 50304 model.n_layer=12 model.n_head=12 model.n_embd=768 model.block_size=1024
            model.bias=false device=cuda precision=bf16)
  say ""; say "## GPT-2 124M shape (12L-12H-768E, block 1024, vocab 50304), bf16"
  if (( CPU )); then echo "CPU=1: nanoGPT's bench.py needs CUDA" > "$OUT/nano_bench.log"
  else nano nano_bench 150 bench.py --batch_size=12 --real_data=False --compile=True; fi
  bench g2_12 150 --steps 20 --warmup 10 "${g2[@]}" batch_size=12 compile=true cuda_graph=true
  bench g2_32 90 --steps 5 --warmup 2 "${g2[@]}" batch_size=32 compile=false
  bench g2_32_ckpt 90 --steps 5 --warmup 2 "${g2[@]}" batch_size=32 compile=false grad_checkpointing=true
  # experiment=gpt2_speedrun's model and optimizer (its shards aside: the bench corpus has no document token)
  local g2_speedrun=(--vocab-size 50304 speedrun=windows model.n_layer=12 model.n_head=6 model.n_embd=768
                     model.block_size=1024 model.bias=false model.doc_mask=false model.value_embeds=3
                     model.window_pattern=SSSL model.short_window=512 model.logit_softcap=30 model.fp8_head=true
                     optim.lr=8e-3 device=cuda precision=bf16)
  bench g2_speedrun 150 --steps 20 --warmup 10 "${g2_speedrun[@]}" batch_size=64 compile=true "${SPEEDRUN_TINY[@]}"
  local nano_ms mem mem_ckpt
  nano_ms=$("${READ[@]}" nano-bench "$OUT/nano_bench.log")
  mem=$("${READ[@]}" field "$OUT/g2_32.json" peak_memory_bytes)
  mem_ckpt=$("${READ[@]}" field "$OUT/g2_32_ckpt.json" peak_memory_bytes)
  say "| ours | nanoGPT \`bench.py\` ms (MFU of 989 TFLOP/s) | ours ms/step | tok/s | MFU | peak MiB | nanoGPT ÷ ours |"
  say "|---|---:|---:|---:|---:|---:|---:|"
  say "| batch 12, \`compile=true cuda_graph=true\` | $nano_ms ($("${READ[@]}" nano-mfu "$OUT/nano_bench.log"))" \
    "| $("${READ[@]}" ours "$OUT/g2_12.json") | $("${READ[@]}" ratio "$nano_ms" \
    "$("${READ[@]}" field "$OUT/g2_12.json" ms_per_step)") |"
  say "| batch 32, eager | | $("${READ[@]}" ours "$OUT/g2_32.json") | |"
  say "| gpt2_speedrun's model (6 heads of 128, relu2, value embeddings, U-net, SSSL windows, soft-cap, FP8 head) and Muon, batch 64, \`compile=true\` | | $("${READ[@]}" ours "$OUT/g2_speedrun.json") | |"
  say "| batch 32, eager, \`grad_checkpointing=true\` | | $("${READ[@]}" ours "$OUT/g2_32_ckpt.json")" \
    "| memory: $("${READ[@]}" ratio "$mem_ckpt" "$mem") of eager's |"
}

command_row() {  # command_row LABEL NAME CAP COMMAND...: one command of the cli row, its rc and last line
  local label=$1 name=$2 cap=$3; shift 3
  local r; r=$(logged "$name" "$cap" "$@")
  say "- $label ($r): $(last_line "$name" 'val_loss|done|rror|exported|bits_per_byte')"
}

row_cli() {
  local run=$RUNS/cli_bf16 a=200 b=300 c=100; (( CPU )) && a=10 b=15 c=5
  rm -rf "$RUNS"/cli_*
  say ""; say "## the commands' CUDA paths"
  command_row "train bf16 + fused AdamW + EMA, $a steps" cli_bf16 120 "$PY" -m tinygpt.train device=cuda \
    precision=bf16 ema_decay=0.99 max_steps=$a eval_interval=$((a / 2)) sample_interval=$a \
    hydra.run.dir="$run" "${TINY[@]}"
  command_row "resume=true to $b steps" cli_resume 120 "$PY" -m tinygpt.train device=cuda precision=bf16 \
    ema_decay=0.99 max_steps=$b eval_interval=$((a / 2)) sample_interval=0 hydra.run.dir="$run" resume=true \
    "${TINY[@]}"
  local cache
  for cache in true false; do
    capped 60 "$PY" -m tinygpt.generate run="$run" prompt=Once max_new_tokens=200 device=$DEVICE ema=true \
      seed=1 static_cache=$cache > "$OUT/cli_generate_$cache.txt" 2> "$OUT/cli_generate_$cache.log"
    say "- generate \`ema=true seed=1 static_cache=$cache\`: rc $?, $(wc -c < "$OUT/cli_generate_$cache.txt") bytes"
  done
  cmp -s "$OUT/cli_generate_true.txt" "$OUT/cli_generate_false.txt" && say "  - the same text both ways" ||
    say "  - the texts differ (see cli_generate_*.txt)"
  command_row "eval" cli_eval 60 "$PY" -m tinygpt.eval run="$run" device=$DEVICE
  command_row "export" cli_export 60 "$PY" -m tinygpt.export run="$run" out="$RUNS/cli_export"
  command_row "train fp16 + GradScaler + Muon + grad_checkpointing, $c steps" cli_fp16 120 "$PY" -m tinygpt.train \
    device=cuda precision=fp16 optim=muon grad_checkpointing=true max_steps=$c eval_interval=$c \
    hydra.run.dir="$RUNS/cli_fp16" "${TINY[@]}"
  command_row "torchrun --nproc_per_node=1 (nccl; gloo on the CPU), $c steps" cli_torchrun 120 "$PY" -m \
    torch.distributed.run --standalone --nproc_per_node=1 -m tinygpt.train device=cuda max_steps=$c \
    eval_interval=$c hydra.run.dir="$RUNS/cli_torchrun" "${TINY[@]}"
}

row_recipe() {
  say ""; say "## nanoGPT's shakespeare_char recipe: \`experiment=shakespeare_char precision=bf16 compile=true\`"
  [[ -n $SHAKESPEARE ]] || { say "not run: no tiny-shakespeare here (set SHAKESPEARE=FILE)"; return; }
  local line
  line=$(capped 180 "${TIME_TO[@]}" 0 "$OUT/recipe.log" -- "$PY" -m tinygpt.train experiment=shakespeare_char \
    data.path="$SHAKESPEARE" precision=bf16 compile=true log_interval=250 sample_interval=0 \
    hydra.run.dir="$RUNS/recipe" "${TINY[@]}" "${RUN_TINY[@]}")
  say "- the whole run: ${line:-not run (budget)}"
  say "- its last step line: $(grep -E 'tok/s' "$OUT/recipe.log" | grep -v done | tail -n 1 | unstamp)"
}

startup_phases() {  # startup_phases NAME: NAME.log's start-up line, one phase a line
  grep -o 'start-up: .*' "$OUT/$1.log" | head -n 1 | sed -E 's/^start-up: //; s/ = /\n= /; s/; /\n/; s/, /\n/g' |
    sed 's/^/    /'
}

row_startup() {
  say ""; say "## start-up: the speedrun's phases (docs/training.md#start-up), each to its end, then the first eval and sample"
  [[ -n $SHAKESPEARE ]] || { say "not run: no tiny-shakespeare here (set SHAKESPEARE=FILE)"; return; }
  local variant line
  for variant in committed compile=true; do  # the recipe, then with compilation (its cost: first step, first eval)
    local extra=(); [[ $variant == committed ]] || extra=("$variant")
    rm -rf "$RUNS/startup"
    line=$(capped 120 "${TIME_TO[@]}" 0 "$OUT/startup_${variant%=*}.log" -- "$PY" -m tinygpt.train \
      experiment=shakespeare_speedrun data.path="$SHAKESPEARE" hydra.run.dir="$RUNS/startup" "${extra[@]}" \
      "${TINY[@]}" "${RUN_TINY[@]}")
    say "- \`experiment=shakespeare_speedrun${extra[*]:+ ${extra[*]}}\`: ${line:-not run (budget)}"
    say '  ```'
    startup_phases "startup_${variant%=*}" | tee -a "$SUMMARY"
    say '  ```'
  done
}

SHAKESPEARE=${SHAKESPEARE:-}
for f in "$SHAKESPEARE" "$REPO/shared/data/tinyshakespeare.txt" "$REPO/../shared/data/tinyshakespeare.txt"; do
  [[ -f $f ]] && { SHAKESPEARE=$(realpath "$f"); break; }
done
[[ -f $SHAKESPEARE ]] || SHAKESPEARE=""
NG="" NG_WHY="NANOGPT is not set"
if [[ -n ${NANOGPT:-} ]]; then
  rm -rf "$RUNS/nanogpt"
  if PYTHON=$PY bash "$REPO/benchmarks/nanogpt_copy.sh" "$NANOGPT" "$RUNS/nanogpt" "${SHAKESPEARE:-none}" \
    2> "$OUT/nanogpt_copy.log"; then
    NG=$RUNS/nanogpt NG_WHY="nanoGPT $(git -C "$NANOGPT" rev-parse --short HEAD 2> /dev/null || echo checkout)"
  else NG_WHY=$(tail -n 1 "$OUT/nanogpt_copy.log"); fi
fi
say "# benchmarks/gpu.sh $(date -u '+%F %H:%M UTC'): ${ROWS[*]}"
say "$({ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2> /dev/null || echo "no GPU"; } | head -n 1)," \
  "$("$PY" -c 'import torch; print("torch", torch.__version__)'), $(nproc) CPU cores," \
  "tree $(git -C "$REPO" rev-parse --short HEAD 2> /dev/null || echo '(no git)'), CPU=$CPU, budget ${BUDGET_S} s," \
  "nanoGPT: $NG_WHY"
for row in "${ROWS[@]}"; do
  echo "=== $row ($(left) s of the budget left)"
  "row_$row"
done
say ""; say "total ${SECONDS} s of the ${BUDGET_S} s budget"
