"""TensorRT engines: build and run wiring against a fake ``tensorrt``, and real engines on a GPU.

TensorRT is not installable without an NVIDIA GPU, so (the pure plan is tested in test_trt_plan.py)
build_engine / load_or_build / TrtTowers run against a small stand-in module that records
what they ask of the API, and one ``gpu`` test builds and runs real engines where it can.
"""

import json
import subprocess
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest
from tiny_onnx import audio_onnx, image_onnx

import edge_sdk.runtime.backends.tensorrt as trtmod
from edge_sdk.bundle import sha256_file
from edge_sdk.errors import ConfigError, EdgeSDKError, ModelFileError
from edge_sdk.runtime.backends.tensorrt import TrtTowers, build_engine, gpu_info, load_or_build
from edge_sdk.runtime.backends.trt_plan import ENGINE_FIX, onnx_facts, plan_build

GPU = {"name": "Orin", "compute_capability": "8.7", "memory_gb": 30.6}


def test_module_import_is_light():
    code = "import sys, edge_sdk.runtime.backends.tensorrt; print(sorted(m for m in ('torch', 'tensorrt', 'onnx', 'cuda') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_no_gpu_and_no_tensorrt_say_what_to_install(monkeypatch, tmp_path):
    for name in ("torch", "cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart", "tensorrt"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(EdgeSDKError) as e:
        gpu_info()
    assert "cuda-python" in e.value.fix
    with pytest.raises(EdgeSDKError, match="TensorRT is not installed"):
        TrtTowers(tmp_path / "a.engine", tmp_path / "i.engine", None)
    with pytest.raises(EdgeSDKError, match="TensorRT is not installed"):
        load_or_build(tmp_path / "a.onnx", "audio", "fp32", cache_dir=tmp_path)


# --- build and run wiring against a fake tensorrt ---------------------------------------------------


def _fake_trt(monkeypatch, version="10.3.0", parse_ok=True, build_ok=True):
    calls = {"flags": [], "profiles": [], "builds": 0, "phases": []}

    class Rec:  # config and engine attributes land in calls
        def __setattr__(self, k, v):
            calls[k] = v

    class Config(Rec):
        def set_memory_pool_limit(self, pool, n):
            calls["workspace"] = (pool, n)

        def set_flag(self, f):
            calls["flags"].append(f)

        def clear_flag(self, f):
            calls.setdefault("cleared", []).append(f)

        def add_optimization_profile(self, p):
            calls["profile_added"] = True

    class Net:
        def __init__(self):
            self.names = []

        num_inputs = property(lambda self: len(self.names))

        def get_input(self, i):
            return SimpleNamespace(name=self.names[i])

    class Parser:
        def __init__(self, net, logger):
            self.net, self.num_errors = net, 0 if parse_ok else 1

        def parse_from_file(self, path):
            self.net.names = list(onnx_facts(path)["inputs"])
            return parse_ok

        def get_error(self, i):
            return "In node 3 (Foo): UNSUPPORTED_NODE"

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls["network_flags"] = flags
            return Net()

        create_builder_config = staticmethod(Config)

        def create_optimization_profile(self):
            return SimpleNamespace(set_shape=lambda *a: calls["profiles"].append(a))

        def build_serialized_network(self, net, config):
            calls["builds"] += 1
            mon = calls.get("progress_monitor")
            if mon is not None:
                mon.phase_start("Building engine", None, 3)
                assert mon.step_complete("Building engine", 0) is True
                mon.phase_finish("Building engine")
            return b"ENGINE" if build_ok else None

    class Monitor:
        def __init__(self):
            calls["phases"].append("monitor")

    mod = types.ModuleType("tensorrt")
    mod.__version__ = version
    mod.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, sev: None})
    mod.Builder, mod.OnnxParser, mod.IProgressMonitor = Builder, Parser, Monitor
    mod.NetworkDefinitionCreationFlag = SimpleNamespace(STRONGLY_TYPED=0)
    mod.BuilderFlag = SimpleNamespace(FP16="FP16", INT8="INT8", GPU_FALLBACK="GPU_FALLBACK", TF32="TF32")
    mod.MemoryPoolType, mod.DeviceType = SimpleNamespace(WORKSPACE="WORKSPACE"), SimpleNamespace(DLA="DLA")
    monkeypatch.setitem(sys.modules, "tensorrt", mod)
    monkeypatch.setattr(trtmod, "gpu_info", lambda: dict(GPU))
    return mod, calls


def test_build_engine_trt10_flags_profiles_and_atomic_write(tmp_path, monkeypatch, capsys):
    _, calls = _fake_trt(monkeypatch)
    src = audio_onnx(tmp_path / "audio.fp32.onnx")
    plan = plan_build(src, "fp16", "10.3.0", {"wave": (16,)}, has_qdq=False, graph_fp16=False, dla_core=0, workspace_mb=256)
    dest = tmp_path / "cache" / "audio.fp16.k.engine"
    meta = build_engine(plan, dest)
    assert dest.read_bytes() == b"ENGINE" and [p.name for p in dest.parent.iterdir()] == [dest.name]
    assert calls["network_flags"] == 0 and calls["flags"] == ["FP16", "GPU_FALLBACK"]
    assert calls["default_device_type"] == "DLA" and calls["DLA_core"] == 0 and calls["workspace"] == ("WORKSPACE", 256 << 20)
    assert calls["profiles"] == [("wave", (8, 16), (8, 16), (8, 16))] and calls["phases"] == ["monitor"]
    assert meta["gpu_name"] == "Orin" and meta["compute_capability"] == "8.7" and meta["trt_version"] == "10.3.0"
    assert meta["model_sha256"] == sha256_file(src) and meta["plan"] == plan.to_dict() and meta["build_seconds"] >= 0
    err = capsys.readouterr().err
    assert "building audio engine (fp16, TensorRT 10.3) — about" in err and "Building engine" in err
    assert "cleared" not in calls
    build_engine(plan_build(src, "fp32", "10.3.0", {"wave": (16,)}, has_qdq=False, graph_fp16=False), dest, progress=False)
    assert calls["cleared"] == ["TF32"]


def test_build_engine_trt11_is_strongly_typed(tmp_path, monkeypatch):
    _, calls = _fake_trt(monkeypatch, version="11.4.0")
    src = audio_onnx(tmp_path / "audio.fp16.onnx", fp16=True)
    plan = plan_build(src, "fp16", "11.4.0", {"wave": (16,)}, has_qdq=False, graph_fp16=True)
    build_engine(plan, tmp_path / "audio.fp16.k.engine", progress=False)
    assert calls["network_flags"] == 1 and calls["flags"] == [] and "progress_monitor" not in calls


def test_build_engine_failures_are_clear(tmp_path, monkeypatch):
    src = audio_onnx(tmp_path / "audio.fp32.onnx")
    plan = plan_build(src, "fp32", "10.3.0", {"wave": (16,)}, has_qdq=False, graph_fp16=False)
    _fake_trt(monkeypatch, parse_ok=False)
    with pytest.raises(ModelFileError) as e:
        build_engine(plan, tmp_path / "x.engine", progress=False)
    assert str(src) in str(e.value) and "UNSUPPORTED_NODE" in str(e.value)
    _fake_trt(monkeypatch, build_ok=False)
    with pytest.raises(EdgeSDKError, match="failed to build"):
        build_engine(plan, tmp_path / "x.engine", progress=False)
    assert not list(tmp_path.glob("x.engine*"))
    _fake_trt(monkeypatch, version="10.7.0")
    with pytest.raises(ConfigError, match="10.3.0"):
        build_engine(plan, tmp_path / "x.engine", progress=False)


def test_load_or_build_caches_and_rebuilds_stale(tmp_path, monkeypatch):
    _, calls = _fake_trt(monkeypatch)
    src = audio_onnx(tmp_path / "audio.int8.qdq.onnx", qdq=True)
    path = load_or_build(src, "audio", "int8", cache_dir=tmp_path / "c", progress=False)
    assert path.name.startswith("audio.int8.") and path.suffix == ".engine" and calls["builds"] == 1
    side = path.with_name(path.name + ".json")
    assert json.loads(side.read_text())["plan"]["flags"] == ["INT8", "FP16"]
    assert load_or_build(src, "audio", "int8", cache_dir=tmp_path / "c", progress=False) == path and calls["builds"] == 1
    side.write_text(json.dumps({**json.loads(side.read_text()), "trt_version": "10.0.0"}))
    assert load_or_build(src, "audio", "int8", cache_dir=tmp_path / "c", progress=False) == path and calls["builds"] == 2
    with pytest.raises(ConfigError, match="Q/DQ"):
        load_or_build(audio_onnx(tmp_path / "audio.fp32.onnx"), "audio", "int8", cache_dir=tmp_path / "c")
    # a graph traced for one batch size (the model read len(x)): a static profile at it, never a range
    fixed = load_or_build(audio_onnx(tmp_path / "b1.onnx", batch=1), "audio", "fp32", cache_dir=tmp_path / "c", progress=False)
    assert json.loads(fixed.with_name(fixed.name + ".json").read_text())["plan"]["profiles"][0][1:] == [[1, 16], [1, 16], [1, 16]]


def _fake_runtime(monkeypatch, mod, static_batch=None):
    """Engines whose outputs carry each input row's mean, so padding and slicing are visible."""
    shapes = {"wave": (16,), "audio_emb": (4,), "image": (3, 8, 8), "image_emb": (4,), "image_map": (4, 2, 2)}
    ios = {b"AUDIO": ["wave", "audio_emb"], b"IMAGE": ["image", "image_emb", "image_map"]}
    lo, hi = (static_batch, static_batch) if static_batch else (1, 8)

    class Context:
        def __init__(self):
            self.batch, self.seen = None, []

        def set_input_shape(self, name, shape):
            self.batch = shape[0]
            self.seen.append(shape[0])
            return lo <= shape[0] <= hi and tuple(shape[1:]) == shapes[name]

        def get_tensor_shape(self, name):
            return (self.batch, *shapes[name])

        def execute_async_v3(self, stream):
            return True

    class Engine:
        def __init__(self, names):
            self.names, self.ctx = names, Context()

        num_io_tensors = property(lambda self: len(self.names))

        def get_tensor_name(self, i):
            return self.names[i]

        def get_tensor_mode(self, name):
            return "IN" if name == self.names[0] else "OUT"

        def get_tensor_dtype(self, name):
            return "f32"

        def get_tensor_profile_shape(self, name, profile):
            return [(lo, *shapes[name]), (lo, *shapes[name]), (hi, *shapes[name])]

        def create_execution_context(self):
            return self.ctx

    class Memory:
        def execute(self, ctx, feeds, outs, run):
            run(0)
            (x,) = feeds.values()
            means = x.reshape(len(x), -1).mean(1)
            return {n: np.broadcast_to(means.reshape(-1, *[1] * (len(s) - 1)), s).copy() for n, (s, _) in outs.items()}

    mod.Runtime = lambda logger: SimpleNamespace(deserialize_cuda_engine=lambda b: Engine(ios[b]) if b in ios else None)
    mod.TensorIOMode = SimpleNamespace(INPUT="IN", OUTPUT="OUT")
    mod.nptype = lambda t: np.float32
    monkeypatch.setattr(trtmod, "_device_memory", Memory)


@pytest.mark.parametrize("static_batch", [None, 4])
def test_trt_towers_batches_pads_and_slices(tmp_path, monkeypatch, static_batch):
    mod, _ = _fake_trt(monkeypatch)
    _fake_runtime(monkeypatch, mod, static_batch)
    (tmp_path / "a.engine").write_bytes(b"AUDIO")
    (tmp_path / "i.engine").write_bytes(b"IMAGE")
    towers = TrtTowers(tmp_path / "a.engine", tmp_path / "i.engine", None, batch_size=32)
    assert towers.batch_size == (static_batch or 8)
    waves = np.arange(11 * 16, dtype=np.float32).reshape(11, 16)
    emb = towers.embed_audio(waves)
    assert emb.shape == (11, 4) and emb.dtype == np.float32 and np.allclose(emb[:, 0], waves.mean(1))
    seen = towers.towers["audio"][1].seen
    assert seen == ([4, 4, 4] if static_batch else [8, 3])  # 11 = 4+4+3 padded to 4 on a static engine
    e, m = towers.embed_image(np.ones((3, 3, 8, 8), np.float32))
    assert e.shape == (3, 4) and m.shape == (3, 4, 2, 2)


def test_trt_towers_refuses_bad_engines_naming_the_file(tmp_path, monkeypatch):
    mod, _ = _fake_trt(monkeypatch)
    _fake_runtime(monkeypatch, mod)
    a, i, junk = tmp_path / "a.engine", tmp_path / "i.engine", tmp_path / "junk.engine"
    a.write_bytes(b"AUDIO")
    i.write_bytes(b"IMAGE")
    junk.write_bytes(b"\x00garbage")
    cases = [(junk, i), (tmp_path / "none.engine", i), (i, a)]  # not an engine, missing, towers swapped
    for audio, image in cases:
        with pytest.raises(ModelFileError) as e:
            TrtTowers(audio, image, None)
        assert str(audio) in str(e.value) and ENGINE_FIX in e.value.fix
    a.with_name(a.name + ".json").write_text(json.dumps({"gpu_name": "Orin", "compute_capability": "7.2", "trt_version": "10.3.0"}))
    with pytest.raises(ModelFileError, match="compute_capability"):
        TrtTowers(a, i, None)


def test_trt_towers_load_dla_engines_on_the_core_they_were_built_for(tmp_path, monkeypatch):
    mod, _ = _fake_trt(monkeypatch)
    _fake_runtime(monkeypatch, mod, static_batch=4)
    a, i = tmp_path / "a.engine", tmp_path / "i.engine"
    a.write_bytes(b"AUDIO")
    i.write_bytes(b"IMAGE")
    meta = {"gpu_name": "Orin", "compute_capability": "8.7", "trt_version": "10.3.0", "plan": {"dla_core": 1}}
    a.with_name(a.name + ".json").write_text(json.dumps(meta))
    assert TrtTowers(a, i, None).runtime.DLA_core == 1  # TensorRT's runtime default is -1


# --- real TensorRT on a GPU -------------------------------------------------------------------------


@pytest.mark.gpu
def test_real_engines_build_and_match_onnxruntime(tmp_path, monkeypatch):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (it needs an NVIDIA GPU)")
    try:
        gpu_info()
    except EdgeSDKError as e:
        pytest.skip(f"no usable CUDA GPU: {e}")
    from edge_sdk.runtime.backends.onnxruntime import OrtTowers

    monkeypatch.setenv("EDGE_SDK_CACHE", str(tmp_path / "ort"))  # ORT's TensorRT provider caches there, not in ~/.cache
    audio, image = audio_onnx(tmp_path / "audio.fp32.onnx"), image_onnx(tmp_path / "image.fp32.onnx")
    engines = [load_or_build(p, t, "fp32", cache_dir=tmp_path / "c", batch=(1, 4, 8)) for p, t in ((audio, "audio"), (image, "image"))]
    trt_towers, ort = TrtTowers(*engines, None), OrtTowers(audio, image, None)
    rng = np.random.default_rng(0)
    waves, images = rng.standard_normal((11, 16)).astype(np.float32), rng.standard_normal((5, 3, 8, 8)).astype(np.float32)
    assert np.allclose(trt_towers.embed_audio(waves), ort.embed_audio(waves), atol=1e-3)
    for got, want in zip(trt_towers.embed_image(images), ort.embed_image(images), strict=True):
        assert np.allclose(got, want, atol=1e-3)
    assert load_or_build(audio, "audio", "fp32", cache_dir=tmp_path / "c", batch=(1, 4, 8)) == engines[0]  # cached
