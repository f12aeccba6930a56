#!/usr/bin/env bash
# Train, evaluate and ship the teacher into edge_sdk/assets/models/ (the documented commands):
# the teacher recipe, then its AV-MAE fine-tune (recipe teacher_finetune) from those weights.
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-runs/teacher}
ft=${run}_ft
resume() { [ -f "$1/checkpoints/last.json" ] && echo --resume || true; }
[ -f $run/model.safetensors ] || .venv/bin/edge-sdk pretrain --recipe teacher --out $run $(resume $run)
[ -f $ft/model.safetensors ] || .venv/bin/edge-sdk pretrain --recipe teacher_finetune --init $run/model.safetensors --out $ft $(resume $ft)
.venv/bin/edge-sdk eval $ft/model.safetensors --json $ft/eval.json --heatmaps $ft/eval_heatmaps.png
.venv/bin/python -c "import json, sys; from edge_sdk.models.shipped import ship_model; print(ship_model(sys.argv[1], json.load(open(sys.argv[2]))))" $ft/model.safetensors $ft/eval.json
