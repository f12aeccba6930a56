#!/usr/bin/env bash
# The main job end to end on the embedded default: set up, show the machine, list the
# shipped models, and evaluate the shipped teacher on held-out AV-Digits scenes (real
# FSDD+MNIST from ../shared/data when present, generated data otherwise). No camera or GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash toolchain/setup.sh
mkdir -p runs/quickstart
.venv/bin/edge-sdk doctor
.venv/bin/edge-sdk info
.venv/bin/edge-sdk eval avnet_t.avdigits --scenes 200 --json runs/quickstart/eval.json --heatmaps runs/quickstart/heatmaps.png
echo "quickstart: metrics in runs/quickstart/eval.json, heatmaps in runs/quickstart/heatmaps.png"
