"""Shared by the pipeline tests (test_pipeline.py, test_pipeline_io.py): the shipped demo
bundle (skipped with a reason where this checkout lacks it), a generated AV-Digits clip with
speech written as a real video file, and a float32 WAV, which may hold NaN."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from edge_sdk.bundle import read_bundle, shipped_bundles


def demo_bundle():
    """The shipped demo bundle, read; the calling test is skipped where it is not shipped."""
    if "avnet_s-demo" not in shipped_bundles():
        pytest.skip("the demo bundle is not shipped in this checkout")
    return read_bundle(shipped_bundles()["avnet_s-demo"])


def speech_clip(tmp_path, bundle, seconds=4):
    """A 320x240, 10 fps AV-Digits clip with speech (real FSDD + MNIST where present)."""
    from edge_sdk.media.clipfile import write_clip
    from edge_sdk.media.corpora import default_data_dir

    root = default_data_dir()
    fsdd, mnist = (root / "fsdd" / "recordings", root / "mnist") if root else (None, None)
    return write_clip(tmp_path / "clip.mp4", bundle.spec, seconds=seconds, fps=10, size=(320, 240), fsdd=fsdd, mnist=mnist)


def float_wav(path, x, rate: int = 16000):
    """A float32 WAV (IEEE float, format 3): what a recorder or numpy pipeline may leave NaN in."""
    data = np.asarray(x, "<f4").tobytes()
    path.write_bytes(
        b"RIFF"
        + struct.pack("<I", 36 + len(data))
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 3, 1, rate, rate * 4, 4, 32)
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )
    return path
