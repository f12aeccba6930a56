#!/usr/bin/env bash
# Build the default demo bundle from the shipped student_s checkpoint (ONNX FP32 + INT8,
# ExecuTorch INT8, the PyTorch weights), validated on real AV-Digits scenes, then benchmark
# it against ONNX Runtime FP32, PyTorch eager and the eager teacher in one run.
# Output: edge_sdk/assets/bundles/avnet_s-demo (shipped), docs/reports/export_student_s.md and
# docs/reports/bench.{md,json,png}.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=edge_sdk/assets/bundles/avnet_s-demo
[ -d runs/calib ] || .venv/bin/edge-sdk calib --out runs/calib --n 256
rm -rf "$bundle"
.venv/bin/edge-sdk export student_s --format onnx,executorch --precision fp32,int8 --calib runs/calib --out "$bundle" --name avnet_s-demo
mkdir -p docs/reports
cp "$bundle/report.md" docs/reports/export_student_s.md
.venv/bin/edge-sdk bench "$bundle" --json docs/reports/bench.json --md docs/reports/bench.md --png docs/reports/bench.png
du -sh "$bundle"
