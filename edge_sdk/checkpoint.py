"""Checkpoints: tensors in safetensors, everything else in a JSON sidecar. Never pickles.

A model file ``X.safetensors`` has ``X.json`` beside it holding the spec (with its
preprocessing), the recipe and any metrics. The weights file also stores the spec it was
saved with in its safetensors metadata, so a sidecar edited later (a sample rate, the mel
range, the normalisation: changes that leave every tensor shape intact) is refused on load
instead of silently degrading the model. Writes are atomic (temp file + rename), so a
process killed mid-write never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from edge_sdk.bundle import MANIFEST
from edge_sdk.errors import ConfigError, ModelFileError
from edge_sdk.jsonfile import read_json
from edge_sdk.outputs import atomic_path, atomic_write_text, writing
from edge_sdk.spec import ModelSpec

__all__ = ["save_model", "load_model", "read_sidecar", "atomic_write_text", "save_tensors", "load_tensors"]

log = logging.getLogger(__name__)
_UMASK = os.umask(0o022)  # read once (umask can only be read by setting it), restored at once
os.umask(_UMASK)

FORMAT = "edge_sdk.model/1"
SPEC_KEY = "edge_sdk.spec"  # safetensors metadata: the spec's JSON, as the weights were saved


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], spec: ModelSpec | None = None) -> None:
    """Write ``tensors`` atomically (a full disk or a read-only folder: one EdgeSDKError line, no
    partial file); with ``spec``, store it in the file's metadata for :func:`load_model` to check."""
    metadata = {SPEC_KEY: json.dumps(spec.to_dict())} if spec is not None else None
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        os.chmod(tmp, 0o666 & ~_UMASK)  # safetensors creates its files 0600: a bundle must be readable by the app's user too


def _load(path: Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    """Tensors of a safetensors file and the spec dict stored with them (None if none was);
    refuses NaN or inf in any float tensor."""
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = f.keys()  # a safetensors handle, not a dict
            tensors, metadata = {k: f.get_tensor(k) for k in keys}, f.metadata() or {}
        stored = json.loads(metadata[SPEC_KEY]) if SPEC_KEY in metadata else None
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(
            f"{path}: not a readable safetensors file ({e})", "the file is truncated or corrupt: re-download or re-train it"
        ) from None
    bad = next((k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise ModelFileError(
            f"{path}: tensor {bad!r} holds NaN or inf values",
            "the file is damaged or training diverged: use an earlier checkpoint, or re-train with a lower lr",
        )
    return tensors, stored


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    return _load(path)[0]


def save_model(path: str | Path, model: torch.nn.Module, recipe: dict | None = None, extra: dict | None = None) -> Path:
    """Write ``path`` (.safetensors, with the spec in its metadata) and its ``.json`` sidecar; returns the weights path."""
    path = Path(path).with_suffix(".safetensors")
    with writing(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
    save_tensors(path, model.state_dict(), model.spec)
    meta = {"format": FORMAT, "spec": model.spec.to_dict(), "recipe": recipe, **(extra or {})}
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2))
    return path


def read_sidecar(path: str | Path) -> dict:
    side = Path(path).with_suffix(".json")
    if not side.is_file():
        raise ModelFileError(f"{side} is missing", f"a model file needs its JSON sidecar (spec and recipe) beside it: {side.name}")
    meta = read_json(side, "model sidecar", fix="restore the sidecar from the run folder")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        what = f"format {meta.get('format')!r}, expected {FORMAT!r}" if isinstance(meta, dict) else f"a JSON {type(meta).__name__}, not an object"
        raise ModelFileError(f"{side}: {what}", "this is not an edge_sdk model sidecar: restore it from the run folder")
    if "spec" not in meta:
        raise ModelFileError(f'{side} has no "spec"', "restore the sidecar from the run folder")
    return meta


def _spec(source: Path, d) -> ModelSpec:
    try:
        return ModelSpec.from_dict(d)
    except ConfigError as e:
        raise ModelFileError(f"{source}: {e.problem}", "restore it from the run folder, or re-train") from None


def load_model(path: str | Path, spec: ModelSpec | None = None):
    """Build the model its sidecar describes and load the weights; check they match the spec.

    The sidecar's spec is compared with the one stored in the weights' metadata; files
    saved before specs were stored there are compared with the registered spec of the same
    name, on the preprocessing (see :meth:`ModelSpec.drift`).
    """
    from edge_sdk.models.avnet import AVNet

    path = Path(path)
    side = path.with_suffix(".json")
    if (path.parent / MANIFEST).is_file() and (side.name == MANIFEST or not side.is_file()):
        raise ModelFileError(f"{path} is one file of a bundle", f"pass the bundle folder {path.parent}")
    if (path / MANIFEST).is_file():
        raise ModelFileError(
            f"{path} is a bundle, not a checkpoint", "pass the .safetensors checkpoint it was exported from (edge-sdk eval and info take bundles)"
        )
    if path.is_dir():
        inside = path / "model.safetensors"
        raise ModelFileError(
            f"{path} is a folder, not a checkpoint",
            f"pass {inside}" if inside.is_file() else "pass a .safetensors checkpoint (a run folder has model.safetensors)",
        )
    if path.is_file() and path.suffix not in (".safetensors", ".json"):
        raise ModelFileError(
            f"{path} is not a safetensors checkpoint",
            "edge_sdk loads .safetensors weights with a .json sidecar, never pickles: save_model(path, model) writes both",
        )
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist", "pass a .safetensors checkpoint or a shipped model name (edge-sdk info)")
    if side.is_file():
        meta = read_sidecar(path)
        file_spec = _spec(side, meta["spec"])
        state, stored = _load(path)
        saved = _spec(path, stored) if stored is not None else None
        drift = file_spec.drift(saved)
        if drift:
            against = "the spec saved with the weights" if saved else f"the registered {file_spec.name}"
            raise ModelFileError(
                f"{path} does not match spec {file_spec.name} in its sidecar {side.name} (sidecar != {against}): {'; '.join(drift[:5])}",
                f"restore {side.name} as it was written: changed preprocessing needs a retrained model",
            )
    else:  # a bundle's model.safetensors copied out alone: the spec saved with the weights is enough
        state, stored = _load(path)
        if stored is None:
            raise ModelFileError(
                f"{side} is missing, and {path.name} stores no spec of its own",
                f"a model file needs its JSON sidecar (spec and recipe) beside it: {side.name}",
            )
        file_spec, meta = _spec(path, stored), {"format": FORMAT, "spec": stored}
        log.info("%s: no sidecar %s; using the spec saved in the weights (%s), without recipe or metrics", path, side.name, file_spec.name)
    if spec is not None and spec.to_dict() != file_spec.to_dict():
        raise ModelFileError(
            f"{path} was trained for spec {file_spec.name}, not {spec.name}",
            f"load it with spec {file_spec.name}, or use a checkpoint of {spec.name}",
        )
    model = AVNet(file_spec)
    want = model.state_dict()
    missing = sorted(set(want) - set(state))
    shapes = [k for k in want if k in state and want[k].shape != state[k].shape]
    if missing or shapes:
        raise ModelFileError(
            f"{path} does not match spec {file_spec.name}: missing {missing[:3]}, wrong shapes {shapes[:3]}",
            "the weights belong to another spec or are damaged: use the checkpoint its sidecar was written with",
        )
    model.load_state_dict({k: state[k] for k in want})
    model.eval()
    offset = meta.get("map_offset_px")
    if isinstance(offset, (list, tuple)) and len(offset) == 2:  # where the trained map's cells answer: part of its contract
        model.map_offset = (float(offset[0]), float(offset[1]))
    return model, meta
