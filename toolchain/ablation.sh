#!/usr/bin/env bash
# The objectives side by side: the teacher's data, curriculum and schedule, shortened to
# EPOCHS epochs, with each objective alone and the teacher's multi-task mix; every run is
# evaluated on the same 500 held-out scenes, beside the shipped teacher (the full schedule).
# Writes runs/ablation/table.md.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-8}
out=runs/ablation
mkdir -p $out
for r in ablation_avc ablation_mil_nce ablation_infonce teacher; do
  [ -f $out/$r/model.safetensors ] || .venv/bin/edge-sdk pretrain --recipe $r --epochs "$EPOCHS" --out $out/$r --quiet --resume
  [ -f $out/$r/eval.json ] || .venv/bin/edge-sdk eval $out/$r/model.safetensors --json $out/$r/eval.json
done
.venv/bin/python - "$out" <<'PY'
import json, sys
from pathlib import Path
from edge_sdk.eval.evaluate import format_table
out = Path(sys.argv[1])
rows = {}
for r in ("ablation_avc", "ablation_mil_nce", "ablation_infonce", "teacher"):
    res = json.loads((out / r / "eval.json").read_text())
    train = json.loads((out / r / "model.json").read_text())["train"]
    rows[f"{r} ({train['steps']} steps)"] = res
shipped = Path("edge_sdk/assets/models/avnet_t.avdigits.json")  # the teacher recipe at its full schedule
if shipped.exists():
    meta = json.loads(shipped.read_text())
    rows[f"shipped teacher ({meta['train']['steps']} steps)"] = meta["metrics"]
(out / "table.md").write_text(format_table(rows) + "\n")
print(format_table(rows))
PY
