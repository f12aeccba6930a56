"""``edge-sdk profile``: per-op profiles from ONNX Runtime's profiler and ExecuTorch's ETDump, on
the shipped demo bundle (real programs, real sessions), and the categories INT8 time is read by."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edge_sdk.bundle import shipped_bundles
from edge_sdk.export.profile import CATEGORIES, op_category, profile_bundle

pytest.importorskip("onnxruntime")
pytest.importorskip("executorch")


@pytest.mark.parametrize(
    "kind, category",
    [
        ("QLinearConv", "conv/matmul"),
        ("MatMulInteger", "conv/matmul"),
        ("XNNPACK Convolution (NHWC, QC8) IGEMM", "conv/matmul"),
        ("XNNPACK Fully Connected (NC, F32) GEMM", "conv/matmul"),
        ("DequantizeLinear", "quantize/dequantize"),
        ("DynamicQuantizeLinear", "quantize/dequantize"),
        ("XNNPACK Convert (NC)", "quantize/dequantize"),
        ("Transpose", "layout"),
        ("XNNPACK Static Reshape (NC)", "layout"),
        ("ReorderInput", "layout"),
        ("QLinearAdd", "elementwise/other"),
        ("XNNPACK Square Root (NC)", "elementwise/other"),
        ("portable var", "portable ops"),
        ("delegate overhead", "delegate overhead"),
    ],
)
def test_op_kinds_fall_in_their_category(kind, category):
    assert op_category(kind) == category


@pytest.fixture(scope="module")
def report():
    if "avnet_s-demo" not in shipped_bundles():
        pytest.skip("needs the shipped demo bundle")
    return profile_bundle("avnet_s-demo", runs=3, batch=2)


def test_every_tower_of_both_backends_is_profiled_op_by_op(report):
    rows = {(r["backend"], r["precision"], r["tower"]): r for r in report["rows"]}
    assert set(rows) == {(b, p, t) for b in ("onnxruntime", "executorch") for p in ("fp32", "int8") for t in ("audio", "image")}
    for key, r in rows.items():
        assert r["total_ms"] > 0 and r["total_ms"] == pytest.approx(sum(r["categories"].values())), key
        assert r["categories"]["conv/matmul"] > 0, key  # every tower convolves
        assert r["batch"] == (1 if key[0] == "executorch" else 2)
    # The INT8 programs run INT8 kernels and the FP32 ones do not: the profile sees the real graphs.
    assert any(k.startswith("QLinear") or "Integer" in k for k in rows["onnxruntime", "int8", "image"]["ops"])
    assert not any("Quantize" in k for k in rows["onnxruntime", "fp32", "image"]["ops"])
    assert any("QC8" in k for k in rows["executorch", "int8", "image"]["ops"])
    assert not any("QC8" in k or "QS8" in k for k in rows["executorch", "fp32", "image"]["ops"])
    # The float front end runs the framing unfold on ExecuTorch's portable kernels.
    assert rows["executorch", "fp32", "audio"]["categories"]["portable ops"] > 0


def test_cli_writes_the_tables_and_every_op(tmp_path):
    if "avnet_s-demo" not in shipped_bundles():
        pytest.skip("needs the shipped demo bundle")
    md, js = tmp_path / "p.md", tmp_path / "p.json"
    args = ["profile", "avnet_s-demo", "--runs", "2", "--batch", "1", "--synthetic", "--md", str(md), "--json", str(js)]
    proc = subprocess.run([sys.executable, "-m", "edge_sdk", *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = md.read_text()
    assert "## executorch image tower, batch 1" in text and "| category | FP32 ms | INT8 ms | FP32/INT8 |" in text
    assert all(c in text for c in ("conv/matmul", "**total**"))
    rows = json.loads(js.read_text())["rows"]
    assert len(rows) == 8 and all(set(r["categories"]) == set(CATEGORIES) for r in rows)
