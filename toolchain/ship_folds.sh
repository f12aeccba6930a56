#!/usr/bin/env bash
# Ship speaker folds trained by `edge-sdk folds --out DIR` (each speaker held out in turn) and
# measure them: copies DIR/<speaker>/<spec>.{safetensors,json} into edge_sdk/assets/folds/<speaker>/,
# where `edge-sdk eval SPEC --folds` and tests/test_targets.py find them, then evaluates every fold
# of each spec (DIR/eval_<spec>.json: every fold, the mean and the worst).
#   usage: bash toolchain/ship_folds.sh DIR SPEC [SPEC...]
# Localization (teacher in two stages, then both students; about 4 h a fold on 2 AVX2 cores, resumable):
#   .venv/bin/edge-sdk folds --out runs/folds --speakers jackson,nicolas,yweweler --precision fp32
#   bash toolchain/ship_folds.sh runs/folds avnet_t.avdigits avnet_s.avdigits avnet_xs.avdigits
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: $0 DIR SPEC [SPEC...]" >&2; exit 2; }
dir=$1
shift
shipped=0
for fold in "$dir"/*/; do
  speaker=$(basename "$fold")
  for spec in "$@"; do
    [ -f "$fold/$spec.safetensors" ] || continue
    dest="edge_sdk/assets/folds/$speaker/$spec"
    mkdir -p "$(dirname "$dest")"
    for suffix in json safetensors; do  # the sidecar first: a model file beside its sidecar means whole
      cp "$fold/$spec.$suffix" "$dest.$suffix.tmp" && mv "$dest.$suffix.tmp" "$dest.$suffix"
    done
    shipped=$((shipped + 1))
  done
done
[ "$shipped" -gt 0 ] || { echo "$0: no fold model of $* in $dir (train them with edge-sdk folds --out $dir)" >&2; exit 1; }
for spec in "$@"; do
  .venv/bin/edge-sdk eval "$spec" --folds --json "$dir/eval_${spec%%.*}.json"
done
