"""Bundles: a folder of model files (one per tower, backend and precision) and a
``manifest.json`` that says what each file is and proves it is unchanged.

The manifest holds the schema version, the model spec with its preprocessing, each
artifact's tower, format, backend, precision, input/output names and sha256, the library
versions that produced it, the calibration-data hash and the metrics measured when it was
written. Reading a bundle checks the schema and every hash; no pickle is ever loaded.
Torch-free: the runtime reads bundles without it.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

from edge_sdk.errors import ModelFileError
from edge_sdk.spec import ModelSpec

__all__ = ["SCHEMA", "MANIFEST", "Bundle", "sha256_file", "library_versions", "write_manifest", "read_bundle"]

SCHEMA = 1
MANIFEST = "manifest.json"
_LIBS = ("torch", "onnx", "onnxruntime", "executorch", "torchao", "nvidia-modelopt", "tensorrt", "numpy")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    out = {}
    for lib in _LIBS:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            pass
    return out


def write_manifest(folder: str | Path, spec: ModelSpec, artifacts: list[dict], **fields) -> Path:
    """Hash every artifact in ``folder`` and write the manifest (atomically)."""
    folder = Path(folder)
    arts = [{**a, "sha256": sha256_file(folder / a["file"]), "bytes": (folder / a["file"]).stat().st_size} for a in artifacts]
    manifest = {"schema": SCHEMA, "kind": "edge_sdk.bundle", "spec": spec.to_dict(), "artifacts": arts,
                "versions": library_versions(), **fields}
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(folder / MANIFEST)
    return folder / MANIFEST


class Bundle:
    """A verified bundle folder: ``spec``, ``manifest`` and :meth:`find` for its artifacts."""

    def __init__(self, folder: Path, manifest: dict):
        self.folder, self.manifest = folder, manifest
        self.spec = ModelSpec.from_dict(manifest["spec"])
        self.map_offset = tuple(manifest.get("map_offset_px") or (0, 0))

    def find(self, backend: str | None = None, precision: str | None = None) -> dict[str, Path]:
        """``{"audio": path, "image": path}`` of the first backend/precision that has both towers."""
        choices: dict[tuple[str, str], dict[str, Path]] = {}
        for a in self.manifest["artifacts"]:
            if (backend is None or a["backend"] == backend) and (precision is None or a["precision"] == precision):
                choices.setdefault((a["backend"], a["precision"]), {})[a["tower"]] = self.folder / a["file"]
        for towers in choices.values():
            if set(towers) >= {"audio", "image"}:
                return towers
        have = sorted({(a["backend"], a["precision"]) for a in self.manifest["artifacts"]})
        raise ModelFileError(f"{self.folder} has no {backend or 'any'} {precision or ''} model for both towers".replace("  ", " "),
                             f"choose one it has: {', '.join(f'--backend {b} --precision {p}' for b, p in have)}")


def read_bundle(folder: str | Path) -> Bundle:
    """Read a bundle folder and verify its schema and every file's sha256."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise ModelFileError(f"{folder} has no {MANIFEST}", "pass a bundle folder written by edge-sdk quantize or export")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ModelFileError(f"{path}: not valid JSON ({e})", "the manifest is damaged: re-export the bundle") from None
    if manifest.get("kind") != "edge_sdk.bundle" or not isinstance(manifest.get("schema"), int):
        raise ModelFileError(f"{path} is not an edge_sdk bundle manifest", "pass a bundle folder written by edge-sdk")
    if manifest["schema"] > SCHEMA:
        raise ModelFileError(f"{path} has schema {manifest['schema']}; this edge_sdk reads up to {SCHEMA}", "upgrade edge_sdk (pip install -U edge_sdk)")
    for a in manifest["artifacts"]:
        f = folder / a["file"]
        if Path(a["file"]).is_absolute() or not f.resolve().is_relative_to(folder.resolve()):
            raise ModelFileError(f"{path}: artifact name {a['file']!r} points outside the bundle", "the manifest was tampered with: re-export the bundle")
        if not f.is_file():
            raise ModelFileError(f"{f} is missing from the bundle", "copy the whole bundle folder, or re-export it")
        if sha256_file(f) != a["sha256"]:
            raise ModelFileError(f"{f} does not match its sha256 in {MANIFEST} (truncated or modified)", "re-export the bundle or copy it again")
    return Bundle(folder, manifest)
