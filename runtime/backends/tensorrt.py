"""The TensorRT backend: engines built on the device from a bundle's ONNX, cached, and run.

Engines are specific to the GPU and the TensorRT version, so bundles carry ONNX (FP32,
FP16-in-graph and explicit Q/DQ INT8) and the engine is built where it runs
(:func:`load_or_build`, following the plan of :mod:`.trt_plan`), then cached as
``<cache>/<tower>.<precision>.<key>.engine`` with a ``.json`` sidecar holding what it was
built for. :class:`TrtTowers` runs two engines, with device memory from torch (CUDA) or
cuda-python. Nothing here imports tensorrt, torch or a CUDA binding at module import.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

from edge_sdk.bundle import sha256_file
from edge_sdk.errors import ConfigError, EdgeSDKError, ModelFileError
from edge_sdk.runner import Towers
from edge_sdk.runtime.backends.trt_plan import (
    ENGINE_FIX,
    BuildPlan,
    cache_key,
    check_engine,
    engine_path,
    estimate_build_seconds,
    onnx_facts,
    plan_build,
)

__all__ = ["TrtTowers", "build_engine", "gpu_info", "load_or_build"]

log = logging.getLogger(__name__)

_IO = {"audio": ("wave", ("audio_emb",)), "image": ("image", ("image_emb", "image_map"))}
_NO_GPU_FIX = (
    "run on a machine with an NVIDIA GPU and driver, with TensorRT and cuda-python "
    "(pip install cuda-python) or torch with CUDA; or use the onnxruntime backend"
)


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
            return {
                "name": name.rstrip("\x00").strip(),
                "compute_capability": f"{p.major}.{p.minor}",
                "memory_gb": round(p.totalGlobalMem / 2**30, 1),
            }
        except EdgeSDKError:
            pass
    torch = _cuda_torch()
    if torch is not None:
        p = torch.cuda.get_device_properties(0)
        return {"name": p.name, "compute_capability": f"{p.major}.{p.minor}", "memory_gb": round(p.total_memory / 2**30, 1)}
    raise EdgeSDKError("no CUDA GPU found: TensorRT engines are built and run on an NVIDIA GPU", _NO_GPU_FIX)


def _import_trt():
    try:
        import tensorrt as trt
    except ImportError:
        trt = None
    if not hasattr(trt, "Builder"):
        raise EdgeSDKError(
            "TensorRT is not installed (or is a stub package)",
            "on Jetson it comes with JetPack; elsewhere pip install 'edge_sdk[tensorrt]' on a machine with an NVIDIA GPU",
        )
    return trt


def _say(msg: str, loud: bool) -> None:
    log.info(msg)
    if loud and not log.isEnabledFor(logging.INFO):
        sys.stderr.write(msg + "\n")  # an engine build takes minutes: its progress shows without -v too
        sys.stderr.flush()


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
        raise ConfigError(
            f"the plan is for TensorRT {plan.trt_version}, this is {trt.__version__}", "plan again with tensorrt.__version__ (load_or_build does)"
        )
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
        raise ModelFileError(
            f"{onnx}: TensorRT {trt.__version__} cannot parse it ({errors})",
            "re-export the ONNX (edge-sdk export), or use a TensorRT version that supports its opset and ops",
        )
    names = {network.get_input(i).name for i in range(network.num_inputs)}
    if missing := [p[0] for p in plan.profiles if p[0] not in names]:
        raise ModelFileError(
            f"{onnx}: no input named {', '.join(missing)} (it has {', '.join(sorted(names))})", "plan from onnx_facts() of this file"
        )
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
        raise EdgeSDKError(
            f"TensorRT {trt.__version__} failed to build the {tower} engine from {onnx} ({plan.precision}"
            f"{', DLA' if plan.dla_core is not None else ''}); its log above has the reason",
            "try another precision, a larger workspace_mb, or dla_core=None; else report the log",
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(memoryview(blob))
    os.replace(tmp, dest)
    _say(f"built {tower} engine in {seconds:.0f} s: {dest}", progress)
    return {
        "gpu_name": gpu["name"],
        "compute_capability": gpu["compute_capability"],
        "trt_version": str(trt.__version__),
        "model_sha256": sha256_file(onnx),
        "plan": plan.to_dict(),
        "build_seconds": seconds,
    }


def load_or_build(
    onnx_path, tower: str, precision: str, *, cache_dir=None, batch=(1, 8, 32), dla_core: int | None = None, progress: bool = True
) -> Path:
    """The cached engine for this ONNX, GPU, TensorRT and plan, built (and cached) when absent or stale."""
    trt = _import_trt()
    version = str(trt.__version__)
    facts = onnx_facts(onnx_path)
    if facts["fixed_batch"]:  # a graph exported for one batch size: a static profile at it
        fixed = set(facts["fixed_batch"].values())
        if len(fixed) != 1:
            raise ConfigError(f"{onnx_path}: inputs with different fixed batch sizes {facts['fixed_batch']}", "re-export the tower (edge-sdk export)")
        batch = (fixed.pop(),) * 3
    plan = plan_build(
        onnx_path, precision, version, facts["inputs"], has_qdq=facts["has_qdq"], graph_fp16=facts["graph_fp16"], batch=batch, dla_core=dla_core
    )
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
            _ck(
                rt.cudaMemcpyAsync(h.ctypes.data, self._buf((id(context), n), h.nbytes), h.nbytes, kinds.cudaMemcpyDeviceToHost, self.stream),
                "cudaMemcpyAsync",
            )
        _ck(rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        return host


def _device_memory():
    torch = _cuda_torch()
    if torch is not None:
        return _TorchMemory(torch)
    rt = _cudart()
    if rt is None:
        raise EdgeSDKError(
            "running TensorRT engines needs CUDA memory from torch (with CUDA) or cuda-python; neither is importable", "pip install cuda-python"
        )
    return _CudartMemory(rt)


class TrtTowers(Towers):
    """Two TensorRT engines (``audio``: wave -> audio_emb; ``image``: image -> image_emb, image_map)."""

    def __init__(self, audio: str | Path, image: str | Path, contract, batch_size: int = 32):
        trt = _import_trt()
        super().__init__(contract, batch_size)
        self.trt, self.mem = trt, _device_memory()
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.towers = {}
        for tower, file in (("audio", audio), ("image", image)):
            path = Path(file)
            engine = self._load(path)
            inp, outs = _IO[tower]
            names = {engine.get_tensor_name(i): engine.get_tensor_mode(engine.get_tensor_name(i)) for i in range(engine.num_io_tensors)}
            if names.get(inp) != trt.TensorIOMode.INPUT or any(names.get(o) != trt.TensorIOMode.OUTPUT for o in outs):
                raise ModelFileError(
                    f"{path}: engine I/O {sorted(names)} is not the {tower} tower's ({inp} -> {', '.join(outs)})",
                    f"pass the {tower} engine; {ENGINE_FIX}",
                )
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
            raise ModelFileError(
                f"{path}: TensorRT {self.trt.__version__} cannot load this engine (built for another GPU or TensorRT version, or damaged)", ENGINE_FIX
            )
        return engine

    def _run(self, tower: str, x: np.ndarray) -> list[np.ndarray]:
        trt = self.trt
        engine, ctx, inp, outs, lo, hi = self.towers[tower]
        n = len(x)
        x = np.ascontiguousarray(x, dtype=trt.nptype(engine.get_tensor_dtype(inp)))
        if n < lo:  # a static-batch (DLA) engine: pad, then drop the padding's outputs
            x = np.concatenate([x, np.zeros((lo - n, *x.shape[1:]), x.dtype)])
        if not ctx.set_input_shape(inp, tuple(x.shape)):
            raise EdgeSDKError(
                f"{tower} engine: input {inp} shape {tuple(x.shape)} is outside its profile (batch {lo}..{hi})",
                "rebuild with a batch range that covers it: load_or_build(..., batch=(min, opt, max))",
            )
        specs = {o: (tuple(ctx.get_tensor_shape(o)), np.dtype(trt.nptype(engine.get_tensor_dtype(o)))) for o in outs}

        def run(stream: int):
            if not ctx.execute_async_v3(stream):
                raise EdgeSDKError(f"TensorRT failed to run the {tower} engine", "see TensorRT's log above; " + ENGINE_FIX)

        res = self.mem.execute(ctx, {inp: x}, specs, run)
        return [np.ascontiguousarray(res[o][:n], dtype=np.float32) for o in outs]

    def run_audio(self, x):
        return self._run("audio", x)

    def run_image(self, x):
        return self._run("image", x)
