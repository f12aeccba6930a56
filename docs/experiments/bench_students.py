"""Student designs for INT8 on this CPU: both towers through the SDK's own export path (dynamo
FP32 graphs, the normalisation folded into a patchify stem, ONNX Runtime static QDQ with the
stems and the front end float), timed side by side as ``edge-sdk bench`` times a bundle.

    .venv/bin/python docs/experiments/bench_students.py [--calib runs/calib] [--only NAME,...]

Random weights (speed does not depend on them); prints MACs, FP32 and INT8 pairs/s at batch 32,
latency at batch 1, INT8/FP32 and the eager teacher's pairs/s for the 40x target.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edge_sdk.export.base import Job
from edge_sdk.export.onnxruntime import quantize_graphs
from edge_sdk.models.avnet import AVNet
from edge_sdk.models.shipped import count_macs
from edge_sdk.models.torch_runner import TorchTowers
from edge_sdk.runtime.backends.onnxruntime import OrtTowers
from edge_sdk.spec import AudioSpec, ModelSpec, TowerSpec, get_spec


def _spec(name: str, embed: int, image_tower: TowerSpec, audio_tower: TowerSpec, **kw) -> ModelSpec:
    return ModelSpec(name=name, role="student", embed_dim=embed, image_tower=image_tower, audio_tower=audio_tower, **kw)


S = get_spec("student_s")
CANDIDATES = {
    "student_s (shipped)": S,
    "student_xs (shipped)": get_spec("student_xs"),
    "s, n_fft 128": dataclasses.replace(S, name="s128", audio=AudioSpec(n_fft=128)),
    "s, 8x8 image patches, wide": _spec(
        "s8", 128, TowerSpec("basic", 64, (64, 128), (1, 1), stem_stride=8), TowerSpec("basic", 32, (32, 64, 96), (1, 1, 1), stem_stride=4)
    ),
    "dense xs": _spec(
        "dxs", 64, TowerSpec("basic", 16, (16, 32), (1, 1), stem_stride=4), TowerSpec("basic", 16, (16, 32, 48), (1, 1, 1), stem_stride=4)
    ),
    "dense xs, n_fft 128": _spec(
        "dxs128",
        64,
        TowerSpec("basic", 16, (16, 32), (1, 1), stem_stride=4),
        TowerSpec("basic", 16, (16, 32, 48), (1, 1, 1), stem_stride=4),
        audio=AudioSpec(n_fft=128),
    ),
}


def _pairs_per_s(towers, waves, images, seconds: float = 2.0) -> float:
    for _ in range(3):
        towers.embed_both(waves, images)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        towers.embed_both(waves, images)
        n += len(waves)
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--calib", default="runs/calib")
    p.add_argument("--only", default="")
    p.add_argument("--int8-stems", action="store_true", help="quantize the thin stems too (no FP32 stem)")
    args = p.parse_args()
    if args.int8_stems:
        import edge_sdk.export.onnxruntime as ortx

        ortx.THIN_DEPTH = 0
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    waves = (rng.standard_normal((32, 16000)) * 0.1).astype(np.float32)
    images = rng.uniform(0, 255, (32, 3, 96, 96)).astype(np.float32)
    teacher = _pairs_per_s(TorchTowers(AVNet(get_spec("teacher")).eval()), waves, images)
    print(f"eager teacher: {teacher:.0f} pairs/s")
    print("| candidate | MMACs | FP32 pairs/s | INT8 pairs/s | INT8/FP32 | INT8 / eager teacher |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, spec in CANDIDATES.items():
        if args.only and name not in args.only.split(","):
            continue
        model = AVNet(spec).eval()
        with tempfile.TemporaryDirectory() as tmp:
            job = Job(model, Path(tmp), Path(args.calib), "percentile")
            fp32 = OrtTowers(job.fp32("audio"), job.fp32("image"), model.contract, batch_size=32)
            quantize_graphs(job)
            int8 = OrtTowers(Path(tmp) / "audio.int8.onnx", Path(tmp) / "image.int8.onnx", model.contract, batch_size=32, precision="int8")
            f, i = _pairs_per_s(fp32, waves, images), _pairs_per_s(int8, waves, images)
        print(f"| {name} | {count_macs(model) / 1e6:.1f} | {f:.0f} | {i:.0f} | {i / f:.2f} | {i / teacher:.1f} |", flush=True)


if __name__ == "__main__":
    main()
