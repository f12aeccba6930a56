"""TensorRT build plans, cache keys, engine checks and ONNX facts (pure: no TensorRT needed),
and ONNX Runtime's TensorRT provider options."""

import json
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from tiny_onnx import audio_onnx, image_onnx

from edge_sdk.bundle import sha256_file
from edge_sdk.errors import ConfigError, ModelFileError
from edge_sdk.runtime.backends.trt_plan import (
    ENGINE_FIX,
    BuildPlan,
    cache_key,
    check_engine,
    default_cache_dir,
    engine_path,
    estimate_build_seconds,
    onnx_facts,
    plan_build,
    trt_major,
)

GPU = {"name": "Orin", "compute_capability": "8.7", "memory_gb": 30.6}
IMG = {"image": (3, 64, 64)}


def _plan(precision="fp16", version="10.3.0", **kw):
    kw.setdefault("has_qdq", precision == "int8")
    kw.setdefault("graph_fp16", precision == "fp16")
    return plan_build("image.onnx", precision, version, IMG, **kw)


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
    others = [
        cache_key("a" * 64, {**GPU, "compute_capability": "8.6"}, "10.3.0", _plan("fp16")),
        cache_key("a" * 64, {**GPU, "name": "Thor"}, "10.3.0", _plan("fp16")),
        cache_key("a" * 64, GPU, "10.3.1", _plan("fp16")),
        cache_key("b" * 64, GPU, "10.3.0", _plan("fp16")),
        cache_key("a" * 64, GPU, "10.3.0", _plan("int8")),
        cache_key("a" * 64, GPU, "10.3.0", _plan("fp16", batch=(1, 8, 64))),
    ]
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
    for bad_gpu, ver, sha in [
        ({**GPU, "compute_capability": "8.6"}, "10.3.0", None),
        ({**GPU, "name": "A100"}, "10.3.0", None),
        (GPU, "10.7.0", None),
        (GPU, "10.3.0", "cd"),
    ]:
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
    plain = onnx_facts(audio_onnx(tmp_path / "a.onnx"))
    assert plain == {"inputs": {"wave": (16,)}, "fixed_batch": {}, "has_qdq": False, "graph_fp16": False, "opset": 17}
    assert onnx_facts(audio_onnx(tmp_path / "b1.onnx", batch=1))["fixed_batch"] == {"wave": 1}
    q = onnx_facts(audio_onnx(tmp_path / "q.onnx", qdq=True))
    assert q["has_qdq"] and not q["graph_fp16"]
    h = onnx_facts(audio_onnx(tmp_path / "h.onnx", fp16=True))
    assert h["graph_fp16"] and not h["has_qdq"] and h["inputs"] == {"wave": (16,)}
    img = onnx_facts(image_onnx(tmp_path / "i.onnx"))
    assert img["inputs"] == {"image": (3, 8, 8)} and not img["graph_fp16"]


def test_onnx_facts_bad_file_names_it(tmp_path):
    bad = tmp_path / "audio.fp32.onnx"
    bad.write_bytes(b"not an onnx file")
    for path in (bad, tmp_path / "missing.onnx"):
        with pytest.raises(ModelFileError) as e:
            onnx_facts(path)
        assert str(path) in str(e.value)
    g = helper.make_graph(
        [helper.make_node("Identity", ["gain"], ["audio_emb"])],
        "g",
        [helper.make_tensor_value_info("gain", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("audio_emb", TensorProto.FLOAT, [])],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "scalar.onnx"))
    with pytest.raises(ModelFileError, match="input 'gain' has no shape"):
        onnx_facts(tmp_path / "scalar.onnx")


def test_plan_is_frozen():
    with pytest.raises(AttributeError):
        _plan().precision = "fp32"
    assert isinstance(_plan(), BuildPlan)


def test_onnxruntime_providers_put_tensorrt_first_for_float_graphs(tmp_path, monkeypatch):
    """ONNX Runtime's TensorRT provider (onnxruntime-gpu on a Jetson) for FP32/FP16 graphs,
    with a batch profile and an engine cache; never for ORT's INT8 QDQ graphs (asymmetric
    activations, which TensorRT does not take); CPU-only onnxruntime gets the CPU."""
    from edge_sdk.runtime.backends.onnxruntime import ort_providers

    monkeypatch.setenv("EDGE_SDK_CACHE", str(tmp_path))
    every = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert ort_providers(["CPUExecutionProvider"], "fp16", {"wave": (16000,)}) == ["CPUExecutionProvider"]
    assert ort_providers(every, "int8", {"wave": (16000,)}) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    (name, opts), *rest = ort_providers(every, "fp16", {"image": (3, 96, 96)}, max_batch=32)
    assert name == "TensorrtExecutionProvider" and rest == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert opts["trt_fp16_enable"] is True and opts["trt_engine_cache_enable"] is True
    cache = tmp_path / "engines" / "ort-trt"
    assert opts["trt_engine_cache_path"] == str(cache) and cache.is_dir()  # ORT makes one level only
    model = image_onnx(tmp_path / "image.fp32.onnx")
    (_, mine), *_ = ort_providers(every, "fp32", {}, model=model)
    (tmp_path / "retrained").mkdir()
    (_, other), *_ = ort_providers(every, "fp32", {}, model=image_onnx(tmp_path / "retrained" / "image.fp32.onnx", dim=5))
    # ORT keys its engines by file and tensor names, not weights: one folder per graph file's content
    assert mine["trt_engine_cache_path"] == str(cache / sha256_file(model)[:16]) != other["trt_engine_cache_path"]
    assert mine["trt_timing_cache_path"] == mine["trt_engine_cache_path"] and Path(mine["trt_engine_cache_path"]).is_dir()
    assert (opts["trt_profile_min_shapes"], opts["trt_profile_opt_shapes"], opts["trt_profile_max_shapes"]) == (
        "image:1x3x96x96",
        "image:1x3x96x96",
        "image:32x3x96x96",
    )
    (_, opts), *_ = ort_providers(every, "fp32", {})  # no spec: no profile, TensorRT builds per shape
    assert opts["trt_fp16_enable"] is False and "trt_profile_min_shapes" not in opts
