"""TensorRT engines for a bundle's towers: plan, build on the device, cache, check and run.

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

Nothing here imports tensorrt, torch, onnx or a CUDA binding at module import.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edge_sdk.bundle import cache_root, sha256_file
from edge_sdk.errors import ConfigError, EdgeSDKError, ModelFileError
from edge_sdk.runtime.backends import _Towers

__all__ = ["ENGINE_FIX", "PRECISIONS", "BuildPlan", "TrtTowers", "build_engine", "cache_key", "check_engine", "default_cache_dir",
           "engine_path", "estimate_build_seconds", "gpu_info", "load_or_build", "onnx_facts", "plan_build", "trt_major"]

log = logging.getLogger(__name__)

ENGINE_FIX = ("rebuild it from the bundled ONNX for this GPU: delete it and run the bundle with the tensorrt backend again "
              "(edge-sdk eval BUNDLE --backend tensorrt, or open_towers(bundle, 'tensorrt', build_engines=True))")
PRECISIONS = ("fp32", "fp16", "int8")
_IO = {"audio": ("wave", ("audio_emb",)), "image": ("image", ("image_emb", "image_map"))}
_NO_GPU_FIX = ("run on a machine with an NVIDIA GPU and driver, with TensorRT and cuda-python "
               "(pip install cuda-python) or torch with CUDA; or use the onnxruntime backend")


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
    return (isinstance(v, tuple | list) and (n is None or len(v) == n)
            and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v))


def plan_build(onnx_path, precision: str, trt_version: str, inputs: dict[str, tuple[int, ...]], *, has_qdq: bool,
               graph_fp16: bool, batch=(1, 8, 32), dla_core: int | None = None, workspace_mb: int = 1024) -> BuildPlan:
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
            raise ConfigError(f"{onnx_path}: input {name!r} has shape {shape!r} besides the batch; TensorRT profiles here need fixed sizes",
                              "re-export the tower with only the batch axis dynamic (edge-sdk export)")
    if not (isinstance(workspace_mb, int) and workspace_mb > 0):
        raise ConfigError(f"workspace_mb {workspace_mb!r} is not a positive integer", "pass e.g. workspace_mb=1024")
    if has_qdq and precision != "int8":
        raise ConfigError(f"{onnx_path} has Q/DQ nodes (an INT8 graph) but precision {precision} was asked",
                          f"use the bundle's {precision} ONNX for {precision}, or precision int8 with this file")
    if graph_fp16 and precision == "fp32":
        raise ConfigError(f"{onnx_path} computes in FP16 but precision fp32 was asked", "use the bundle's fp32 ONNX (<tower>.fp32.onnx)")
    dla = dla_core is not None
    if dla:
        if not (isinstance(dla_core, int) and dla_core >= 0):
            raise ConfigError(f"dla_core {dla_core!r} is not a DLA core number", "pass 0 or 1 (Jetson AGX/NX Orin), or None for the GPU")
        if major >= 11:
            raise ConfigError(f"DLA engines are built here with TensorRT 10 only, not {trt_version}", "use TensorRT 10 (JetPack 6) for DLA, or dla_core=None")
        if precision == "fp32":
            raise ConfigError("DLA has no FP32: precision fp32 with dla_core was asked", "use precision fp16 or int8 with dla_core, or dla_core=None")
    qdq_fix = "export the Model Optimizer Q/DQ graph: edge-sdk export --precision int8 (the bundle's <tower>.int8.qdq.onnx)"
    if major == 10:
        strongly_typed, flags = False, {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16")}[precision]
        if precision == "int8" and not has_qdq:
            raise ConfigError(f"{onnx_path} has no Q/DQ nodes: TensorRT 10 INT8 here needs explicit quantization "
                              "(edge-sdk ships no TensorRT 10 calibrator)", qdq_fix)
    else:
        strongly_typed, flags = True, ()
        if precision == "fp16" and not graph_fp16:
            raise ConfigError(f"{onnx_path} is an FP32 graph: TensorRT {trt_version} builds strongly typed networks, "
                              "so FP16 must be in the graph's types", "use the bundle's fp16 ONNX (edge-sdk export --precision fp16)")
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
        raise ModelFileError(f"{path}: cannot read it as ONNX ({str(e).splitlines()[0][:200] if str(e) else type(e).__name__})",
                             "check the path, or re-export the bundle (edge-sdk export)") from None
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
        or (n.op_type == "Constant" and any(a.name == "value" and a.t.data_type == f16 for a in n.attribute)) for n in nodes)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return {"inputs": inputs, "fixed_batch": fixed, "has_qdq": has_qdq, "graph_fp16": fp16, "opset": int(opset)}


def cache_key(model_sha256: str, gpu: dict, trt_version: str, plan: BuildPlan) -> str:
    """24 hex chars over the model hash, GPU name and capability, TensorRT version and plan (less its path)."""
    plan_d = {k: v for k, v in plan.to_dict().items() if k != "onnx_path"}
    blob = json.dumps({"model": model_sha256, "gpu": gpu.get("name"), "cc": str(gpu.get("compute_capability")),
                       "trt": str(trt_version), "plan": plan_d}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def default_cache_dir() -> Path:
    """``engines/`` in the SDK's cache (:func:`edge_sdk.bundle.cache_root`)."""
    return cache_root() / "engines"


def engine_path(cache_dir, tower: str, plan: BuildPlan, key: str) -> Path:
    """``<cache_dir>/<tower>.<precision>.<key>.engine`` (``cache_dir`` None: :func:`default_cache_dir`)."""
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / f"{tower}.{plan.precision}.{key}.engine"


def _sidecar(engine: Path) -> Path:
    return engine.with_name(engine.name + ".json")


def _cudart():
    """cuda-python's runtime module (``cuda.bindings.runtime``, or ``cuda.cudart`` before 12.6), or None."""
    for mod, name in (("cuda.bindings", "runtime"), ("cuda", "cudart")):
        try:
            return getattr(__import__(mod, fromlist=[name]), name)
        except (ImportError, AttributeError):
            pass
    return None


def _ck(res, what: str):
    """Unpack a cuda-python ``(err, *values)`` result, raising on an error code."""
    err, *rest = res if isinstance(res, tuple) else (res,)
    if int(err) != 0:
        raise EdgeSDKError(f"CUDA {what} failed ({err})", "check the GPU and driver (nvidia-smi) and that cuda-python matches the driver's CUDA")
    return rest[0] if len(rest) == 1 else tuple(rest) or None


def _cuda_torch():
    """torch, where it is importable and sees a CUDA GPU; else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def gpu_info() -> dict:
    """``{"name", "compute_capability": "8.7", "memory_gb"}`` of GPU 0, from cuda-python or torch."""
    rt = _cudart()
    if rt is not None:
        try:
            p = _ck(rt.cudaGetDeviceProperties(0), "cudaGetDeviceProperties")
            name = p.name.decode(errors="replace") if isinstance(p.name, bytes) else str(p.name)
            return {"name": name.rstrip("\x00").strip(), "compute_capability": f"{p.major}.{p.minor}",
                    "memory_gb": round(p.totalGlobalMem / 2**30, 1)}
        except EdgeSDKError:
            pass
    torch = _cuda_torch()
    if torch is not None:
        p = torch.cuda.get_device_properties(0)
        return {"name": p.name, "compute_capability": f"{p.major}.{p.minor}", "memory_gb": round(p.total_memory / 2**30, 1)}
    raise EdgeSDKError("no CUDA GPU found: TensorRT engines are built and run on an NVIDIA GPU", _NO_GPU_FIX)


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


def _import_trt():
    try:
        import tensorrt as trt
    except ImportError:
        trt = None
    if not hasattr(trt, "Builder"):
        raise EdgeSDKError("TensorRT is not installed (or is a stub package)",
                           "on Jetson it comes with JetPack; elsewhere pip install 'edge_sdk[tensorrt]' on a machine with an NVIDIA GPU")
    return trt


def _say(msg: str, loud: bool) -> None:
    log.info(msg)
    if loud and not log.isEnabledFor(logging.INFO):
        print(msg, file=sys.stderr, flush=True)


def _make_monitor(trt, tower: str, every_s: float = 5.0):
    """A ``trt.IProgressMonitor`` printing top-level phases and, every ``every_s``, step counts."""

    class _Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.steps, self.last, self.lock = {}, 0.0, threading.Lock()  # TensorRT calls from several threads

        def phase_start(self, phase_name, parent_phase, num_steps):
            with self.lock:
                self.steps[phase_name] = num_steps
            if parent_phase is None:
                _say(f"  {tower}: {phase_name} ({num_steps} steps)", True)

        def step_complete(self, phase_name, step):
            with self.lock:
                now, total = time.monotonic(), self.steps.get(phase_name, "?")
                due, self.last = (True, now) if now - self.last >= every_s else (False, self.last)
            if due:
                _say(f"  {tower}: {phase_name} {step + 1}/{total}", True)
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            with self.lock:
                self.steps.pop(phase_name, None)

    return _Monitor()


def build_engine(plan: BuildPlan, dest: Path, *, progress: bool = True, tower: str | None = None) -> dict:
    """Build ``plan`` with TensorRT, write the engine to ``dest`` atomically, return its metadata."""
    trt = _import_trt()
    onnx, dest = Path(plan.onnx_path), Path(dest)
    tower = tower or dest.name.split(".")[0]
    if str(trt.__version__) != plan.trt_version:
        raise ConfigError(f"the plan is for TensorRT {plan.trt_version}, this is {trt.__version__}", "plan again with tensorrt.__version__ (load_or_build does)")
    if not onnx.is_file():
        raise ModelFileError(f"{onnx}: no such ONNX file", "check the bundle folder, or re-export it (edge-sdk export)")
    gpu = gpu_info()
    est = estimate_build_seconds(onnx.stat().st_size, plan.precision, plan.dla_core is not None)
    ver = ".".join(str(trt.__version__).split(".")[:2])
    _say(f"building {tower} engine ({plan.precision}, TensorRT {ver}) — about {est:.0f} s", progress)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strong = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)  # kept, ignored, in TensorRT 11
    network = builder.create_network(1 << int(strong) if plan.strongly_typed and strong is not None else 0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx)):  # from the file, so external weights next to it are found
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))[:600] or "no detail"
        raise ModelFileError(f"{onnx}: TensorRT {trt.__version__} cannot parse it ({errors})",
                             "re-export the ONNX (edge-sdk export), or use a TensorRT version that supports its opset and ops")
    names = {network.get_input(i).name for i in range(network.num_inputs)}
    if missing := [p[0] for p in plan.profiles if p[0] not in names]:
        raise ModelFileError(f"{onnx}: no input named {', '.join(missing)} (it has {', '.join(sorted(names))})", "plan from onnx_facts() of this file")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_mb << 20)
    for flag in plan.flags:
        if not hasattr(trt.BuilderFlag, flag):
            raise ConfigError(f"TensorRT {trt.__version__} has no builder flag {flag}", "plan again with tensorrt.__version__")
        config.set_flag(getattr(trt.BuilderFlag, flag))
    for flag in plan.cleared:  # a TensorRT without the flag does not do what it allows
        if hasattr(trt.BuilderFlag, flag):
            config.clear_flag(getattr(trt.BuilderFlag, flag))
    if plan.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
    profile = builder.create_optimization_profile()
    for name, lo, opt, hi in plan.profiles:
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    if progress:
        monitor = _make_monitor(trt, tower)  # must outlive the build
        config.progress_monitor = monitor
    t0 = time.monotonic()
    blob = builder.build_serialized_network(network, config)
    seconds = round(time.monotonic() - t0, 1)
    if blob is None:
        raise EdgeSDKError(f"TensorRT {trt.__version__} failed to build the {tower} engine from {onnx} ({plan.precision}"
                           f"{', DLA' if plan.dla_core is not None else ''}); its log above has the reason",
                           "try another precision, a larger workspace_mb, or dla_core=None; else report the log")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(memoryview(blob))
    os.replace(tmp, dest)
    _say(f"built {tower} engine in {seconds:.0f} s: {dest}", progress)
    return {"gpu_name": gpu["name"], "compute_capability": gpu["compute_capability"], "trt_version": str(trt.__version__),
            "model_sha256": sha256_file(onnx), "plan": plan.to_dict(), "build_seconds": seconds}


def load_or_build(onnx_path, tower: str, precision: str, *, cache_dir=None, batch=(1, 8, 32),
                  dla_core: int | None = None, progress: bool = True) -> Path:
    """The cached engine for this ONNX, GPU, TensorRT and plan, built (and cached) when absent or stale."""
    trt = _import_trt()
    version = str(trt.__version__)
    facts = onnx_facts(onnx_path)
    if facts["fixed_batch"]:
        raise ConfigError(f"{onnx_path}: input(s) {facts['fixed_batch']} have a fixed batch size; engines here take batch {batch[0]}..{batch[2]}",
                          "re-export the tower with a dynamic batch axis (edge-sdk export does)")
    plan = plan_build(onnx_path, precision, version, facts["inputs"], has_qdq=facts["has_qdq"],
                      graph_fp16=facts["graph_fp16"], batch=batch, dla_core=dla_core)
    gpu, sha = gpu_info(), sha256_file(onnx_path)
    dest = engine_path(cache_dir, tower, plan, cache_key(sha, gpu, version, plan))
    side = _sidecar(dest)
    if dest.is_file() and side.is_file():
        try:
            check_engine(json.loads(side.read_text()), gpu, version, dest, model_sha256=sha)
            log.info("using cached %s engine %s", tower, dest)
            return dest
        except (ValueError, ModelFileError) as e:
            log.warning("cached engine %s is stale (%s): rebuilding", dest, e)
    meta = build_engine(plan, dest, progress=progress, tower=tower)
    tmp = side.with_name(f"{side.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, side)
    return dest


class _TorchMemory:
    """Device buffers as torch CUDA tensors, on a private stream (TensorRT warns on the default one)."""

    def __init__(self, torch):
        self.torch, self.stream = torch, torch.cuda.Stream()

    def execute(self, context, feeds: dict, outs: dict, run) -> dict:
        t = self.torch
        with t.cuda.stream(self.stream):
            keep = {n: t.from_numpy(a).to("cuda") for n, a in feeds.items()}
            keep.update({n: t.empty(shape, dtype=t.from_numpy(np.empty(0, dt)).dtype, device="cuda") for n, (shape, dt) in outs.items()})
            for n, x in keep.items():
                context.set_tensor_address(n, x.data_ptr())
            run(self.stream.cuda_stream)
            self.stream.synchronize()
            return {n: keep[n].cpu().numpy() for n in outs}


class _CudartMemory:
    """Device buffers from cuda-python (``cudaMalloc``), grown as needed, on a private stream."""

    def __init__(self, rt):
        self.rt, self.bufs = rt, {}
        self.stream = _ck(rt.cudaStreamCreate(), "cudaStreamCreate")

    def _buf(self, key, nbytes: int) -> int:
        ptr, size = self.bufs.get(key, (None, 0))
        if size < nbytes:
            if ptr is not None:
                _ck(self.rt.cudaFree(ptr), "cudaFree")
            ptr, size = _ck(self.rt.cudaMalloc(nbytes), "cudaMalloc"), nbytes
            self.bufs[key] = (ptr, size)
        return int(ptr)

    def execute(self, context, feeds: dict, outs: dict, run) -> dict:
        rt, kinds = self.rt, self.rt.cudaMemcpyKind
        host = {n: np.empty(shape, dt) for n, (shape, dt) in outs.items()}
        for n, a in feeds.items():
            p = self._buf((id(context), n), a.nbytes)
            _ck(rt.cudaMemcpyAsync(p, a.ctypes.data, a.nbytes, kinds.cudaMemcpyHostToDevice, self.stream), "cudaMemcpyAsync")
            context.set_tensor_address(n, p)
        for n, h in host.items():
            context.set_tensor_address(n, self._buf((id(context), n), h.nbytes))
        run(int(self.stream))
        for n, h in host.items():
            _ck(rt.cudaMemcpyAsync(h.ctypes.data, self._buf((id(context), n), h.nbytes), h.nbytes,
                                   kinds.cudaMemcpyDeviceToHost, self.stream), "cudaMemcpyAsync")
        _ck(rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        return host


def _device_memory():
    torch = _cuda_torch()
    if torch is not None:
        return _TorchMemory(torch)
    rt = _cudart()
    if rt is None:
        raise EdgeSDKError("running TensorRT engines needs CUDA memory from torch (with CUDA) or cuda-python; neither is importable",
                           "pip install cuda-python")
    return _CudartMemory(rt)


class TrtTowers(_Towers):
    """Two TensorRT engines (``audio``: wave -> audio_emb; ``image``: image -> image_emb, image_map)."""

    def __init__(self, audio: str | Path, image: str | Path, spec, map_offset=(0, 0), batch_size: int = 32):
        trt = _import_trt()
        super().__init__(spec, map_offset, batch_size)
        self.trt, self.mem = trt, _device_memory()
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.towers = {}
        for tower, file in (("audio", audio), ("image", image)):
            path = Path(file)
            engine = self._load(path)
            inp, outs = _IO[tower]
            names = {engine.get_tensor_name(i): engine.get_tensor_mode(engine.get_tensor_name(i)) for i in range(engine.num_io_tensors)}
            if names.get(inp) != trt.TensorIOMode.INPUT or any(names.get(o) != trt.TensorIOMode.OUTPUT for o in outs):
                raise ModelFileError(f"{path}: engine I/O {sorted(names)} is not the {tower} tower's ({inp} -> {', '.join(outs)})",
                                     f"pass the {tower} engine; {ENGINE_FIX}")
            lo, _, hi = engine.get_tensor_profile_shape(inp, 0)
            self.towers[tower] = (engine, engine.create_execution_context(), inp, outs, int(lo[0]), int(hi[0]))
            self.batch_size = min(self.batch_size, int(hi[0]))

    def _load(self, path: Path):
        if not path.is_file():
            raise ModelFileError(f"{path}: no such TensorRT engine", ENGINE_FIX)
        try:
            meta = json.loads(_sidecar(path).read_text())
        except (OSError, ValueError):
            meta = None  # no sidecar (an engine from elsewhere) or a damaged one: TensorRT decides
        if meta:  # a clearer refusal than TensorRT's
            check_engine(meta, gpu_info(), self.trt.__version__, path)
            core = meta.get("plan", {}).get("dla_core")
            self.runtime.DLA_core = -1 if core is None else core  # the core it was built for (-1: the GPU), per engine
        try:
            engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        except Exception:  # noqa: BLE001 - bindings raise RuntimeError/TypeError on foreign bytes
            engine = None
        if engine is None:
            raise ModelFileError(f"{path}: TensorRT {self.trt.__version__} cannot load this engine "
                                 "(built for another GPU or TensorRT version, or damaged)", ENGINE_FIX)
        return engine

    def _run(self, tower: str, x: np.ndarray) -> list[np.ndarray]:
        trt = self.trt
        engine, ctx, inp, outs, lo, hi = self.towers[tower]
        n = len(x)
        x = np.ascontiguousarray(x, dtype=trt.nptype(engine.get_tensor_dtype(inp)))
        if n < lo:  # a static-batch (DLA) engine: pad, then drop the padding's outputs
            x = np.concatenate([x, np.zeros((lo - n, *x.shape[1:]), x.dtype)])
        if not ctx.set_input_shape(inp, tuple(x.shape)):
            raise EdgeSDKError(f"{tower} engine: input {inp} shape {tuple(x.shape)} is outside its profile (batch {lo}..{hi})",
                               "rebuild with a batch range that covers it: load_or_build(..., batch=(min, opt, max))")
        specs = {o: (tuple(ctx.get_tensor_shape(o)), np.dtype(trt.nptype(engine.get_tensor_dtype(o)))) for o in outs}

        def run(stream: int):
            if not ctx.execute_async_v3(stream):
                raise EdgeSDKError(f"TensorRT failed to run the {tower} engine", "see TensorRT's log above; " + ENGINE_FIX)

        res = self.mem.execute(ctx, {inp: x}, specs, run)
        return [np.ascontiguousarray(res[o][:n], dtype=np.float32) for o in outs]

    def _run_audio(self, x):
        return self._run("audio", x)

    def _run_image(self, x):
        return self._run("image", x)
