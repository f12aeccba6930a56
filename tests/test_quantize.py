"""INT8 per target, run through each target's real runtime, plus sensitivity and bundles."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edge_sdk.bundle import read_bundle, write_manifest
from edge_sdk.errors import ConfigError, ModelFileError
from edge_sdk.export.base import Job
from edge_sdk.export.executorch import quantize_programs
from edge_sdk.export.onnxruntime import quantize_graphs, thin_convs
from edge_sdk.export.tensorrt import TensorRTExporter
from edge_sdk.manifest import registry_source
from edge_sdk.models.shipped import resolve_model, shipped_models
from edge_sdk.quant.calib import load_calib_set, write_calib_set
from edge_sdk.quant.fakequant import fake_quantize, layer_sensitivity, quantizable_layers
from edge_sdk.runtime.backends.executorch import ExecuTorchTowers
from edge_sdk.runtime.backends.onnxruntime import OrtTowers


@pytest.fixture(scope="module")
def model():
    if "avnet_s.avdigits" not in shipped_models():
        pytest.skip("the distilled student_s is not shipped in this checkout")
    return resolve_model("avnet_s.avdigits")[0]


@pytest.fixture(scope="module")
def calib(tmp_path_factory, model):
    return load_calib_set(write_calib_set(tmp_path_factory.mktemp("c") / "set", model.spec, n=48), model.spec)


def _cosine(a, b):
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return float(np.mean(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def _reference(model, calib, n=16):
    with torch.no_grad():
        out = model(torch.from_numpy(calib.waves[:n]), torch.from_numpy(calib.images[:n]))
    return {k: v.numpy() for k, v in out.items()}


def _job(model, calib, out, method="percentile", exclude=(), **kw) -> Job:
    """A job over an already-read calibration set."""
    return Job(model, out, method=method, exclude=exclude, calib_set=calib, **kw)


def _agree(towers, model, calib, floor):
    ref = _reference(model, calib)
    emb, fmap = towers.embed_image(calib.images[:16])
    got = {"audio_emb": towers.embed_audio(calib.waves[:16]), "image_emb": emb, "image_map": fmap}
    for k in ref:
        assert got[k].shape == ref[k].shape
        assert _cosine(got[k], ref[k]) > floor, k


def test_sensitivity_covers_every_layer_and_exclusion_keeps_float(model, calib):
    rows = layer_sensitivity(model, calib, "percentile", n=16)
    assert sorted(r["layer"] for r in rows) == sorted(quantizable_layers(model))
    assert all(r["error"] >= 0 for r in rows) and rows[0]["error"] >= rows[-1]["error"] > 0
    worst = rows[0]["layer"]
    q = fake_quantize(model, calib, "minmax", exclude=(worst,))
    assert not q.get_submodule(worst).weight_quantizer.is_enabled
    assert q.get_submodule(rows[-1]["layer"]).weight_quantizer.is_enabled


def test_onnxruntime_qdq_int8_runs_and_matches_float(model, calib, tmp_path):
    exclude = ("audio.tower.layers.1.body.0.0",)  # as the sensitivity analysis would name it
    arts = quantize_graphs(_job(model, calib, tmp_path, exclude=exclude))
    int8 = {a["tower"]: tmp_path / a["file"] for a in arts}
    assert {a["precision"] for a in arts} == {"int8"}
    for tower, n_float in (("audio", 3), ("image", 1)):
        # float weights and inputs: audio's DFT conv, stem (one log-mel plane) and the excluded layer; the RGB stem
        graph = onnx.load(str(int8[tower])).graph
        kept = set(next(a for a in arts if a["tower"] == tower and a["precision"] == "int8")["float_nodes"])
        convs = {n.name: n for n in graph.node if n.op_type == "Conv"}
        dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
        assert len(kept & set(convs)) == n_float, (tower, kept & set(convs))
        assert set(thin_convs(tmp_path / f"{tower}.fp32.onnx")) <= kept  # the stems
        assert not any(convs[n].input[1] in dequantized for n in kept & set(convs))  # float weights
        assert sum(n.input[1] in dequantized for n in convs.values()) >= 4  # the other convs are int8
        # the int8 convs' weights and biases carry no zero points (all 0), and ONNX Runtime still fuses them
        inits = {t.name for t in graph.initializer}
        conv_dq = [
            n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits and any(n.output[0] in c.input for c in convs.values())
        ]
        assert conv_dq and all(len(n.input) == 2 for n in conv_dq)
        opts = ort.SessionOptions()
        opts.optimized_model_filepath = str(tmp_path / f"{tower}.optimized.onnx")
        ort.InferenceSession(str(int8[tower]), opts, providers=["CPUExecutionProvider"])
        fused = [n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node]
        assert fused.count("QLinearConv") == sum(n.input[1] in dequantized for n in convs.values()), fused
    _agree(OrtTowers(int8["audio"], int8["image"], model.spec), model, calib, 0.995)
    assert (int8["image"].stat().st_size * 3.0) < (tmp_path / "image.fp32.onnx").stat().st_size  # int8 weights, lean graphs


def test_thin_convs_are_stems_not_depthwise(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    w = lambda name, shape: numpy_helper.from_array(np.zeros(shape, np.float32), name)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w_stem"], ["a"], name="stem", kernel_shape=[4, 4], strides=[4, 4]),
            helper.make_node("Conv", ["x", "w_patch"], ["p"], name="patch", kernel_shape=[8, 8], strides=[8, 8]),
            helper.make_node("Conv", ["a", "w_dw"], ["b"], name="depthwise", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8),
            helper.make_node("Conv", ["b", "w_pw"], ["y"], name="pointwise", kernel_shape=[1, 1]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])],
        [w("w_stem", (8, 3, 4, 4)), w("w_patch", (8, 3, 8, 8)), w("w_dw", (8, 1, 3, 3)), w("w_pw", (4, 8, 1, 1))],
    )
    onnx.save(helper.make_model(graph), tmp_path / "g.onnx")
    # 3 x 4 x 4 = 48 inputs per output is thin; a patch embedding (3 x 8 x 8 = 192) is not, nor a
    # depthwise conv, which reads all 8 channels
    assert thin_convs(tmp_path / "g.onnx") == ["stem"]


@pytest.mark.slow  # 37 s; the default run exports XNNPACK INT8 in tests/test_export.py; CI runs it in its second step
def test_xnnpack_pt2e_int8_program_runs_in_executorch(model, calib, tmp_path):
    arts = quantize_programs(_job(model, calib, tmp_path), tmp_path)
    assert all(a["delegated"]["delegated_nodes"] > 0 for a in arts)
    pte = {a["tower"]: tmp_path / a["file"] for a in arts}
    float_bytes = 4 * sum(p.numel() for p in model.image.parameters())
    assert pte["image"].stat().st_size < 0.5 * float_bytes  # int8 weights really reach the program
    towers = ExecuTorchTowers(pte["audio"], pte["image"], model.spec)
    _agree(towers, model, calib, 0.99)
    # a channels-last array (what HWC frames transposed to CHW are) must give the same answer
    channels_last = calib.images[:4].transpose(0, 2, 3, 1).copy().transpose(0, 3, 1, 2)
    assert np.allclose(towers.embed_image(channels_last)[1], towers.embed_image(calib.images[:4])[1])
    with pytest.raises(ConfigError, match="no entropy calibrator"):
        quantize_programs(_job(model, calib, tmp_path, "entropy"), tmp_path)
    with pytest.raises(ConfigError, match="cannot keep single layers in float"):
        quantize_programs(_job(model, calib, tmp_path, "minmax", ("image.proj",)), tmp_path)


@pytest.mark.slow  # 2.2 min on a 2-core CPU; CI runs it in its second step
def test_tensorrt_qdq_graph_from_modelopt(model, calib, tmp_path):
    arts = TensorRTExporter().write(_job(model, calib, tmp_path, "entropy"), "int8")
    assert {(a["backend"], a["precision"], a["role"]) for a in arts} == {("tensorrt", "int8", "engine source")}
    paths = {a["tower"]: tmp_path / a["file"] for a in arts}
    ops = [n.op_type for n in onnx.load(str(paths["image"])).graph.node]
    assert ops.count("QuantizeLinear") > 5 and ops.count("DequantizeLinear") >= ops.count("QuantizeLinear")
    _agree(OrtTowers(paths["audio"], paths["image"], model.spec), model, calib, 0.99)


def test_bundle_hashes_schema_and_paths_are_checked(tmp_path, model):
    (tmp_path / "a.onnx").write_bytes(b"audio")
    (tmp_path / "i.onnx").write_bytes(b"image")
    arts = [
        {"file": "a.onnx", "tower": "audio", "format": "onnx", "backend": "onnxruntime", "precision": "int8"},
        {"file": "i.onnx", "tower": "image", "format": "onnx", "backend": "onnxruntime", "precision": "int8"},
    ]
    write_manifest(tmp_path, model.contract, registry_source(model.spec), arts)
    b = read_bundle(tmp_path)
    assert b.find("onnxruntime", "int8").files["audio"].name == "a.onnx"
    with pytest.raises(ModelFileError, match="--backend onnxruntime --precision int8"):
        b.find("xnnpack")
    (tmp_path / "a.onnx").write_bytes(b"audiX")
    with pytest.raises(ModelFileError, match="a.onnx does not match its sha256"):
        read_bundle(tmp_path)
    m = json.loads((tmp_path / "manifest.json").read_text())
    m["schema"] = 99
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelFileError, match="schema 99"):
        read_bundle(tmp_path)
    m["schema"], m["artifacts"][0]["file"] = 2, "../a.onnx"
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelFileError, match="outside the bundle"):
        read_bundle(tmp_path)


@pytest.mark.slow  # 40 s on a 2-core CPU; CI runs it in its second step
def test_quantize_run_writes_bundle_report_and_tries_qat(model, tmp_path):
    from edge_sdk.eval.evaluate import EvalConfig
    from edge_sdk.export.quantize import quantize

    calib_dir = write_calib_set(tmp_path / "calib", model.spec, n=40)
    cfg = EvalConfig(scenes=40, gallery_per_class=5, probe_images=200, sync_clips=10)
    report = quantize(
        "avnet_s.avdigits", ["onnxruntime"], calib_dir, tmp_path / "b", teacher=None, eval_cfg=cfg, qat="always", qat_steps=4, fp16=True
    )
    rows = report["rows"]
    assert [(r["backend"], r["precision"]) for r in rows] == [
        ("torch", "fp32"),
        ("onnxruntime", "fp32"),
        ("onnxruntime", "int8"),
        ("onnxruntime", "fp16"),
    ]
    assert rows[2]["method"] in ("ptq", "qat") and "delta" in rows[2] and rows[2]["status"] == "ok"
    assert set(rows[2]["parity"]) >= {"audio_emb", "image_emb", "image_map"}  # validated like an export row
    assert report["recipes"]["onnxruntime"]["per_channel"] is True
    assert any("QAT" in n for n in report["notes"])
    assert report["calibration"]["pairs"] == 40 and len(report["calibration"]["sha256"]) == 64
    bundle = read_bundle(tmp_path / "b")
    assert bundle.find("onnxruntime", "int8").files["image"].suffix == ".onnx"
    assert bundle.find("torch", "fp32").files["av"].name == "model.safetensors"  # the reference, as in every bundle
    assert {a["precision"] for a in bundle.manifest["artifacts"]} >= {"fp32", "int8", "fp16"}
    assert "| avnet_s.avdigits | onnxruntime | int8 |" in (tmp_path / "b" / "report.md").read_text()
    with pytest.raises(Exception, match="already holds a bundle"):
        quantize("avnet_s.avdigits", ["onnxruntime"], calib_dir, tmp_path / "b", teacher=None, eval_cfg=cfg)
    # the CLI evaluates the bundle through its own runtime, with the checkpoint's JSON keys
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_sdk",
            "eval",
            str(tmp_path / "b"),
            "--backend",
            "onnxruntime",
            "--precision",
            "int8",
            "--scenes",
            "20",
            "--synthetic",
            "--json",
            str(tmp_path / "e.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-1500:]
    res = json.loads((tmp_path / "e.json").read_text())
    assert {"pointing_acc", "a2i_r1", "probe_audio_acc", "sync_acc"} <= set(res) and res["backend"] == "onnxruntime"
    # the FP16 audio graph computes the front end's DFT basis in float32, the tower's weights are float16
    half = onnx.load(str(tmp_path / "b" / "audio.fp16.onnx")).graph
    types = {i.name: i.data_type for i in half.initializer}
    assert types["frontend.basis/step"] == onnx.TensorProto.FLOAT and onnx.TensorProto.FLOAT16 in types.values()
    producer = {o: n for n in half.node for o in n.output}
    dft = next(n for n in half.node if n.op_type == "Conv" and producer.get(n.input[1], n).name.startswith("frontend.basis/"))
    assert not any(producer.get(i) is not None and producer[i].op_type == "Cast" for i in dft.input)  # no float16 round trip


@pytest.mark.slow  # about 2.3 minutes; CI runs it in its second step
def test_xnnpack_qat_runs_through_pt2e_and_the_orchestrator(model, tmp_path):
    from edge_sdk.eval.evaluate import EvalConfig
    from edge_sdk.export.quantize import quantize

    calib_dir = write_calib_set(tmp_path / "calib", model.spec, n=40)
    calib = load_calib_set(calib_dir, model.spec)
    (tmp_path / "direct").mkdir()
    arts = quantize_programs(_job(model, calib, tmp_path / "direct", qat_steps=3), tmp_path / "direct", qat=True)
    assert {a["method"] for a in arts} == {"qat"}
    towers = {a["tower"]: tmp_path / "direct" / a["file"] for a in arts}
    _agree(ExecuTorchTowers(towers["audio"], towers["image"], model.spec), model, calib, 0.98)
    cfg = EvalConfig(scenes=40, gallery_per_class=5, probe_images=200, sync_clips=10)
    report = quantize("avnet_s.avdigits", ["xnnpack"], calib_dir, tmp_path / "b", teacher=None, eval_cfg=cfg, qat="always", qat_steps=3, fp16=False)
    assert any(n.startswith("xnnpack: PTQ loss") and "QAT" in n for n in report["notes"])


def test_onnxruntime_quantizer_chatter_goes_to_the_debug_log(capsys, caplog):
    import logging

    from edge_sdk.export.onnxruntime import ort_quiet

    with caplog.at_level(logging.DEBUG), ort_quiet():
        print("Collecting tensor data and making histogram ...")  # what ORT's calibrators print
        root = logging.getLogger()  # ORT warns on the root logger
        root.warning("Please consider pre-processing before quantization. See https://...")
        root.warning("a warning of the SDK's own")
    assert "Collecting" not in capsys.readouterr().out and "Collecting tensor data" in caplog.text  # kept at debug
    assert "pre-processing" not in caplog.text and "a warning of the SDK's own" in caplog.text
    logging.getLogger().warning("Please consider pre-processing before quantization, after")  # the filter is gone again
    assert "after" in caplog.text


@pytest.mark.slow  # 42 s: a quantize run and an export; CI runs it in its second step
def test_quantize_and_export_write_the_same_int8_graph(model, tmp_path):
    """One INT8 path: `edge-sdk quantize --target onnxruntime` and `edge-sdk export --format onnx
    --precision int8` call the same exporter, so with the same model, calibration set and method
    they write the same graphs, node for node and weight for weight."""
    from edge_sdk.eval.evaluate import EvalConfig
    from edge_sdk.export.engine import export_bundle
    from edge_sdk.export.quantize import quantize

    calib_dir = write_calib_set(tmp_path / "calib", model.spec, n=40)
    cfg = EvalConfig(scenes=20, gallery_per_class=3, probe_images=100, sync_clips=5)
    report = quantize(
        "avnet_s.avdigits",
        ["onnxruntime"],
        calib_dir,
        tmp_path / "q",
        method="minmax",
        teacher=None,
        eval_cfg=cfg,
        qat="off",
        fp16=False,
        threshold=1.0,
    )  # nothing kept float by sensitivity: the export has no such policy
    assert report["float_layers"] == []
    export_bundle("avnet_s.avdigits", tmp_path / "e", "onnx", "int8", calib=calib_dir, method="minmax", eval_cfg=cfg, parity_scenes=8)
    for graph in ("audio", "image", "av"):
        q, e = (onnx.load(str(tmp_path / side / f"{graph}.int8.onnx")).graph for side in ("q", "e"))
        assert [(n.op_type, list(n.input), list(n.output)) for n in q.node] == [(n.op_type, list(n.input), list(n.output)) for n in e.node]
        weights = {t.name: t.SerializeToString() for t in q.initializer}
        assert weights == {t.name: t.SerializeToString() for t in e.initializer}, graph
        assert sum(n.op_type == "QuantizeLinear" for n in q.node) > 5  # and they are INT8 graphs
