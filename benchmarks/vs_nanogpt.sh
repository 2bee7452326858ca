#!/usr/bin/env bash
# TinyGPT vs nanoGPT on one machine, the two programs alternating: the whole training command (its
# step time, wall time and share of the matmul peak) and sampling; prints a markdown table
# (benchmarks/RESULTS.md, "TinyGPT vs nanoGPT"). nanoGPT's code is never part of this repository: pass a
# checkout (benchmarks/nanogpt_copy.sh makes the working copy).
#
#   bash benchmarks/vs_nanogpt.sh NANOGPT_DIR [--device cpu|cuda] [--steps N] [--rounds R]
#
# Rows: whole training program (default model, char tiny-shakespeare, both programs' own step logs):
# on the CPU nanoGPT in fp32 (its only CPU precision) against TinyGPT at its default precision (auto:
# bf16 on CPUs with bf16 matrix instructions) and again against TinyGPT in fp32; sampling 500 tokens at
# batch 1 from those runs; with --device cuda also the GPT-2 124M shape and
# the bare step (nanoGPT's bench.py vs `python -m tinygpt.bench`, where that command exists).
# Env: SHAKESPEARE (a local tinyshakespeare.txt; default ../shared/data/tinyshakespeare.txt), PYTHON
# (default python; torch and numpy for nanoGPT, tinygpt's dependencies). The table is printed last and
# kept as table.md in the work directory named on its last line, beside every log.
set -euo pipefail

usage() { echo "usage: $0 NANOGPT_DIR [--device cpu|cuda] [--steps N] [--rounds R]" >&2; exit 2; }
die() { echo "error: $*" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
ARGS="$*" NG_SRC=$1 DEVICE=cpu STEPS="" ROUNDS=2
shift
while [[ $# -gt 0 ]]; do
  case $1 in
    --device) DEVICE=${2:?--device needs cpu or cuda}; shift 2 ;;
    --steps) STEPS=${2:?--steps needs a number}; shift 2 ;;
    --rounds) ROUNDS=${2:?--rounds needs a number}; shift 2 ;;
    *) usage ;;
  esac
done
[[ $DEVICE == cpu || $DEVICE == cuda ]] || usage
SHAKESPEARE=${SHAKESPEARE:-../shared/data/tinyshakespeare.txt}
[[ -f $SHAKESPEARE ]] || die "no tiny-shakespeare at '$SHAKESPEARE' (set SHAKESPEARE=FILE)"
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python}
[[ $PY != */* ]] || PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"  # a relative path works from any dir
HELPER=$REPO/benchmarks/vs_nanogpt.py
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vs_nanogpt.XXXXXX")
NG=$WORK/nanogpt
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" TINYGPT_CACHE=$WORK/cache PYTHONUNBUFFERED=1

PYTHON=$PY bash "$REPO/benchmarks/nanogpt_copy.sh" "$NG_SRC" "$NG" "$SHAKESPEARE"
SHAKESPEARE=$(realpath "$SHAKESPEARE")
in_ng() { (cd "$NG" && "$PY" "$@"); }
timed() {  # timed ROW PROGRAM ROUND LOG COMMAND...: run it, append its wall seconds to wall.tsv
  local row=$1 prog=$2 rnd=$3 log=$4 start=$EPOCHREALTIME
  shift 4
  echo "[$(date +%T)] $row, $prog, round $rnd" >&2
  "$@" > "$log" 2>&1 || { echo "error: $prog failed, see $log:" >&2; tail -n 5 "$log" >&2; return 1; }
  awk -v r="$row" -v p="$prog" -v n="$rnd" -v a="$start" -v b="$EPOCHREALTIME" \
    'BEGIN { printf "%s\t%s\t%s\t%.2f\n", r, p, n, b - a }' >> "$WORK/wall.tsv"
}

train_row() {  # NAME N_LAYER N_HEAD N_EMBD BLOCK BATCH STEPS [TINYGPT OVERRIDES...]; NG_OPTS / TG_OPTS
  local name=$1 l=$2 h=$3 e=$4 t=$5 b=$6 n=$7 r
  shift 7
  local row_opts=("${TG_OPTS[@]}" "$@")
  mkdir -p "$WORK/$name"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$l" "$e" "$t" "$b" "$n" >> "$WORK/rows.tsv"
  for ((r = 1; r <= ROUNDS; r++)); do
    timed "$name" ng "$r" "$WORK/$name/ng_$r.log" in_ng train.py config/train_shakespeare_char.py \
      --device="$DEVICE" --n_layer="$l" --n_head="$h" --n_embd="$e" --block_size="$t" --batch_size="$b" \
      --dropout=0.0 --max_iters="$n" --lr_decay_iters="$n" --eval_interval="$n" --eval_iters=20 \
      --log_interval="$LOG_EVERY" --always_save_checkpoint=True --out_dir="$WORK/$name/ng_$r" "${NG_OPTS[@]}"
    timed "$name" tg "$r" "$WORK/$name/tg_$r.log" "$PY" -m tinygpt.train data=shakespeare_char \
      data.path="$SHAKESPEARE" model.n_layer="$l" model.n_head="$h" model.n_embd="$e" model.block_size="$t" \
      model.bias=false model.dropout=0.0 batch_size="$b" optim.lr=1e-3 'optim.betas=[0.9,0.99]' \
      max_steps="$n" eval_interval="$n" eval_iters=20 log_interval="$LOG_EVERY" sample_interval=0 \
      device="$DEVICE" hydra.run.dir="$WORK/$name/tg_$r" "${row_opts[@]}"
  done
}

sample_rows() {  # batch 1 from round 1's default-model runs; a 1-token run measures the startup
  local r n
  echo 500 > "$WORK/sample_tokens"
  for ((r = 1; r <= ROUNDS; r++)); do
    for n in 500 1; do
      timed "sample_$n" ng "$r" "$WORK/sample_ng_${n}_$r.txt" in_ng sample.py --out_dir="$WORK/default/ng_1" \
        --device="$DEVICE" --num_samples=1 --max_new_tokens="$n" --compile=False --dtype="$NG_DTYPE"
      timed "sample_$n" tg "$r" "$WORK/sample_tg_${n}_$r.txt" "$PY" -m tinygpt.generate \
        run="$WORK/default/tg_1" max_new_tokens="$n" device="$DEVICE" temperature=0.8 top_k=200 seed=1337
    done
  done
}

bench_row() {  # nanoGPT's bench.py: CUDA only (torch.cuda.synchronize), GPT-2 124M shape, batch 12 x 1024
  mkdir -p "$WORK/bench"
  if [[ $DEVICE != cuda ]]; then
    echo "skipped on the CPU (nanoGPT's bench.py calls torch.cuda.synchronize)" > "$WORK/bench/skipped"
  elif ! "$PY" -m tinygpt.bench --help > /dev/null 2>&1; then
    echo "skipped: this TinyGPT has no 'python -m tinygpt.bench'" > "$WORK/bench/skipped"
  elif ! { timed bench ng 1 "$WORK/bench/ng.log" in_ng bench.py --device=cuda --real_data=False --dtype=bfloat16 &&
    timed bench tg 1 "$WORK/bench/tg.log" "$PY" -m tinygpt.bench model.n_layer=12 model.n_head=12 \
      model.n_embd=768 model.block_size=1024 model.bias=false batch_size=12 precision=bf16 compile=true device=cuda; }; then
    echo "failed: see $WORK/bench/*.log" > "$WORK/bench/skipped"
  fi
}

peaks() { for p in fp32 bf16; do echo "--peak $p=$("$PY" "$HELPER" peak --device "$DEVICE" --precision $p)"; done; }
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
PEAKS_BEFORE=$(peaks)
if [[ $DEVICE == cpu ]]; then
  MACHINE=$(lscpu | sed -n 's/^Model name: *//p')
  NG_PRECISION=fp32 LOG_EVERY=1 NG_DTYPE=float32 NG_OPTS=(--compile=False --dtype=float32) TG_OPTS=(compile=false)
  train_row default 4 4 128 128 64 "${STEPS:-80}"  # TinyGPT's default precision (auto)
  train_row default-fp32 4 4 128 128 64 "${STEPS:-80}" precision=fp32
  sample_rows
else  # nanoGPT's defaults on a GPU: bf16 autocast, torch.compile
  MACHINE=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)
  NG_PRECISION=bf16 LOG_EVERY=10 NG_DTYPE=bfloat16 NG_OPTS=(--dtype=bfloat16) TG_OPTS=(precision=bf16 compile=true)
  train_row default 4 4 128 128 64 "${STEPS:-1000}"
  sample_rows
  train_row gpt2-124M-shape 12 12 768 1024 12 300
fi
bench_row
{
  echo "command: benchmarks/vs_nanogpt.sh $ARGS  # nanoGPT $(git -C "$NG_SRC" rev-parse --short HEAD 2> /dev/null || echo checkout)"
  echo "date: $(date +%F); machine: $MACHINE; $("$PY" -c 'import torch; print("torch", torch.__version__, "threads", torch.get_num_threads())')"
  echo "load average before $LOAD_BEFORE, after $(cut -d' ' -f1-3 /proc/loadavg)"
  # shellcheck disable=SC2046  # the peaks are "--peak PRECISION=FLOPS" words
  "$PY" "$HELPER" table "$WORK" $PEAKS_BEFORE $(peaks) --ng-precision "$NG_PRECISION" --text "$SHAKESPEARE"
  echo "logs: $WORK"
} | tee "$WORK/table.md"
