"""Bundles: a folder (or the same folder as a ``.zip``) of model files, one per graph,
backend and precision, and a ``manifest.json`` that says what each file is and proves it
is unchanged.

The manifest holds the schema version, the model spec with its preprocessing, each
artifact's graph (``audio``, ``image``, or ``av`` for the whole model), format, backend,
precision, input/output names and shapes, sha256 and size, the library versions that
produced it, the calibration-data hash and the metrics and parity measured when it was
written, and the spec's digest (``spec_sha256``), so a spec edited after export (a sample
rate, the normalisation: changes no file hash sees) is refused. Reading a bundle checks the
manifest's structure, the spec, the schema and every hash; no pickle is ever loaded; zip
members that would land outside the target folder are refused. Torch-free: the runtime
reads bundles without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import zipfile
import zlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from edge_sdk.errors import ConfigError, ModelFileError
from edge_sdk.spec import ModelSpec, spec_digest

__all__ = [
    "SCHEMA",
    "MANIFEST",
    "BUNDLES",
    "Bundle",
    "Choice",
    "EXPORT_FORMATS",
    "sha256_file",
    "library_versions",
    "write_manifest",
    "read_bundle",
    "bundle_path",
    "cache_root",
    "pack_zip",
    "unpack_zip",
    "shipped_bundles",
]

SCHEMA = 1
MANIFEST = "manifest.json"
BUNDLES = Path(__file__).resolve().parent / "assets" / "bundles"
_ARTIFACT_KEYS = {"file": str, "tower": str, "format": str, "backend": str, "precision": str, "sha256": str, "bytes": int}
_REEXPORT = "re-export the bundle (edge-sdk export)"
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
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[lib] = metadata.version(lib)
    return out


def write_manifest(folder: str | Path, spec: ModelSpec, artifacts: list[dict], **fields) -> Path:
    """Hash every artifact in ``folder`` and write the manifest (atomically)."""
    folder = Path(folder)
    arts = [{**a, "sha256": sha256_file(folder / a["file"]), "bytes": (folder / a["file"]).stat().st_size} for a in artifacts]
    manifest = {
        "schema": SCHEMA,
        "kind": "edge_sdk.bundle",
        "spec": spec.to_dict(),
        "spec_sha256": spec.digest(),
        "artifacts": arts,
        "versions": library_versions(),
        **fields,
    }
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(folder / MANIFEST)
    return folder / MANIFEST


@dataclass(frozen=True)
class Choice:
    """One runnable backend/precision of a bundle: its format and its files by graph."""

    backend: str
    precision: str
    format: str
    files: dict[str, Path]


class Bundle:
    """A verified bundle folder: ``spec``, ``manifest`` and :meth:`find` for its artifacts."""

    def __init__(self, folder: Path, manifest: dict, spec: ModelSpec):
        self.folder, self.manifest, self.spec = folder, manifest, spec
        self.map_offset = tuple(manifest.get("map_offset_px") or (0, 0))

    def choices(self) -> list[Choice]:
        """Every backend/precision that can run the model: both towers, or the whole model (``av``)
        for PyTorch weights. The whole-model ONNX graph is listed beside its towers, not on its own."""
        groups: dict[tuple[str, str], dict] = {}
        for a in self.manifest["artifacts"]:
            g = groups.setdefault((a["backend"], a["precision"]), {"format": a["format"], "files": {}})
            g["files"][a["tower"]] = self.folder / a["file"]
        return [
            Choice(b, p, g["format"], g["files"])
            for (b, p), g in groups.items()
            if {"audio", "image"} <= set(g["files"]) or (g["format"] == "safetensors" and "av" in g["files"])
        ]

    def find(self, backend: str | None = None, precision: str | None = None) -> Choice:
        """The first choice matching ``backend`` and ``precision`` (any when None)."""
        for c in self.choices():
            if (backend is None or c.backend == backend) and (precision is None or c.precision == precision):
                return c
        have = sorted((c.backend, c.precision) for c in self.choices())
        fmt, precisions = EXPORT_FORMATS.get(backend, (None, ()))
        if backend == "torch":
            how = "or re-export the bundle: edge-sdk export writes the PyTorch weights (FP32) into every bundle"
        elif fmt and (precision is None or precision in precisions):
            how = f"or export the missing one: edge-sdk export MODEL --format {fmt} --precision {precision or '|'.join(precisions)}" + (
                " --calib DIR" if precision == "int8" else ""
            )
        else:
            how = "or export another: " + "; ".join(f"--format {f} --precision {'|'.join(p)}" for f, p in EXPORT_FORMATS.values())
        raise ModelFileError(
            f"{self.folder} has no {' '.join(x for x in (backend, precision) if x) or 'runnable'} model",
            f"choose one it has: {', '.join(f'--backend {b} --precision {p}' for b, p in have) or '(none)'}, {how}",
        )


# backend -> (edge-sdk export's --format, the precisions it writes for it); kept here so this
# module stays torch-free (export/targets.py holds the exporters; a test checks they agree)
EXPORT_FORMATS = {
    "onnxruntime": ("onnx", ("fp32", "fp16", "int8")),
    "tensorrt": ("tensorrt", ("fp32", "fp16", "int8")),
    "executorch": ("executorch", ("fp32", "int8")),
}


def bundle_path(name_or_path: str | Path) -> Path:
    """A bundle folder or ``.zip``, or the name of a shipped bundle (``edge-sdk info``), as a path."""
    path = Path(name_or_path)
    if path.exists():
        return path
    shipped = shipped_bundles()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    raise ModelFileError(
        f"bundle {name_or_path} does not exist",
        f"pass a bundle folder or .zip written by edge-sdk export, or a shipped bundle: {', '.join(shipped) or '(none shipped)'}",
    )


def read_bundle(name_or_path: str | Path) -> Bundle:
    """Read a bundle (folder, ``.zip`` or shipped bundle name) and verify its manifest, spec and every file's sha256.

    A zip is unpacked once into the cache; a cached copy that fails verification (damaged
    on disk: the cache is keyed by the zip's hash, not by what is in the folder) is
    unpacked again from the zip before giving up.
    """
    path = bundle_path(name_or_path)
    if path.suffix != ".zip":
        return _verify(path)
    folder = unpack_zip(path)
    try:
        return _verify(folder)
    except ModelFileError:
        shutil.rmtree(folder)
        return _verify(unpack_zip(path))


def _verify(folder: Path) -> Bundle:
    path = folder / MANIFEST
    if not path.is_file():
        run = folder / "model.safetensors"  # a training run's folder: its checkpoint is what was meant
        raise ModelFileError(
            f"{folder} has no {MANIFEST}",
            f"pass the checkpoint {run}" if run.is_file() else "pass a bundle folder written by edge-sdk quantize or export",
        )
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{path}: not valid JSON ({e})", "the manifest is damaged: re-export the bundle") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != "edge_sdk.bundle" or not isinstance(manifest.get("schema"), int):
        raise ModelFileError(f"{path} is not an edge_sdk bundle manifest", "pass a bundle folder written by edge-sdk")
    if manifest["schema"] > SCHEMA:
        raise ModelFileError(
            f"{path} has schema {manifest['schema']}; this edge_sdk reads up to {SCHEMA}", "upgrade edge_sdk (pip install -U edge_sdk)"
        )
    spec = _check_manifest(path, manifest)
    for a in manifest["artifacts"]:
        f = folder / a["file"]
        if Path(a["file"]).is_absolute() or not f.resolve().is_relative_to(folder.resolve()):
            raise ModelFileError(
                f"{path}: artifact name {a['file']!r} points outside the bundle", "the manifest was tampered with: re-export the bundle"
            )
        if not f.is_file():
            raise ModelFileError(f"{f} is missing from the bundle", "copy the whole bundle folder, or re-export it")
        if sha256_file(f) != a["sha256"]:
            raise ModelFileError(f"{f} does not match its sha256 in {MANIFEST} (truncated or modified)", "re-export the bundle or copy it again")
    return Bundle(folder, manifest, spec)


def _check_manifest(path: Path, manifest: dict) -> ModelSpec:
    """The manifest's spec, once its keys and types are checked and the spec is the one it was exported with.

    Manifests store the spec's digest (``spec_sha256``); a spec that no longer matches it was
    edited after export, and is named field by field against the registered spec of its
    name where there is one. Manifests written before digests were stored are compared with
    the registered spec on the preprocessing (see :meth:`ModelSpec.drift`).
    """
    arts = manifest.get("artifacts")
    if not isinstance(arts, list):
        raise ModelFileError(f'{path}: "artifacts" is missing or not a list of files', _REEXPORT)
    for i, a in enumerate(arts):
        bad = [k for k, kind in _ARTIFACT_KEYS.items() if not isinstance(a, dict) or type(a.get(k)) is not kind]
        if bad:
            raise ModelFileError(f"{path}: artifact {i} ({a.get('file') if isinstance(a, dict) else a!r}) lacks or mistypes {bad}", _REEXPORT)
    offset = manifest.get("map_offset_px")
    if offset is not None and not (isinstance(offset, list) and len(offset) == 2 and all(type(v) in (int, float) for v in offset)):
        raise ModelFileError(f'{path}: "map_offset_px" = {offset!r} is not two numbers', _REEXPORT)
    if "spec" not in manifest:
        raise ModelFileError(f'{path}: "spec" is missing', _REEXPORT)
    try:
        spec = ModelSpec.from_dict(manifest["spec"])
    except ConfigError as e:
        raise ModelFileError(f"{path}: {e.problem}", _REEXPORT) from None
    stamp = manifest.get("spec_sha256")
    if stamp != spec_digest(manifest["spec"]):
        drift = spec.drift(None)
        if drift or stamp is not None:
            what = f"differs from the registered {spec.name}: {'; '.join(drift[:5])}" if drift else "was edited (its spec_sha256 no longer matches)"
            raise ModelFileError(
                f"{path}: spec {spec.name} is not the one the bundle was exported with: it {what}",
                f"restore {MANIFEST} as it was written, or {_REEXPORT}",
            )
    return spec


def pack_zip(folder: str | Path, dest: str | Path | None = None) -> Path:
    """Zip a verified bundle folder (manifest, its artifacts and reports) into ``dest``
    (default: ``<folder>.zip``), written atomically."""
    bundle = read_bundle(folder)
    dest = Path(dest) if dest else bundle.folder.with_suffix(".zip")
    names = sorted({MANIFEST, *(a["file"] for a in bundle.manifest["artifacts"]), *(p.name for p in bundle.folder.glob("report.*"))})
    tmp = dest.with_name(dest.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for name in names:
            z.write(bundle.folder / name, name)
    tmp.replace(dest)
    return dest


def cache_root() -> Path:
    """``$EDGE_SDK_CACHE`` (default ``~/.cache/edge_sdk``): unpacked zip bundles in ``bundles/``,
    TensorRT engines in ``engines/``."""
    return Path(os.environ.get("EDGE_SDK_CACHE") or Path.home() / ".cache" / "edge_sdk").expanduser()


def unpack_zip(path: str | Path, dest: str | Path | None = None) -> Path:
    """Extract a zipped bundle (default: into the cache, one folder per zip hash) and return
    the folder. The manifest may sit at the zip's top or in its one top-level folder (what
    ``zip -r B.zip B/`` makes). Members with absolute paths, ``..`` or links, and zips
    without a manifest, are refused before anything is written; nothing half-extracted is
    left behind."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"bundle {path} does not exist", "pass a bundle folder or .zip written by edge-sdk export")
    cached = dest is None
    dest = Path(dest) if dest else cache_root() / "bundles" / f"{path.stem}-{sha256_file(path)[:16]}"
    if (dest / MANIFEST).is_file():
        return dest
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                name = info.filename
                target = (dest / name).resolve()
                is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
                if name.startswith(("/", "\\")) or ".." in Path(name).parts or is_link or not target.is_relative_to(dest.resolve()):
                    raise ModelFileError(
                        f"{path}: member {name!r} would be written outside the bundle folder",
                        "the zip is malicious or damaged: do not use it; re-export the bundle",
                    )
            root = _zip_root(path, z.namelist())
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f"{dest.name}.{os.getpid()}.partial")
            try:
                shutil.rmtree(tmp, ignore_errors=True)
                z.extractall(tmp)
                if dest.exists() and not cached:
                    raise ModelFileError(f"{dest} exists without a {MANIFEST}", f"remove {dest} or unpack elsewhere")
                if not (dest / MANIFEST).is_file():  # else another process has just unpacked it
                    shutil.rmtree(dest, ignore_errors=True)  # an earlier, damaged unpack of this zip
                    (tmp / root).replace(dest)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:  # a damaged member's data fails only when inflated
        raise ModelFileError(
            f"{path}: not a readable zip ({e.__class__.__name__}: {e})", "the download is truncated or damaged: copy it again"
        ) from None
    return dest


def _zip_root(path: Path, names: list[str]) -> str:
    """The folder in the zip that holds the manifest: "" (its top) or its one top-level folder."""
    if MANIFEST in names:
        return ""
    tops = {n.split("/")[0] for n in names if not n.startswith("__MACOSX/")}
    if len(tops) == 1 and f"{next(iter(tops))}/{MANIFEST}" in names:
        return next(iter(tops))
    nested = [n for n in names if n.endswith(f"/{MANIFEST}")]
    if nested:
        raise ModelFileError(
            f"{path}: {MANIFEST} is at {nested[0]} inside the zip, not at its top",
            f"zip the bundle folder's contents, not the folder (cd BUNDLE && zip -r {path.resolve()} .), or use edge-sdk export --zip",
        )
    raise ModelFileError(f"{path} holds no {MANIFEST}: it is not an edge_sdk bundle", "pass a bundle folder or .zip written by edge-sdk export")


def shipped_bundles() -> dict[str, Path]:
    """Bundles shipped with the package: name -> folder."""
    return {p.parent.name: p.parent for p in sorted(BUNDLES.glob(f"*/{MANIFEST}"))}
