"""Which student towers does INT8 speed up? ONNX Runtime QDQ INT8 vs FP32, side by side.

    .venv/bin/python docs/experiments/bench_int8_arch.py

For each candidate tower design (random weights: speed does not depend on them) both
towers are exported with the dynamo exporter, quantized with ``quantize_static`` (QDQ,
per-channel, u8 activations) and timed at batch 1 and 32 on 2 threads; prints MACs and the
INT8/FP32 speed-up. The README's student design table comes from this script.
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

from edge_sdk.models.avnet import AVNet
from edge_sdk.models.shipped import count_macs
from edge_sdk.spec import ModelSpec, TowerSpec, get_spec

CANDIDATES = {
    "mobilenetv2 (dw)": ModelSpec(
        name="dw",
        role="student",
        embed_dim=128,
        image_tower=TowerSpec(block="dw", stem=16, channels=(16, 32, 96), depths=(1, 2, 2), expand=3),
        audio_tower=TowerSpec(block="dw", stem=16, channels=(24, 48, 96), depths=(1, 1, 1), expand=3),
    ),
    "dense, 3x3 stem": ModelSpec(
        name="dense",
        role="student",
        embed_dim=128,
        image_tower=TowerSpec(block="basic", stem=16, channels=(16, 32, 64), depths=(1, 1, 1)),
        audio_tower=TowerSpec(block="basic", stem=16, channels=(32, 64, 96), depths=(1, 1, 1)),
    ),
    "dense, patchify stem (student_s)": get_spec("student_s"),
    "teacher": get_spec("teacher"),
}


class _Reader:
    def __init__(self, name, batches):
        self.it = iter([{name: b} for b in batches])

    def get_next(self):
        return next(self.it, None)


def _median_ms(sess, name, x, n=100):
    for _ in range(10):
        sess.run(None, {name: x})
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def main() -> None:
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    torch.set_num_threads(2)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for label, spec in CANDIDATES.items():
            model = AVNet(spec).eval()
            print(f"{label}: {count_macs(model) / 1e6:.1f} MMACs")
            for tower, name, shape, scale in (("image", "image", (3, 96, 96), 255.0), ("audio", "wave", (16000,), 0.1)):
                fp32, int8 = Path(tmp) / f"{tower}.onnx", Path(tmp) / f"{tower}.int8.onnx"
                batches = [(rng.random((4, *shape)) * scale).astype(np.float32) for _ in range(4)]
                torch.onnx.export(
                    getattr(model, tower),
                    (torch.from_numpy(batches[0]),),
                    str(fp32),
                    input_names=[name],
                    opset_version=18,
                    dynamo=True,
                    external_data=False,
                    dynamic_shapes=({0: torch.export.Dim("batch", max=64)},),
                )
                quantize_static(
                    str(fp32),
                    str(int8),
                    _Reader(name, batches),
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                )
                sessions = [ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for p in (fp32, int8)]
                for batch in (1, 32):
                    x = np.repeat(batches[0][:1], batch, 0)
                    f, q = (_median_ms(s, name, x) for s in sessions)
                    print(f"  {tower} batch {batch:2d}: fp32 {f:.3f} ms  int8 {q:.3f} ms  speed-up {f / q:.2f}x")


if __name__ == "__main__":
    main()
