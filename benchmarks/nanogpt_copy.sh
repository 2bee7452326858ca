#!/usr/bin/env bash
# A working copy of nanoGPT for the side-by-side benchmarks (vs_nanogpt.sh, gpu.sh), made from a checkout
# that is only read (nanoGPT's code is never part of this repository):
#   bash benchmarks/nanogpt_copy.sh NANOGPT_DIR DEST TINYSHAKESPEARE_TXT      # PYTHON: default python
# DEST gets nanoGPT's code (not its data: a checkout may hold GBs of openwebtext), the given
# tiny-shakespeare as data/shakespeare_char/input.txt, prepared by nanoGPT's own prepare.py (nothing is
# downloaded), and a stub module beside the scripts for each of `requests` and `tiktoken` that is not
# installed: prepare.py and sample.py import them at the top but never use them for local char data.
# Run nanoGPT's scripts from DEST. Exits 2 with one line when NANOGPT_DIR is not a nanoGPT checkout.
set -euo pipefail
die() { echo "error: $*" >&2; exit 2; }
[[ $# -eq 3 ]] || die "usage: $0 NANOGPT_DIR DEST TINYSHAKESPEARE_TXT"
SRC=$1 DEST=$2 TEXT=$3 PY=${PYTHON:-python}
[[ -d $SRC ]] || die "no directory '$SRC': pass a checkout of karpathy/nanoGPT"
for f in train.py sample.py bench.py model.py configurator.py config/train_shakespeare_char.py \
  data/shakespeare_char/prepare.py; do
  [[ -f $SRC/$f ]] || die "'$SRC' is not a nanoGPT checkout (no $f)"
done
[[ -f $TEXT ]] || die "no tiny-shakespeare at '$TEXT' (set SHAKESPEARE=FILE)"
mkdir -p "$DEST/data/shakespeare_char"
cp "$SRC"/*.py "$DEST/" && cp -r "$SRC/config" "$DEST/"
cp "$SRC/data/shakespeare_char/prepare.py" "$DEST/data/shakespeare_char/"
cp "$TEXT" "$DEST/data/shakespeare_char/input.txt"
for mod in requests tiktoken; do
  "$PY" -c "import $mod" 2> /dev/null ||
    echo "def __getattr__(name): raise ImportError('$mod is not installed (stub from nanogpt_copy.sh)')" \
      > "$DEST/$mod.py"
done
(cd "$DEST" && PYTHONPATH="$DEST${PYTHONPATH:+:$PYTHONPATH}" "$PY" data/shakespeare_char/prepare.py > /dev/null)
