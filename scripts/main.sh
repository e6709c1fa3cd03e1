#!/usr/bin/env bash
# The main job: creates/uses .venv, installs seqkit, trains a small char-LM on the
# built-in corpus (the Python standard library's sources), generates from it, evaluates it,
# and exports it to saved_models/NAME/VERSION (serve it with: .venv/bin/seqkit serve).
# Usage: bash scripts/main.sh            (RUN_DIR=runs/NAME to choose the run directory)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv "."
run_dir="${RUN_DIR:-runs/demo-$(date +%Y%m%d-%H%M%S)}"
seqkit=.venv/bin/seqkit

echo "== train: 1-layer 256-unit LSTM, 1200 steps on the default corpus -> $run_dir"
"$seqkit" train char-lm --cell lstm --units 256 --layers 1 --seq-len 100 --batch-size 64 \
    --steps 1200 --steps-per-epoch 200 --seed 0 --out "$run_dir"

echo "== generate: 600 characters, prime 'def ', temperature 0.7"
"$seqkit" generate "$run_dir" --prime "def " --length 600 --temperature 0.7 --seed 0

echo "== evaluate on seqkit's own source (held-out Python)"
"$seqkit" evaluate "$run_dir" --data seqkit/training/step.py

echo "== export: SavedModel in TF Serving's layout"
"$seqkit" export "$run_dir" --name "${MODEL_NAME:-char_lm}" --out saved_models
