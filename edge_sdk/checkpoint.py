"""Checkpoints: tensors in safetensors, everything else in a JSON sidecar. Never pickles.

A model file ``X.safetensors`` has ``X.json`` beside it holding the spec (with its
preprocessing), the recipe and any metrics. Writes are atomic (temp file + rename), so a
process killed mid-write never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from edge_sdk.errors import ModelFileError
from edge_sdk.spec import ModelSpec

__all__ = ["save_model", "load_model", "read_sidecar", "atomic_write_text", "save_tensors", "load_tensors"]

FORMAT = "edge_sdk.model/1"


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{path}: not a readable safetensors file ({e})", "the file is truncated or corrupt: re-download or re-train it") from None


def save_model(path: str | Path, model: torch.nn.Module, recipe: dict | None = None, extra: dict | None = None) -> Path:
    """Write ``path`` (.safetensors) and its ``.json`` sidecar; returns the weights path."""
    path = Path(path).with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_tensors(path, model.state_dict())
    meta = {"format": FORMAT, "spec": model.spec.to_dict(), "recipe": recipe, **(extra or {})}
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2))
    return path


def read_sidecar(path: str | Path) -> dict:
    side = Path(path).with_suffix(".json")
    if not side.is_file():
        raise ModelFileError(f"{side} is missing", f"a model file needs its JSON sidecar (spec and recipe) beside it: {side.name}")
    try:
        meta = json.loads(side.read_text())
    except json.JSONDecodeError as e:
        raise ModelFileError(f"{side}: not valid JSON ({e})", "restore the sidecar from the run folder") from None
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{side}: format {meta.get('format')!r}, expected {FORMAT!r}", "this is not an edge_sdk model sidecar")
    return meta


def load_model(path: str | Path, spec: ModelSpec | None = None):
    """Build the model its sidecar describes and load the weights; check they match the spec."""
    from edge_sdk.models.avnet import AVNet

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist", "pass a .safetensors checkpoint or a shipped model name (edge-sdk info)")
    meta = read_sidecar(path)
    file_spec = ModelSpec.from_dict(meta["spec"])
    if spec is not None and spec.to_dict() != file_spec.to_dict():
        raise ModelFileError(f"{path} was trained for spec {file_spec.name}, not {spec.name}", f"load it with spec {file_spec.name}, or use a checkpoint of {spec.name}")
    model = AVNet(file_spec)
    state = load_tensors(path)
    want = model.state_dict()
    missing = sorted(set(want) - set(state))
    shapes = [k for k in want if k in state and want[k].shape != state[k].shape]
    if missing or shapes:
        raise ModelFileError(f"{path} does not match spec {file_spec.name}: missing {missing[:3]}, wrong shapes {shapes[:3]}",
                             "the weights belong to another spec or are damaged: use the checkpoint its sidecar was written with")
    model.load_state_dict({k: state[k] for k in want})
    model.eval()
    return model, meta
