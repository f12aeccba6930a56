"""Bundles: a folder (or the same folder as a ``.zip``) of model files, one per graph,
backend and precision, and a ``manifest.json`` that says what each file is and proves it
is unchanged.

The manifest (its schema: :mod:`edge_sdk.manifest`) holds the model contract (inputs and
outputs: :mod:`edge_sdk.contract`) with its digest, so a contract edited after export (a
sample rate, an image size: changes no file hash sees) is refused; where the PyTorch model
comes from; each artifact's graph (``audio``, ``image``, or ``av`` for the whole model),
format, backend, precision, input/output names and shapes, sha256 and size; the library
versions that produced it, the calibration-data hash and the metrics and parity measured
when it was written. Reading a bundle checks the manifest's structure, the contract, the
schema and every hash; no pickle is ever loaded; zip members that would land outside the
target folder are refused. Torch-free: the runtime reads bundles without it.
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

from edge_sdk.contract import ModelContract
from edge_sdk.errors import ModelFileError
from edge_sdk.jsonfile import MAX_JSON_BYTES, parse_json, read_json
from edge_sdk.manifest import MANIFEST, SCHEMA, manifest_dict, parse_manifest
from edge_sdk.outputs import atomic_path, atomic_write_text
from edge_sdk.spec import ModelSpec
from edge_sdk.unzip import ZipLimits, check_sizes, extract_members, unpack_lock

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

BUNDLES = Path(__file__).resolve().parent / "assets" / "bundles"
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


def write_manifest(folder: str | Path, contract: ModelContract, model: dict, artifacts: list[dict], **fields) -> Path:
    """Hash every artifact in ``folder`` and write the manifest (atomically): the model's
    ``contract``, where its PyTorch model comes from (``model``: :func:`edge_sdk.manifest.registry_source`
    or :func:`~edge_sdk.manifest.factory_source`), the artifacts and ``fields``."""
    folder = Path(folder)
    arts = [{**a, "sha256": sha256_file(folder / a["file"]), "bytes": (folder / a["file"]).stat().st_size} for a in artifacts]
    manifest = manifest_dict(contract, model, arts, library_versions(), **fields)
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=2))
    return folder / MANIFEST


@dataclass(frozen=True)
class Choice:
    """One runnable backend/precision of a bundle: its format and its files by graph."""

    backend: str
    precision: str
    format: str
    files: dict[str, Path]


class Bundle:
    """A verified bundle folder: its ``contract`` (what the runtime reads), ``model`` (where the
    PyTorch model comes from), ``manifest`` and :meth:`find` for its artifacts."""

    def __init__(self, folder: Path, manifest: dict, contract: ModelContract, model: dict):
        self.folder, self.manifest, self.contract, self.model = folder, manifest, contract, model

    @property
    def spec(self) -> ModelSpec | None:
        """Our registry's architecture, when the model is one of ours (None: a user's factory)."""
        return ModelSpec.from_dict(self.model["spec"]) if self.model.get("kind") == "registry" else None

    @property
    def map_offset(self) -> tuple[float, float]:
        return self.contract.map.offset if self.contract.map is not None else (0.0, 0.0)

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
    dest, limits = _cache_folder(path), ZipLimits.resolve()
    with unpack_lock(dest):  # no other process unpacks it again while this one reads it
        folder = _unpack(path, dest, True, limits)
        try:
            return _verify(folder)
        except ModelFileError:
            shutil.rmtree(folder)
        try:
            return _verify(_unpack(path, dest, True, limits))
        except ModelFileError:  # the zip itself is bad: nothing of it stays in the cache
            shutil.rmtree(dest, ignore_errors=True)
            raise


def _verify(folder: Path) -> Bundle:
    path = folder / MANIFEST
    if not path.is_file():
        run = folder / "model.safetensors"  # a training run's folder: its checkpoint is what was meant
        raise ModelFileError(
            f"{folder} has no {MANIFEST}",
            f"pass the checkpoint {run}" if run.is_file() else "pass a bundle folder written by edge-sdk quantize or export",
        )
    manifest = read_json(path, "bundle manifest", fix="the manifest is damaged: re-export the bundle")
    contract, model = parse_manifest(path, manifest)
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
    return Bundle(folder, manifest, contract, model)


def pack_zip(folder: str | Path, dest: str | Path | None = None) -> Path:
    """Zip a verified bundle folder (manifest, its artifacts and reports) into ``dest``
    (default: ``<folder>.zip``), written atomically."""
    bundle = read_bundle(folder)
    dest = Path(dest) if dest else bundle.folder.with_suffix(".zip")
    names = sorted({MANIFEST, *(a["file"] for a in bundle.manifest["artifacts"]), *(p.name for p in bundle.folder.glob("report.*"))})
    with atomic_path(dest) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:  # a full disk leaves no part of a zip
        for name in names:
            z.write(bundle.folder / name, name)
    return dest


def cache_root() -> Path:
    """``$EDGE_SDK_CACHE`` (default ``~/.cache/edge_sdk``): unpacked zip bundles in ``bundles/``,
    TensorRT engines in ``engines/``."""
    return Path(os.environ.get("EDGE_SDK_CACHE") or Path.home() / ".cache" / "edge_sdk").expanduser()


def unpack_zip(
    path: str | Path,
    dest: str | Path | None = None,
    *,
    max_unpack_mb: float | None = None,
    max_member_mb: float | None = None,
    max_ratio: float | None = None,
) -> Path:
    """Extract a zipped bundle (default: into the cache, one folder per zip hash) and return
    the folder. The manifest may sit at the zip's top or in its one top-level folder (what
    ``zip -r B.zip B/`` makes). Refused before anything is written: members with absolute
    paths, ``..`` or links, zips without a manifest, members the manifest does not list
    (``report.*`` aside), and zips over the limits (:class:`~edge_sdk.unzip.ZipLimits`:
    ``max_unpack_mb`` in all, ``max_member_mb`` per member, ``max_ratio`` of expansion; also
    ``EDGE_SDK_MAX_UNPACK_MB``, ``EDGE_SDK_MAX_MEMBER_MB``, ``EDGE_SDK_MAX_RATIO``), or more than
    the free space. Members stream out with the inflated bytes counted against the same limits;
    nothing half-extracted is left behind, also when the disk fills. Two processes unpacking
    one zip take turns (a lock beside the folder): both get the whole folder."""
    path = _zip_file(path)
    limits = ZipLimits.resolve(max_unpack_mb, max_member_mb, max_ratio)
    cached = dest is None
    dest = Path(dest) if dest else _cache_folder(path)
    with unpack_lock(dest):
        return _unpack(path, dest, cached, limits)


def _zip_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"bundle {path} does not exist", "pass a bundle folder or .zip written by edge-sdk export")
    return path


def _cache_folder(path: Path) -> Path:
    return cache_root() / "bundles" / f"{path.stem}-{sha256_file(path)[:16]}"


def _unpack(path: Path, dest: Path, cached: bool, limits: ZipLimits) -> Path:
    """:func:`unpack_zip`'s work, with its lock held."""
    if (dest / MANIFEST).is_file():
        return dest
    if dest.exists() and not cached:
        raise ModelFileError(f"{dest} exists without a {MANIFEST}", f"remove {dest} or unpack elsewhere")
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            _check_names(path, dest, infos)
            need = check_sizes(path, infos, limits, path.stat().st_size)
            root = _zip_root(path, z.namelist())
            members = _listed(path, z, root, infos)
            extract_members(path, z, members, dest, limits, need)
    # a damaged member's data fails only when inflated; an encrypted member or an unknown method: RuntimeError, NotImplementedError
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as e:
        raise ModelFileError(
            f"{path}: not a readable zip ({e.__class__.__name__}: {e})", "the download is truncated or damaged: copy it again"
        ) from None
    return dest


def _check_names(path: Path, dest: Path, infos: list[zipfile.ZipInfo]) -> None:
    for info in infos:
        name = info.filename
        target = (dest / name).resolve()
        is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
        if name.startswith(("/", "\\")) or ".." in Path(name).parts or is_link or not target.is_relative_to(dest.resolve()):
            raise ModelFileError(
                f"{path}: member {name!r} would be written outside the bundle folder",
                "the zip is malicious or damaged: do not use it; re-export the bundle",
            )


_REZIP = "the zip is damaged or not an edge_sdk bundle: re-export it (edge-sdk export --zip)"
_JUNK = ("__MACOSX/",)  # what macOS's Finder adds to a zip: never unpacked, never refused


def _listed(path: Path, z: zipfile.ZipFile, root: str, infos: list[zipfile.ZipInfo]) -> list[tuple[zipfile.ZipInfo, str]]:
    """The members to unpack (each with its path in the bundle folder): the manifest, the files it
    lists and the reports; any other member is refused (a zip altered after export)."""
    prefix = f"{root}/" if root else ""
    info = z.getinfo(prefix + MANIFEST)
    if info.file_size > MAX_JSON_BYTES:
        raise ModelFileError(f"{path}: its {MANIFEST} is larger than {MAX_JSON_BYTES >> 20} MB, too large for a manifest", _REZIP)
    with z.open(info) as f:
        manifest = parse_json(f.read(MAX_JSON_BYTES + 1), f"{path}: {prefix}{MANIFEST}", "bundle manifest", fix=_REZIP)
    arts = manifest.get("artifacts") if isinstance(manifest, dict) else None
    if not isinstance(arts, list) or not all(isinstance(a, dict) and isinstance(a.get("file"), str) for a in arts):
        raise ModelFileError(f"{path}: its {MANIFEST} does not list the bundle's files (not an edge_sdk bundle manifest)", _REZIP)
    allowed = {MANIFEST, *(a["file"] for a in arts)}
    members, unlisted = [], []
    for m in infos:
        name = m.filename
        rel = name[len(prefix) :] if name.startswith(prefix) else None
        if name.startswith(_JUNK) or Path(name).name == ".DS_Store" or (m.is_dir() and (rel == "" or any(a.startswith(rel or "?") for a in allowed))):
            continue
        if rel is not None and not m.is_dir() and (rel in allowed or (rel.startswith("report.") and "/" not in rel)):
            members.append((m, rel))
        else:
            unlisted.append(name)
    if unlisted:
        more = f" (and {len(unlisted) - 1} more)" if len(unlisted) > 1 else ""
        raise ModelFileError(
            f"{path}: member {unlisted[0]!r}{more} is not a file its {MANIFEST} lists",
            "the zip was altered after export: do not use it; re-export the bundle (edge-sdk export --zip)",
        )
    return members


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
