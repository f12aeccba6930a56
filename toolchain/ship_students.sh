#!/usr/bin/env bash
# Distil, evaluate, quantize and ship the students (the documented commands of issue 3).
# Each distillation is one command; each quantize run writes a bundle folder with
# report.json / report.md, copied to docs/reports/. Runs resume where they stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d runs/calib ] || .venv/bin/edge-sdk calib --out runs/calib --n 256
for size in s xs; do
  run=runs/student_$size
  resume=(); [ -f $run/checkpoints/last.json ] && resume=(--resume)
  [ -f $run/model.safetensors ] || .venv/bin/edge-sdk distill --student student_$size --recipe distill_$size --out $run "${resume[@]}"
  .venv/bin/edge-sdk eval $run/model.safetensors --json $run/eval.json --heatmaps $run/eval_heatmaps.png
  .venv/bin/python -c "import json, sys; from edge_sdk.models.shipped import ship_model; print(ship_model(sys.argv[1], json.load(open(sys.argv[2]))))" $run/model.safetensors $run/eval.json
  rm -rf $run/int8
  .venv/bin/edge-sdk quantize $run/model.safetensors --target all --calib runs/calib --out $run/int8
  mkdir -p docs/reports
  cp $run/int8/report.md docs/reports/student_$size.quantize.md
  cp $run/int8/report.json docs/reports/student_$size.quantize.json
done
