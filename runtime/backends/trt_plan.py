"""TensorRT build plans, cache keys and engine checks: pure functions, testable without TensorRT.

Engines are specific to the GPU and the TensorRT version, so bundles carry ONNX (FP32,
FP16-in-graph and explicit Q/DQ INT8) and the engine is built where it runs, then cached
as ``<cache>/<tower>.<precision>.<key>.engine`` with a ``.json`` sidecar holding what it was
built for. The cache folder is ``engines/`` in ``$EDGE_SDK_CACHE`` (default ``~/.cache/edge_sdk``,
which also holds unpacked zip bundles).

Build rules (:func:`plan_build`, pure, testable without TensorRT):

- TensorRT 10: weakly typed networks with builder flags: fp16 -> ``FP16``; int8 ->
  ``INT8`` + ``FP16`` fallback, and only from a graph with Q/DQ nodes (explicit
  quantization: edge-sdk ships no TensorRT 10 calibrator).
- TensorRT >= 11: always strongly typed, no precision flags (FP16/INT8 flags, calibrators
  and weak typing are removed there): fp16 needs the bundle's FP16 ONNX, int8 its Q/DQ ONNX.
- A graph's types must match the request: a Q/DQ graph is int8 only; an FP16 graph is not fp32.
- fp32 means FP32: ``TF32`` (on by default, rounding matrix inputs to 10-bit mantissas on
  Ampere and newer) is cleared; fp16 is the fast path.
- DLA (``dla_core``): TensorRT 10 only, fp16 or int8 (DLA has no FP32), adds ``GPU_FALLBACK``;
  DLA has no dynamic shapes, so the profile is static at the *opt* batch (min = opt = max)
  and :class:`TrtTowers` pads smaller batches up to it.

Nothing here imports tensorrt, torch or a CUDA binding (onnx only inside :func:`onnx_facts`). The engine
build, the cache lookup and the runner that use these are :mod:`.tensorrt`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from edge_sdk.bundle import cache_root
from edge_sdk.errors import ConfigError, EdgeSDKError, ModelFileError

__all__ = [
    "ENGINE_FIX",
    "PRECISIONS",
    "BuildPlan",
    "cache_key",
    "check_engine",
    "default_cache_dir",
    "engine_path",
    "estimate_build_seconds",
    "onnx_facts",
    "plan_build",
    "trt_major",
]

ENGINE_FIX = (
    "rebuild it from the bundled ONNX for this GPU: delete it and run the bundle with the tensorrt backend again "
    "(edge-sdk eval BUNDLE --backend tensorrt, or open_towers(bundle, 'tensorrt', build_engines=True))"
)
PRECISIONS = ("fp32", "fp16", "int8")


def trt_major(version: str) -> int:
    """The major number of a TensorRT version string (``"10.3.0.30"`` -> 10)."""
    head = str(version).strip().split(".")[0]
    if not head.isdigit():
        raise ConfigError(f"TensorRT version {version!r} is not of the form MAJOR.MINOR[.PATCH]", "pass tensorrt.__version__")
    return int(head)


@dataclass(frozen=True)
class BuildPlan:
    """What to build: the ONNX file, builder flags to set and to clear (``trt.BuilderFlag``
    names) and profiles."""

    onnx_path: str
    precision: str
    trt_version: str
    strongly_typed: bool
    flags: tuple[str, ...]
    profiles: tuple[tuple[str, tuple[int, ...], tuple[int, ...], tuple[int, ...]], ...]
    dla_core: int | None = None
    workspace_mb: int = 1024
    cleared: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """JSON-ready (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))


def _positive_ints(v, n: int | None = None) -> bool:
    return isinstance(v, tuple | list) and (n is None or len(v) == n) and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v)


def plan_build(
    onnx_path,
    precision: str,
    trt_version: str,
    inputs: dict[str, tuple[int, ...]],
    *,
    has_qdq: bool,
    graph_fp16: bool,
    batch=(1, 8, 32),
    dla_core: int | None = None,
    workspace_mb: int = 1024,
) -> BuildPlan:
    """The :class:`BuildPlan` for one tower graph (rules in the module docstring); pure."""
    onnx_path, major = str(onnx_path), trt_major(trt_version)
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}", "use fp32, fp16 or int8")
    if major < 10:
        raise ConfigError(f"TensorRT {trt_version} is too old: engines use the TensorRT 10 I/O tensor API", "install tensorrt>=10")
    if not _positive_ints(batch, 3) or not batch[0] <= batch[1] <= batch[2]:
        raise ConfigError(f"batch {batch!r} is not (min, opt, max) positive integers with min <= opt <= max", "pass e.g. batch=(1, 8, 32)")
    if not inputs:
        raise ConfigError(f"{onnx_path}: no graph inputs given", "pass onnx_facts(path)['inputs']")
    for name, shape in inputs.items():
        if not _positive_ints(shape):
            raise ConfigError(
                f"{onnx_path}: input {name!r} has shape {shape!r} besides the batch; TensorRT profiles here need fixed sizes",
                "re-export the tower with only the batch axis dynamic (edge-sdk export)",
            )
    if not (isinstance(workspace_mb, int) and workspace_mb > 0):
        raise ConfigError(f"workspace_mb {workspace_mb!r} is not a positive integer", "pass e.g. workspace_mb=1024")
    if has_qdq and precision != "int8":
        raise ConfigError(
            f"{onnx_path} has Q/DQ nodes (an INT8 graph) but precision {precision} was asked",
            f"use the bundle's {precision} ONNX for {precision}, or precision int8 with this file",
        )
    if graph_fp16 and precision == "fp32":
        raise ConfigError(f"{onnx_path} computes in FP16 but precision fp32 was asked", "use the bundle's fp32 ONNX (<tower>.fp32.onnx)")
    dla = dla_core is not None
    if dla:
        if not (isinstance(dla_core, int) and dla_core >= 0):
            raise ConfigError(f"dla_core {dla_core!r} is not a DLA core number", "pass 0 or 1 (Jetson AGX/NX Orin), or None for the GPU")
        if major >= 11:
            raise ConfigError(
                f"DLA engines are built here with TensorRT 10 only, not {trt_version}", "use TensorRT 10 (JetPack 6) for DLA, or dla_core=None"
            )
        if precision == "fp32":
            raise ConfigError("DLA has no FP32: precision fp32 with dla_core was asked", "use precision fp16 or int8 with dla_core, or dla_core=None")
    qdq_fix = "export the Model Optimizer Q/DQ graph: edge-sdk export --precision int8 (the bundle's <tower>.int8.qdq.onnx)"
    if major == 10:
        strongly_typed, flags = False, {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16")}[precision]
        if precision == "int8" and not has_qdq:
            raise ConfigError(
                f"{onnx_path} has no Q/DQ nodes: TensorRT 10 INT8 here needs explicit quantization (edge-sdk ships no TensorRT 10 calibrator)",
                qdq_fix,
            )
    else:
        strongly_typed, flags = True, ()
        if precision == "fp16" and not graph_fp16:
            raise ConfigError(
                f"{onnx_path} is an FP32 graph: TensorRT {trt_version} builds strongly typed networks, so FP16 must be in the graph's types",
                "use the bundle's fp16 ONNX (edge-sdk export --precision fp16)",
            )
        if precision == "int8" and not has_qdq:
            raise ConfigError(f"{onnx_path} has no Q/DQ nodes: TensorRT {trt_version} has no INT8 flag or calibrators", qdq_fix)
    if dla:
        flags += ("GPU_FALLBACK",)
        batch = (batch[1],) * 3  # DLA: no dynamic dimensions, min = opt = max
    profiles = tuple((name, (batch[0], *shape), (batch[1], *shape), (batch[2], *shape)) for name, shape in inputs.items())
    cleared = ("TF32",) if precision == "fp32" else ()
    return BuildPlan(onnx_path, precision, str(trt_version), strongly_typed, flags, profiles, dla_core, workspace_mb, cleared)


def onnx_facts(onnx_path) -> dict:
    """``{"inputs": {name: shape without batch}, "fixed_batch": {name: batch} (inputs whose
    batch is not dynamic), "has_qdq", "graph_fp16", "opset"}`` of an ONNX file."""
    try:
        import onnx
    except ImportError:
        raise EdgeSDKError("reading ONNX graphs needs the onnx package", "pip install onnx (or pip install 'edge_sdk[export]')") from None
    path = Path(onnx_path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - onnx raises DecodeError, OSError, ...
        raise ModelFileError(
            f"{path}: cannot read it as ONNX ({str(e).splitlines()[0][:200] if str(e) else type(e).__name__})",
            "check the path, or re-export the bundle (edge-sdk export)",
        ) from None
    g, f16 = model.graph, onnx.TensorProto.FLOAT16
    known = {i.name for i in g.initializer}
    inputs, fixed = {}, {}
    for i in g.input:
        if i.name not in known:
            shape = i.type.tensor_type.shape.dim
            if not shape:  # a scalar or shape-less input: nothing to profile
                raise ModelFileError(f"{path}: input {i.name!r} has no shape", "re-export the tower (edge-sdk export): its inputs are [batch, ...]")
            batch, *dims = shape
            inputs[i.name] = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)
            if batch.HasField("dim_value"):
                fixed[i.name] = batch.dim_value
    nodes = list(g.node) + [n for fn in model.functions for n in fn.node]
    has_qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in nodes)
    fp16 = any(t.data_type == f16 for t in g.initializer) or any(
        (n.op_type == "Cast" and any(a.name == "to" and a.i == f16 for a in n.attribute))
        or (n.op_type == "Constant" and any(a.name == "value" and a.t.data_type == f16 for a in n.attribute))
        for n in nodes
    )
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return {"inputs": inputs, "fixed_batch": fixed, "has_qdq": has_qdq, "graph_fp16": fp16, "opset": int(opset)}


def cache_key(model_sha256: str, gpu: dict, trt_version: str, plan: BuildPlan) -> str:
    """24 hex chars over the model hash, GPU name and capability, TensorRT version and plan (less its path)."""
    plan_d = {k: v for k, v in plan.to_dict().items() if k != "onnx_path"}
    blob = json.dumps(
        {"model": model_sha256, "gpu": gpu.get("name"), "cc": str(gpu.get("compute_capability")), "trt": str(trt_version), "plan": plan_d},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def default_cache_dir() -> Path:
    """``engines/`` in the SDK's cache (:func:`edge_sdk.bundle.cache_root`)."""
    return cache_root() / "engines"


def engine_path(cache_dir, tower: str, plan: BuildPlan, key: str) -> Path:
    """``<cache_dir>/<tower>.<precision>.<key>.engine`` (``cache_dir`` None: :func:`default_cache_dir`)."""
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / f"{tower}.{plan.precision}.{key}.engine"


def check_engine(meta: dict, gpu: dict, trt_version: str, path, *, model_sha256: str | None = None) -> None:
    """Refuse an engine (ModelFileError naming ``path``) recorded for another GPU, TensorRT or model."""
    wanted = {"compute_capability": str(gpu.get("compute_capability")), "gpu_name": gpu.get("name"), "trt_version": str(trt_version)}
    if model_sha256 is not None:
        wanted["model_sha256"] = model_sha256
    for k, v in wanted.items():
        if meta.get(k) is None or str(meta.get(k)) != str(v):
            raise ModelFileError(f"{path}: TensorRT engine built for {k} {meta.get(k)!r}, this machine has {v!r}", ENGINE_FIX)


def estimate_build_seconds(onnx_bytes: int, precision: str, dla: bool) -> float:
    """A rough guess of build time: 15 s + 3 s per ONNX MB, x1.5 for int8, x2 for DLA.

    Real builds vary several-fold with the GPU, clocks and TensorRT version; this only
    sets the user's expectation in the "building ..." line.
    """
    s = (15.0 + 3.0 * max(onnx_bytes, 0) / 2**20) * (1.5 if precision == "int8" else 1.0)
    return s * 2.0 if dla else s
