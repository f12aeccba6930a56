"""Inference backends, and the one place that says which runs what: :func:`runner_for`.

Every backend is a :class:`~edge_sdk.runner.Towers` (``embed_audio``, ``embed_image``,
``embed_both`` on numpy batches), so evaluation, export validation, the benchmark and the
live pipeline run any of them unchanged:

- ``onnxruntime`` (:mod:`.onnxruntime`): FP32, FP16 and Q/DQ INT8 graphs on TensorRT, CUDA
  or the CPU; no torch.
- ``tensorrt`` (:mod:`.tensorrt`): engines built from the bundle's engine-source ONNX on the
  GPU that runs them, cached; where TensorRT is absent, those same graphs in ONNX Runtime
  when asked (``engines=False``).
- ``executorch`` (:mod:`.executorch`): ``.pte`` programs (XNNPACK), batch 1.
- ``torch``: the bundle's PyTorch weights. Building a PyTorch model is the training side's
  business, which the runtime never imports: this backend is a plugin that package
  registers under the ``edge_sdk.backends`` entry-point group
  (:mod:`edge_sdk.models.torch_runner`), and any other package may register a backend
  the same way (``name = "module:opener"``, ``opener(choice, contract, model=..., **options)``, where
  ``model`` is the manifest's model source: a registry architecture or a user's factory).

:func:`pick_backend` chooses, among what a bundle holds, what this machine runs best.
"""

from __future__ import annotations

import importlib.util
import logging
from importlib import metadata

from edge_sdk.bundle import Choice
from edge_sdk.errors import EdgeSDKError, ModelFileError
from edge_sdk.runner import Towers

__all__ = ["Towers", "runner_for", "open_towers", "pick_backend", "plugin_backends", "failed"]

log = logging.getLogger(__name__)

ENTRY_POINTS = "edge_sdk.backends"


def plugin_backends() -> dict[str, metadata.EntryPoint]:
    """Backends other packages register (``[project.entry-points."edge_sdk.backends"]``)."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINTS)}


def runner_for(choice: Choice, contract, *, threads: int = 0, batch_size: int | None = None, engines: bool = True,
               model: dict | None = None, trusted: tuple[str, ...] = ()) -> Towers:  # fmt: skip
    """The runner for one backend/precision of a model's files (a bundle's :class:`Choice`, or
    the artifacts an exporter just wrote), fed as its ``contract`` says.

    ``tensorrt`` choices hold engine sources (ONNX): with ``engines`` their engines are built on
    this GPU and cached (an engine only runs on the GPU and TensorRT version that built it);
    without, the same graphs run in ONNX Runtime (how exports are validated where there is no
    GPU). ``model`` (the manifest's model source) and ``trusted`` (factories the caller allows to
    be imported) go to a plugin backend such as ``torch``.
    """
    files, extra = choice.files, ({"batch_size": batch_size} if batch_size else {})
    if choice.backend == "onnxruntime" or (choice.backend == "tensorrt" and not engines):
        from edge_sdk.runtime.backends.onnxruntime import OrtTowers

        return OrtTowers(files["audio"], files["image"], contract, threads=threads, precision=choice.precision, **extra)
    if choice.backend == "executorch":
        from edge_sdk.runtime.backends.executorch import ExecuTorchTowers

        return ExecuTorchTowers(files["audio"], files["image"], contract)
    if choice.backend == "tensorrt":
        from edge_sdk.runtime.backends.tensorrt import TrtTowers, load_or_build

        built = {t: load_or_build(files[t], t, choice.precision) for t in ("audio", "image")}
        return TrtTowers(built["audio"], built["image"], contract, **extra)
    plugin = plugin_backends().get(choice.backend)
    if plugin is None:
        fix = (
            "pip install 'edge_sdk[train]' (it brings the torch backend)" if choice.backend == "torch"
            else f"install the package that provides it, or use one of: onnxruntime, tensorrt, executorch, {', '.join(plugin_backends())}"
        )  # fmt: skip
        raise EdgeSDKError(f"no backend named {choice.backend!r} is installed here", fix)
    return plugin.load()(choice, contract, model=model or {}, trusted=trusted, threads=threads, **extra)


def open_towers(
    bundle, backend: str | None = None, precision: str | None = None, *, threads: int = 0, batch_size: int | None = None,
    build_engines: bool = True, trusted: tuple[str, ...] = (),
) -> Towers:  # fmt: skip
    """The runner for one backend/precision of a verified bundle (the first one it has when not
    given); ``tensorrt`` engines are built on this GPU and cached (``build_engines``); ``trusted``
    names the model factories the ``torch`` backend may import for a user's model."""
    choice = bundle.find(backend, precision)
    if choice.backend == "tensorrt" and not build_engines:
        raise ModelFileError(
            f"{bundle.folder} holds TensorRT engine sources (ONNX), and engine builds are off",
            "pass build_engines=True (the engines are built once for this GPU and cached)",
        )
    return runner_for(choice, bundle.contract, threads=threads, batch_size=batch_size, model=bundle.model, trusted=trusted)


def failed(bundle, choice: Choice) -> list[str]:
    """Why ``choice`` missed its parity at export (empty: it passed, or was never checked)."""
    entry = (bundle.manifest.get("parity") or {}).get(f"{choice.backend}/{choice.precision}") or {}
    if entry.get("status") in ("mismatch", "failed"):
        return list(entry.get("misses") or [entry["status"]])
    return []


def pick_backend(bundle, prefer: str | None = None, precision: str | None = None) -> Choice:
    """The bundle's best choice for this machine: TensorRT (GPU and TensorRT present) >
    ONNX Runtime > ExecuTorch > PyTorch, INT8 before FP16 before FP32 on CPU; ``prefer`` /
    ``precision`` narrow it. An artifact whose parity failed at export (kept with
    ``--allow-mismatch``) is never picked by default; asked for by name, it is used with a warning."""
    order = ["onnxruntime", "executorch", "torch"]
    if importlib.util.find_spec("tensorrt") is not None:
        order.insert(0, "tensorrt")
    if prefer:
        order = [prefer]
    ranks = {"int8": 0, "fp16": 1, "fp32": 2} if "tensorrt" not in order[:1] else {"fp16": 0, "int8": 1, "fp32": 2}
    choices = [c for c in bundle.choices() if c.backend in order and (precision is None or c.precision == precision)]
    if not choices:
        bundle.find(prefer, precision)  # raises with the choices the bundle has
    explicit = prefer is not None and precision is not None
    passed = [c for c in choices if not failed(bundle, c)]
    if not passed and not explicit:
        bad = ", ".join(f"{c.backend} {c.precision}" for c in choices)
        raise ModelFileError(f"{bundle.folder}: every model that fits the request ({bad}) failed its parity check at export",
                             "re-export the bundle, or ask for one by name (--backend B --precision P) to run it anyway")  # fmt: skip
    best = min(passed or choices, key=lambda c: (order.index(c.backend), ranks.get(c.precision, 9)))
    if why := failed(bundle, best):
        log.warning("%s %s of %s failed its parity check at export (%s); running it because it was asked for",
                    best.backend, best.precision, bundle.folder, "; ".join(why)[:300])  # fmt: skip
    return best
