#!/usr/bin/env bash
# Train, evaluate and ship the teacher into edge_sdk/assets/models/ (the documented command).
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-runs/teacher}
resume=(); [ -f $run/checkpoints/last.json ] && resume=(--resume)
[ -f $run/model.safetensors ] || .venv/bin/edge-sdk pretrain --recipe teacher --out $run "${resume[@]}"
.venv/bin/edge-sdk eval $run/model.safetensors --json $run/eval.json --heatmaps $run/eval_heatmaps.png
.venv/bin/python -c "import json, sys; from edge_sdk.models.shipped import ship_model; print(ship_model(sys.argv[1], json.load(open(sys.argv[2]))))" $run/model.safetensors $run/eval.json
