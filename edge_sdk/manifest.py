"""The bundle manifest's schema: what a bundle says it holds, and how that is checked on read.

Schema 2 (written now) carries the :class:`~edge_sdk.contract.ModelContract` (``contract``,
with its digest ``contract_sha256``: a contract edited after export is refused), where the
PyTorch model comes from (``model``: one of our registry's architectures with its spec, or a
user's factory ``FILE.py:FUNCTION``), and each artifact's graph, format, backend, precision,
sha256 and size. Schema-1 manifests (before the contract: a ``spec`` and ``map_offset_px``)
still load: their contract is derived from the spec. Every number is range-checked before
anything is built from it. Torch-free.
"""

from __future__ import annotations

import math
from pathlib import Path

from edge_sdk.contract import ModelContract
from edge_sdk.errors import ConfigError, ModelFileError
from edge_sdk.spec import ModelSpec, spec_digest

__all__ = ["SCHEMA", "MANIFEST", "manifest_dict", "parse_manifest", "registry_source", "factory_source"]

SCHEMA = 2
MANIFEST = "manifest.json"
_ARTIFACT_KEYS = {"file": str, "tower": str, "format": str, "backend": str, "precision": str, "sha256": str, "bytes": int}
_REEXPORT = "re-export the bundle (edge-sdk export)"


def registry_source(spec: ModelSpec) -> dict:
    """``model`` of a manifest whose PyTorch model is one of our registry's architectures."""
    return {"kind": "registry", "spec": spec.to_dict(), "spec_sha256": spec.digest()}


def factory_source(factory: str, towers=("audio", "image"), pool: str = "max") -> dict:
    """``model`` of a manifest whose PyTorch model comes from a user's factory (``FILE.py:FUNCTION``)."""
    return {"kind": "factory", "factory": factory, "towers": list(towers), "pool": pool}


def manifest_dict(contract: ModelContract, model: dict, artifacts: list[dict], versions: dict, **fields) -> dict:
    """The manifest's JSON form (artifacts already hashed)."""
    return {"schema": SCHEMA, "kind": "edge_sdk.bundle", "contract": contract.to_dict(), "contract_sha256": contract.digest(),
            "model": model, "artifacts": artifacts, "versions": versions, **fields}  # fmt: skip


def parse_manifest(path: Path, manifest: dict) -> tuple[ModelContract, dict]:
    """The manifest's contract and model source, once its keys, types and numbers are checked
    and the contract is the one the bundle was exported with (ModelFileError naming the field)."""
    if not isinstance(manifest, dict) or manifest.get("kind") != "edge_sdk.bundle" or type(manifest.get("schema")) is not int:
        raise ModelFileError(f"{path} is not an edge_sdk bundle manifest", "pass a bundle folder written by edge-sdk")
    if manifest["schema"] > SCHEMA:
        raise ModelFileError(
            f"{path} has schema {manifest['schema']}; this edge_sdk reads up to {SCHEMA}", "upgrade edge_sdk (pip install -U edge_sdk)"
        )
    _check_artifacts(path, manifest.get("artifacts"))
    if manifest["schema"] < 2:
        return _from_spec(path, manifest)
    try:
        contract = ModelContract.from_dict(manifest.get("contract"))
    except ConfigError as e:
        raise ModelFileError(f"{path}: {e.problem}", _REEXPORT) from None
    if manifest.get("contract_sha256") != contract.digest():
        raise ModelFileError(f"{path}: its contract ({contract.name}) was edited after export (contract_sha256 no longer matches)",
                             f"restore {MANIFEST} as it was written, or {_REEXPORT}")  # fmt: skip
    return contract, _model_source(path, manifest.get("model"))


def _check_artifacts(path: Path, arts) -> None:
    if not isinstance(arts, list):
        raise ModelFileError(f'{path}: "artifacts" is missing or not a list of files', _REEXPORT)
    for i, a in enumerate(arts):
        bad = [k for k, kind in _ARTIFACT_KEYS.items() if not isinstance(a, dict) or type(a.get(k)) is not kind]
        if bad:
            raise ModelFileError(f"{path}: artifact {i} ({a.get('file') if isinstance(a, dict) else a!r}) lacks or mistypes {bad}", _REEXPORT)
        if a["bytes"] < 0:
            raise ModelFileError(f"{path}: artifact {i} ({a['file']}) has bytes = {a['bytes']}, below 0", _REEXPORT)


def _spec(path: Path, d, stamp) -> ModelSpec:
    """A manifest's registry spec, checked against its digest (or, for old manifests without one,
    against the registered spec of its name, on the preprocessing)."""
    if not isinstance(d, dict):
        raise ModelFileError(f"{path}: the model spec is a {type(d).__name__}, not a table", _REEXPORT)
    try:
        spec = ModelSpec.from_dict(d)
    except ConfigError as e:
        raise ModelFileError(f"{path}: {e.problem}", _REEXPORT) from None
    if stamp != spec_digest(d):
        drift = spec.drift(None)
        if drift or stamp is not None:
            what = f"differs from the registered {spec.name}: {'; '.join(drift[:5])}" if drift else "was edited (its spec_sha256 no longer matches)"
            raise ModelFileError(f"{path}: spec {spec.name} is not the one the bundle was exported with: it {what}",
                                 f"restore {MANIFEST} as it was written, or {_REEXPORT}")  # fmt: skip
    return spec


def _from_spec(path: Path, manifest: dict) -> tuple[ModelContract, dict]:
    """A schema-1 manifest (before contracts): the contract derived from its spec and map offset."""
    if "spec" not in manifest:
        raise ModelFileError(f'{path}: "spec" is missing', _REEXPORT)
    spec = _spec(path, manifest["spec"], manifest.get("spec_sha256"))
    offset = manifest.get("map_offset_px") or [0, 0]
    if not (isinstance(offset, list) and len(offset) == 2 and all(type(v) in (int, float) and math.isfinite(v) for v in offset)):
        raise ModelFileError(f'{path}: "map_offset_px" = {offset!r} is not two finite numbers', _REEXPORT)
    try:
        contract = spec.contract(tuple(offset))
    except ConfigError as e:
        raise ModelFileError(f'{path}: "map_offset_px": {e.problem}', _REEXPORT) from None
    return contract, registry_source(spec)


def _model_source(path: Path, model) -> dict:
    """``model``: ``{"kind": "registry", "spec", "spec_sha256"}``, ``{"kind": "factory", "factory", ...}``
    or ``{"kind": "none"}`` (exported from a module in memory: the bundle has no PyTorch backend)."""
    if not isinstance(model, dict) or model.get("kind") not in ("registry", "factory", "none"):
        raise ModelFileError(f'{path}: "model" is missing or not a registry spec, a factory or none', _REEXPORT)
    if model["kind"] == "none":  # a module exported from memory: no PyTorch backend for this bundle
        return model
    if model["kind"] == "registry":
        _spec(path, model.get("spec"), model.get("spec_sha256"))
        return model
    factory = model.get("factory")
    if not isinstance(factory, str) or ":" not in factory or len(factory) > 4096:
        raise ModelFileError(f'{path}: "model.factory" = {factory!r} is not MODULE_OR_FILE:FUNCTION', _REEXPORT)
    return model
