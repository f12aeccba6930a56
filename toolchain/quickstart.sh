#!/usr/bin/env bash
# The main job end to end on the embedded default: set up, show the machine, list the
# shipped models and bundles, evaluate the shipped teacher on held-out AV-Digits scenes
# (real FSDD+MNIST from ../shared/data when present, generated data otherwise), and
# benchmark the shipped demo bundle across its backends, and run the live localization demo
# headless for 10 s (on generated scenes where there is no camera). No camera or GPU needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash toolchain/setup.sh
mkdir -p runs/quickstart
.venv/bin/edge-sdk doctor
.venv/bin/edge-sdk info
.venv/bin/edge-sdk eval avnet_t.avdigits --scenes 200 --json runs/quickstart/eval.json --heatmaps runs/quickstart/heatmaps.png
.venv/bin/edge-sdk bench edge_sdk/assets/bundles/avnet_s-demo --scenes 100 --seconds 0.5 --md runs/quickstart/bench.md --png runs/quickstart/bench.png
.venv/bin/edge-sdk demo localize --headless --max-seconds 10 --out runs/quickstart/demo --quiet
echo "quickstart: metrics in runs/quickstart/eval.json, heatmaps in runs/quickstart/heatmaps.png, benchmark in runs/quickstart/bench.md, demo in runs/quickstart/demo/localize"
