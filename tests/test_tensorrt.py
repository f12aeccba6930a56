"""TensorRT engine planning, caching and checks; build and run wiring against a fake ``tensorrt``.

TensorRT is not installable without an NVIDIA GPU, so the pure parts are tested directly,
build_engine / load_or_build / TrtTowers run against a small stand-in module that records
what they ask of the API, and one ``gpu`` test builds and runs real engines where it can.
"""

import json
import subprocess
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edge_sdk.runtime.tensorrt as trtmod
from edge_sdk.bundle import sha256_file
from edge_sdk.errors import ConfigError, EdgeSDKError, ModelFileError
from edge_sdk.runtime.tensorrt import (ENGINE_FIX, BuildPlan, TrtTowers, build_engine, cache_key, check_engine, default_cache_dir,
                                       engine_path, estimate_build_seconds, gpu_info, load_or_build, onnx_facts, plan_build, trt_major)

GPU = {"name": "Orin", "compute_capability": "8.7", "memory_gb": 30.6}
IMG = {"image": (3, 64, 64)}


def _plan(precision="fp16", version="10.3.0", **kw):
    kw.setdefault("has_qdq", precision == "int8")
    kw.setdefault("graph_fp16", precision == "fp16")
    return plan_build("image.onnx", precision, version, IMG, **kw)


# --- tiny ONNX graphs -------------------------------------------------------------------------------

def _audio_onnx(path, *, qdq=False, fp16=False, samples=16, dim=4, batch="B"):
    w = np.random.default_rng(0).standard_normal((samples, dim)).astype(np.float16 if fp16 else np.float32)
    inits, nodes, x = [numpy_helper.from_array(w, "W")], [], "wave"
    if qdq:
        inits += [numpy_helper.from_array(np.array(0.05, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "z")]
        nodes += [helper.make_node("QuantizeLinear", ["wave", "s", "z"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"])]
        x = "dq"
    if fp16:
        nodes += [helper.make_node("Cast", [x], ["x16"], to=TensorProto.FLOAT16), helper.make_node("MatMul", ["x16", "W"], ["y16"]),
                  helper.make_node("Cast", ["y16"], ["audio_emb"], to=TensorProto.FLOAT)]
    else:
        nodes.append(helper.make_node("MatMul", [x, "W"], ["audio_emb"]))
    g = helper.make_graph(nodes, "audio", [helper.make_tensor_value_info("wave", TensorProto.FLOAT, [batch, samples])],
                          [helper.make_tensor_value_info("audio_emb", TensorProto.FLOAT, [batch, dim])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _image_onnx(path, size=8, dim=4):
    w = np.random.default_rng(1).standard_normal((dim, 3, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["image", "W"], ["image_map"]),
             helper.make_node("ReduceMean", ["image_map"], ["image_emb"], axes=[2, 3], keepdims=0)]
    g = helper.make_graph(nodes, "image", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["B", 3, size, size])],
                          [helper.make_tensor_value_info("image_emb", TensorProto.FLOAT, ["B", dim]),
                           helper.make_tensor_value_info("image_map", TensorProto.FLOAT, ["B", dim, size, size])],
                          [numpy_helper.from_array(w, "W")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


# --- planning ---------------------------------------------------------------------------------------

def test_trt_major():
    assert trt_major("10.3.0.30") == 10 and trt_major("11.4") == 11 and trt_major("12") == 12
    with pytest.raises(ConfigError):
        trt_major("ten")


def test_trt10_fp16_and_fp32_plans_use_weak_typing_flags():
    p = _plan("fp16")
    assert not p.strongly_typed and p.flags == ("FP16",) and p.dla_core is None
    assert _plan("fp16", graph_fp16=False).flags == ("FP16",)  # TRT 10 takes the FP32 graph with the flag
    assert _plan("fp32").flags == () and not _plan("fp32").strongly_typed
    assert _plan("fp32").cleared == ("TF32",) and _plan("fp16").cleared == ()  # fp32 is strict FP32, not TF32


def test_trt10_int8_needs_qdq_and_keeps_fp16_fallback():
    assert _plan("int8").flags == ("INT8", "FP16") and not _plan("int8").strongly_typed
    with pytest.raises(ConfigError) as e:
        _plan("int8", has_qdq=False)
    assert "image.onnx" in str(e.value) and "calibrator" in str(e.value) and "edge-sdk export --precision int8" in e.value.fix


def test_trt11_plans_are_strongly_typed_without_flags():
    for precision in ("fp32", "fp16", "int8"):
        p = _plan(precision, "11.4.0")
        assert p.strongly_typed and p.flags == ()


def test_trt11_refuses_fp16_without_fp16_graph_and_int8_without_qdq():
    with pytest.raises(ConfigError) as e:
        _plan("fp16", "11.0.0", graph_fp16=False)
    assert "strongly typed" in str(e.value) and "fp16 ONNX" in e.value.fix
    with pytest.raises(ConfigError) as e:
        _plan("int8", "11.0.0", has_qdq=False)
    assert "Q/DQ" in str(e.value) and "edge-sdk export --precision int8" in e.value.fix


def test_graph_types_must_match_the_precision():
    with pytest.raises(ConfigError, match="Q/DQ"):
        _plan("fp16", has_qdq=True)
    with pytest.raises(ConfigError, match="FP16"):
        _plan("fp32", graph_fp16=True)
    with pytest.raises(ConfigError):
        _plan("bf16")
    with pytest.raises(ConfigError, match="too old"):
        _plan("fp32", "8.6.1")


def test_dla_rules():
    p = _plan("fp16", dla_core=1, batch=(1, 4, 16))
    assert p.flags == ("FP16", "GPU_FALLBACK") and p.dla_core == 1
    assert p.profiles == (("image", (4, 3, 64, 64), (4, 3, 64, 64), (4, 3, 64, 64)),)  # static, at the opt batch
    assert _plan("int8", dla_core=0).flags == ("INT8", "FP16", "GPU_FALLBACK")
    with pytest.raises(ConfigError, match="no FP32"):
        _plan("fp32", dla_core=0)
    with pytest.raises(ConfigError, match="TensorRT 10 only"):
        _plan("fp16", "11.4.0", dla_core=0)
    with pytest.raises(ConfigError):
        _plan("fp16", dla_core=-1)


def test_profiles_from_inputs():
    p = plan_build("a.onnx", "fp32", "10.7.0", {"wave": (16000,), "extra": (2, 5)}, has_qdq=False, graph_fp16=False, batch=(2, 8, 64))
    assert p.profiles == (("wave", (2, 16000), (8, 16000), (64, 16000)), ("extra", (2, 2, 5), (8, 2, 5), (64, 2, 5)))
    assert p.to_dict()["profiles"][0] == ["wave", [2, 16000], [8, 16000], [64, 16000]]
    assert json.dumps(p.to_dict())  # JSON-ready
    with pytest.raises(ConfigError, match="fixed sizes"):
        plan_build("a.onnx", "fp32", "10.7.0", {"wave": (-1,)}, has_qdq=False, graph_fp16=False)


@pytest.mark.parametrize("batch", [(8, 1, 32), (0, 8, 32), (1, 8), (1, 8.0, 32), (1, 8, 4), "1,8,32"])
def test_bad_batch_is_refused(batch):
    with pytest.raises(ConfigError, match="batch"):
        _plan("fp16", batch=batch)


# --- cache key, paths, engine checks ----------------------------------------------------------------

def test_cache_key_changes_with_each_input_and_is_stable_otherwise():
    base = cache_key("a" * 64, GPU, "10.3.0", _plan("fp16"))
    assert len(base) == 24 and base == cache_key("a" * 64, dict(GPU), "10.3.0", _plan("fp16"))
    moved = plan_build("/elsewhere/image.onnx", "fp16", "10.3.0", IMG, has_qdq=False, graph_fp16=True)
    assert cache_key("a" * 64, GPU, "10.3.0", moved) == base  # the ONNX path is not part of it
    others = [cache_key("a" * 64, {**GPU, "compute_capability": "8.6"}, "10.3.0", _plan("fp16")),
              cache_key("a" * 64, {**GPU, "name": "Thor"}, "10.3.0", _plan("fp16")),
              cache_key("a" * 64, GPU, "10.3.1", _plan("fp16")),
              cache_key("b" * 64, GPU, "10.3.0", _plan("fp16")),
              cache_key("a" * 64, GPU, "10.3.0", _plan("int8")),
              cache_key("a" * 64, GPU, "10.3.0", _plan("fp16", batch=(1, 8, 64)))]
    assert len({base, *others}) == len(others) + 1


def test_engine_path_and_default_cache_dir(tmp_path, monkeypatch):
    assert engine_path(tmp_path, "audio", _plan("int8"), "k" * 24) == tmp_path / f"audio.int8.{'k' * 24}.engine"
    monkeypatch.setenv("EDGE_SDK_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" / "engines"  # beside the unpacked zip bundles (c/bundles)
    assert engine_path(None, "image", _plan("fp16"), "x").parent == tmp_path / "c" / "engines"
    monkeypatch.delenv("EDGE_SDK_CACHE")
    assert default_cache_dir().parts[-3:] == (".cache", "edge_sdk", "engines")


def test_check_engine_accepts_a_match_and_names_the_file_otherwise(tmp_path):
    meta = {"gpu_name": "Orin", "compute_capability": "8.7", "trt_version": "10.3.0", "model_sha256": "ab"}
    eng = tmp_path / "audio.fp16.k.engine"
    check_engine(meta, GPU, "10.3.0", eng)
    check_engine(meta, GPU, "10.3.0", eng, model_sha256="ab")
    for bad_gpu, ver, sha in [({**GPU, "compute_capability": "8.6"}, "10.3.0", None), ({**GPU, "name": "A100"}, "10.3.0", None),
                              (GPU, "10.7.0", None), (GPU, "10.3.0", "cd")]:
        with pytest.raises(ModelFileError) as e:
            check_engine(meta, bad_gpu, ver, eng, model_sha256=sha)
        assert str(eng) in str(e.value) and e.value.fix == ENGINE_FIX
    with pytest.raises(ModelFileError):
        check_engine({}, GPU, "10.3.0", eng)


def test_estimate_grows_with_size_int8_and_dla():
    small, big = estimate_build_seconds(1 << 20, "fp16", False), estimate_build_seconds(50 << 20, "fp16", False)
    assert 0 < small < big
    assert estimate_build_seconds(50 << 20, "int8", False) > big
    assert estimate_build_seconds(50 << 20, "fp16", True) > big


# --- ONNX facts -------------------------------------------------------------------------------------

def test_onnx_facts_plain_qdq_and_fp16(tmp_path):
    plain = onnx_facts(_audio_onnx(tmp_path / "a.onnx"))
    assert plain == {"inputs": {"wave": (16,)}, "fixed_batch": {}, "has_qdq": False, "graph_fp16": False, "opset": 17}
    assert onnx_facts(_audio_onnx(tmp_path / "b1.onnx", batch=1))["fixed_batch"] == {"wave": 1}
    q = onnx_facts(_audio_onnx(tmp_path / "q.onnx", qdq=True))
    assert q["has_qdq"] and not q["graph_fp16"]
    h = onnx_facts(_audio_onnx(tmp_path / "h.onnx", fp16=True))
    assert h["graph_fp16"] and not h["has_qdq"] and h["inputs"] == {"wave": (16,)}
    img = onnx_facts(_image_onnx(tmp_path / "i.onnx"))
    assert img["inputs"] == {"image": (3, 8, 8)} and not img["graph_fp16"]


def test_onnx_facts_bad_file_names_it(tmp_path):
    bad = tmp_path / "audio.fp32.onnx"
    bad.write_bytes(b"not an onnx file")
    for path in (bad, tmp_path / "missing.onnx"):
        with pytest.raises(ModelFileError) as e:
            onnx_facts(path)
        assert str(path) in str(e.value)
    g = helper.make_graph([helper.make_node("Identity", ["gain"], ["audio_emb"])], "g",
                          [helper.make_tensor_value_info("gain", TensorProto.FLOAT, [])],
                          [helper.make_tensor_value_info("audio_emb", TensorProto.FLOAT, [])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "scalar.onnx"))
    with pytest.raises(ModelFileError, match="input 'gain' has no shape"):
        onnx_facts(tmp_path / "scalar.onnx")


def test_module_import_is_light():
    code = ("import sys, edge_sdk.runtime.tensorrt; "
            "print(sorted(m for m in ('torch', 'tensorrt', 'onnx', 'cuda') if m in sys.modules))")
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
    src = _audio_onnx(tmp_path / "audio.fp32.onnx")
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
    src = _audio_onnx(tmp_path / "audio.fp16.onnx", fp16=True)
    plan = plan_build(src, "fp16", "11.4.0", {"wave": (16,)}, has_qdq=False, graph_fp16=True)
    build_engine(plan, tmp_path / "audio.fp16.k.engine", progress=False)
    assert calls["network_flags"] == 1 and calls["flags"] == [] and "progress_monitor" not in calls


def test_build_engine_failures_are_clear(tmp_path, monkeypatch):
    src = _audio_onnx(tmp_path / "audio.fp32.onnx")
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
    src = _audio_onnx(tmp_path / "audio.int8.qdq.onnx", qdq=True)
    path = load_or_build(src, "audio", "int8", cache_dir=tmp_path / "c", progress=False)
    assert path.name.startswith("audio.int8.") and path.suffix == ".engine" and calls["builds"] == 1
    side = path.with_name(path.name + ".json")
    assert json.loads(side.read_text())["plan"]["flags"] == ["INT8", "FP16"]
    assert load_or_build(src, "audio", "int8", cache_dir=tmp_path / "c", progress=False) == path and calls["builds"] == 1
    side.write_text(json.dumps({**json.loads(side.read_text()), "trt_version": "10.0.0"}))
    assert load_or_build(src, "audio", "int8", cache_dir=tmp_path / "c", progress=False) == path and calls["builds"] == 2
    with pytest.raises(ConfigError, match="Q/DQ"):
        load_or_build(_audio_onnx(tmp_path / "audio.fp32.onnx"), "audio", "int8", cache_dir=tmp_path / "c")
    with pytest.raises(ConfigError, match="fixed batch") as e:  # a profile over batches would fail inside TensorRT
        load_or_build(_audio_onnx(tmp_path / "b1.onnx", batch=1), "audio", "fp32", cache_dir=tmp_path / "c")
    assert "b1.onnx" in str(e.value) and "dynamic batch" in e.value.fix


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


def test_plan_is_frozen():
    with pytest.raises(AttributeError):
        _plan().precision = "fp32"
    assert isinstance(_plan(), BuildPlan)


# --- real TensorRT on a GPU -------------------------------------------------------------------------

@pytest.mark.gpu
def test_real_engines_build_and_match_onnxruntime(tmp_path, monkeypatch):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (it needs an NVIDIA GPU)")
    try:
        gpu_info()
    except EdgeSDKError as e:
        pytest.skip(f"no usable CUDA GPU: {e}")
    from edge_sdk.runtime.backends import OrtTowers

    monkeypatch.setenv("EDGE_SDK_CACHE", str(tmp_path / "ort"))  # ORT's TensorRT provider caches there, not in ~/.cache
    audio, image = _audio_onnx(tmp_path / "audio.fp32.onnx"), _image_onnx(tmp_path / "image.fp32.onnx")
    engines = [load_or_build(p, t, "fp32", cache_dir=tmp_path / "c", batch=(1, 4, 8)) for p, t in ((audio, "audio"), (image, "image"))]
    trt_towers, ort = TrtTowers(*engines, None), OrtTowers(audio, image, None)
    rng = np.random.default_rng(0)
    waves, images = rng.standard_normal((11, 16)).astype(np.float32), rng.standard_normal((5, 3, 8, 8)).astype(np.float32)
    assert np.allclose(trt_towers.embed_audio(waves), ort.embed_audio(waves), atol=1e-3)
    for got, want in zip(trt_towers.embed_image(images), ort.embed_image(images), strict=True):
        assert np.allclose(got, want, atol=1e-3)
    assert load_or_build(audio, "audio", "fp32", cache_dir=tmp_path / "c", batch=(1, 4, 8)) == engines[0]  # cached


def test_onnxruntime_providers_put_tensorrt_first_for_float_graphs(tmp_path, monkeypatch):
    """ONNX Runtime's TensorRT provider (onnxruntime-gpu on a Jetson) for FP32/FP16 graphs,
    with a batch profile and an engine cache; never for ORT's INT8 QDQ graphs (asymmetric
    activations, which TensorRT does not take); CPU-only onnxruntime gets the CPU."""
    from edge_sdk.runtime.backends import ort_providers

    monkeypatch.setenv("EDGE_SDK_CACHE", str(tmp_path))
    every = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert ort_providers(["CPUExecutionProvider"], "fp16", {"wave": (16000,)}) == ["CPUExecutionProvider"]
    assert ort_providers(every, "int8", {"wave": (16000,)}) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    (name, opts), *rest = ort_providers(every, "fp16", {"image": (3, 96, 96)}, max_batch=32)
    assert name == "TensorrtExecutionProvider" and rest == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert opts["trt_fp16_enable"] is True and opts["trt_engine_cache_enable"] is True
    cache = tmp_path / "engines" / "ort-trt"
    assert opts["trt_engine_cache_path"] == str(cache) and cache.is_dir()  # ORT makes one level only
    model = _image_onnx(tmp_path / "image.fp32.onnx")
    (_, mine), *_ = ort_providers(every, "fp32", {}, model=model)
    (tmp_path / "retrained").mkdir()
    (_, other), *_ = ort_providers(every, "fp32", {}, model=_image_onnx(tmp_path / "retrained" / "image.fp32.onnx", dim=5))
    # ORT keys its engines by file and tensor names, not weights: one folder per graph file's content
    assert mine["trt_engine_cache_path"] == str(cache / sha256_file(model)[:16]) != other["trt_engine_cache_path"]
    assert mine["trt_timing_cache_path"] == mine["trt_engine_cache_path"] and Path(mine["trt_engine_cache_path"]).is_dir()
    assert (opts["trt_profile_min_shapes"], opts["trt_profile_opt_shapes"], opts["trt_profile_max_shapes"]) == (
        "image:1x3x96x96", "image:1x3x96x96", "image:32x3x96x96")
    (_, opts), *_ = ort_providers(every, "fp32", {})  # no spec: no profile, TensorRT builds per shape
    assert opts["trt_fp16_enable"] is False and "trt_profile_min_shapes" not in opts
