"""FP16 tower graphs for GPU targets.

TensorRT 10 can take the FP32 ONNX with its FP16 builder flag; TensorRT 11 builds
strongly typed networks, so FP16 must be in the graph itself. This converts the towers'
FP32 ONNX with ONNX Runtime's float16 converter, inputs and outputs kept float32 and the
log-mel front end kept in FP32 (its power spectrum spans more range than FP16 holds
comfortably). Where ONNX Runtime's CPU kernels run the FP16 graph, it is evaluated here.
"""

from __future__ import annotations

from pathlib import Path

import onnx

__all__ = ["to_fp16", "fp16_towers"]


def to_fp16(src: Path, dest: Path) -> Path:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from edge_sdk.export.onnx import module_nodes

    model = onnx.load(str(src))
    block = module_nodes(src, ["frontend"], ops=None)["frontend"]  # empty for the image tower
    half = convert_float_to_float16(model, keep_io_types=True, node_block_list=block)
    onnx.save(half, str(dest))
    return dest


def fp16_towers(model, out: Path, spec, offset, fsdd, mnist, cfg, macs: int):
    """Write ``{tower}.fp16.onnx``; returns (report rows, artifacts, note)."""
    from edge_sdk.errors import ModelFileError
    from edge_sdk.eval.evaluate import evaluate
    from edge_sdk.export.onnx import export_tower
    from edge_sdk.export.quantize import _row, _size_mb
    from edge_sdk.runtime.backends import OrtTowers

    arts = []
    for tower in ("audio", "image"):
        fp32 = out / f"{tower}.fp32.onnx"
        if not fp32.exists():  # the onnxruntime target lists it when it ran; else list it here
            export_tower(model, tower, fp32)
            arts.append({"file": fp32.name, "tower": tower, "format": "onnx", "backend": "onnxruntime", "precision": "fp32"})
        dest = to_fp16(fp32, out / f"{tower}.fp16.onnx")
        arts.append({"file": dest.name, "tower": tower, "format": "onnx", "backend": "onnxruntime", "precision": "fp16"})
    try:
        half = {a["tower"]: out / a["file"] for a in arts if a["precision"] == "fp16"}
        metrics = evaluate(OrtTowers(half["audio"], half["image"], spec, offset), spec, fsdd, mnist, cfg)
    except (ModelFileError, RuntimeError) as e:
        return [], arts, f"fp16: graphs written for GPU targets; ONNX Runtime's CPU kernels cannot run them here ({str(e)[:160]})"
    return [_row(spec.name, "onnxruntime", "fp16", metrics, _size_mb(out, [a for a in arts if a["precision"] == "fp16"]), macs, target="gpu", method="fp16")], arts, ""
