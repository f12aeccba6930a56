#!/usr/bin/env bash
# Objectives side by side: each recipe in RECIPES trained for the same number of steps (its
# own schedule, or EPOCHS epochs when EPOCHS > 0; never cut by time), evaluated on the same
# 500 held-out scenes (speakers and images never trained on), beside the shipped teacher.
# Writes $OUT/table.md. Runs resume where they stopped.
#   bash toolchain/ablation.sh                                                       # objectives alone, 8 epochs
#   RECIPES="teacher ablation_av_mae ablation_clusters" EPOCHS=0 OUT=runs/ablation_full bash toolchain/ablation.sh
# PRECISION=fp32 overrides the recipes' precision (bf16 autocast is several times slower on CPUs
# without AMX or AVX512-BF16); every row of one table runs at the same precision.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-8}
RECIPES=${RECIPES:-"ablation_avc ablation_mil_nce ablation_infonce teacher"}
out=${OUT:-runs/ablation}
mkdir -p "$out"
for r in $RECIPES; do
  epochs=(); [ "$EPOCHS" -gt 0 ] && epochs=(--epochs "$EPOCHS")
  [ -n "${PRECISION:-}" ] && epochs+=(--precision "$PRECISION")
  resume=(); [ -f "$out/$r/checkpoints/last.json" ] && resume=(--resume)
  [ -f "$out/$r/model.safetensors" ] || .venv/bin/edge-sdk pretrain --recipe "$r" "${epochs[@]}" --max-minutes 100000 --out "$out/$r" --quiet "${resume[@]}"
  [ -f "$out/$r/eval.json" ] || .venv/bin/edge-sdk eval "$out/$r/model.safetensors" --json "$out/$r/eval.json"
done
# the shipped teacher (the teacher recipe at its full schedule) through the same evaluation,
# so its row has every metric of this release (its sidecar's metrics predate some of them)
[ -f "$out/shipped_teacher.eval.json" ] || .venv/bin/edge-sdk eval avnet_t.avdigits --json "$out/shipped_teacher.eval.json"
.venv/bin/python - "$out" $RECIPES <<'PY'
import json, sys
from pathlib import Path
from edge_sdk.eval.evaluate import format_table
out, recipes = Path(sys.argv[1]), sys.argv[2:]
rows = {}
for r in recipes:
    res = json.loads((out / r / "eval.json").read_text())
    train = json.loads((out / r / "model.json").read_text())["train"]
    rows[f"{r} ({train['steps']} steps, {train.get('minutes', 0):.1f} min)"] = res
meta = json.loads(Path("edge_sdk/assets/models/avnet_t.avdigits.json").read_text())
steps = f"{meta['base']['train']['steps']} + {meta['train']['steps']}" if "base" in meta else meta["train"]["steps"]  # a fine-tuned teacher: both stages
rows[f"shipped teacher ({steps} steps)"] = json.loads((out / "shipped_teacher.eval.json").read_text())
(out / "table.md").write_text(format_table(rows) + "\n")
print(format_table(rows))
PY
