"""Shipped checkpoints and the model table of ``edge-sdk info``.

Shipped models live in ``edge_sdk/assets/models/<spec name>.safetensors`` with their JSON
sidecar (spec, recipe, the metrics measured when they were trained). MACs are counted by
running the model once under ``torch.utils.flop_counter`` (MACs = FLOPs / 2 of the
convolutions and matrix products), never estimated by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

from edge_sdk.errors import ModelFileError
from edge_sdk.spec import ModelSpec, list_specs

__all__ = ["ASSETS", "shipped_models", "model_path", "resolve_model", "ship_model", "count_macs", "model_table"]

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "models"


def shipped_models() -> dict[str, Path]:
    return {p.stem: p for p in sorted(ASSETS.glob("*.safetensors"))}


def ship_model(model_path: str | Path, metrics: dict) -> Path:
    """Copy a trained checkpoint into the package assets under its spec name, with its
    training report and the metrics of ``edge-sdk eval`` in the sidecar."""
    import shutil

    from edge_sdk.checkpoint import atomic_write_text, load_model, read_sidecar

    model, meta = load_model(model_path)
    ASSETS.mkdir(parents=True, exist_ok=True)
    dest = ASSETS / f"{model.spec.name}.safetensors"
    shutil.copyfile(Path(model_path).with_suffix(".safetensors"), dest)
    meta = {**read_sidecar(model_path), "metrics": metrics, "params": sum(p.numel() for p in model.parameters()), "macs": count_macs(model)}
    meta["map_offset_px"] = metrics.get("map_offset_px", meta.get("map_offset_px"))  # what the metrics were measured with
    atomic_write_text(dest.with_suffix(".json"), json.dumps(meta, indent=2))
    return dest


def model_path(name_or_path: str) -> Path:
    """A checkpoint path or a shipped model name -> the .safetensors path."""
    path = Path(name_or_path)
    if path.suffix == ".safetensors" or path.exists():
        return path.with_suffix(".safetensors") if path.suffix == ".json" else path  # load_model refuses the rest by name
    from edge_sdk.spec import ALIASES

    shipped = shipped_models()
    name = ALIASES.get(name_or_path, name_or_path)
    if name in shipped:
        return shipped[name]
    raise ModelFileError(
        f"no model file or shipped model named {name_or_path!r}",
        f"pass a .safetensors path, or one of: {', '.join([*shipped, *ALIASES]) or '(none shipped)'}",
    )


def resolve_model(name_or_path: str):
    """A checkpoint path or a shipped model name -> (model, sidecar metadata)."""
    path = model_path(name_or_path)  # an unknown name is refused before torch loads
    from edge_sdk.checkpoint import load_model

    return load_model(path)


def count_macs(model) -> int:
    """Multiply-accumulates of one inference at batch 1 (both towers, front end included)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    shapes = model.contract.input_shapes
    wave, image = torch.zeros(1, *shapes["wave"]), torch.zeros(1, *shapes["image"])
    model.eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(wave, image)
    return counter.get_total_flops() // 2


def model_table() -> list[dict]:
    """Every registered spec: role, parameters, MACs, output shapes, and its shipped file if any.

    Without torch (a runtime-only install) nothing can be built or counted: shipped models
    report the parameters and MACs recorded in their sidecars when they were shipped, and
    every other field is None.
    """
    import importlib.util

    counted = importlib.util.find_spec("torch") is not None
    shipped = shipped_models()
    rows = []
    for spec in list_specs():
        row = {
            "name": spec.name,
            "role": spec.role,
            "params": None,
            "macs": None,
            "outputs": None,
            "path": str(shipped[spec.name]) if spec.name in shipped else None,
        }
        if counted:
            row.update(_counted(spec))
        elif row["path"]:  # edge_sdk.checkpoint needs torch; the shipped sidecars are plain JSON
            meta = json.loads(Path(row["path"]).with_suffix(".json").read_text())
            row.update(params=meta.get("params"), macs=meta.get("macs"))
        rows.append(row)
    return rows


def _counted(spec: ModelSpec) -> dict:
    import torch

    from edge_sdk.models.avnet import AVNet

    torch.manual_seed(0)
    model = AVNet(spec).eval()
    with torch.inference_mode():
        shapes = spec.input_shapes
        out = model(torch.zeros(1, *shapes["wave"]), torch.zeros(1, *shapes["image"]))
    return {"params": sum(p.numel() for p in model.parameters()), "macs": count_macs(model), "outputs": {k: list(v.shape) for k, v in out.items()}}
