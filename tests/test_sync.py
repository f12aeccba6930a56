"""Synchrony: clips whose spoken digit pulses with its loudness, stacks of frames, and the
offset estimate of ``edge-sdk eval`` checked against an oracle that reads the signals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_sdk.contract import AudioContract, ImageContract, ModelContract
from edge_sdk.eval.evaluate import EvalConfig, model_input
from edge_sdk.media.avclips import AVDigitClips
from edge_sdk.media.digits import synthetic_bank
from edge_sdk.runner import Towers

STACK = ModelContract("oracle", AudioContract(16000, 0.5), ImageContract(96, 96, frames=5, frame_rate=10.0), 5)


class Oracle(Towers):
    """Synchrony without learning: the audio embedding is the loudness at the five frame times
    a window ends on (50 ms each, 0.1 s apart), the image "map" the spoken digit's size in each
    frame of the stack (the brightest ink), both centred and normalised: their dot product is
    the correlation of what is heard with what is seen."""

    def run_audio(self, x):
        ends = [x.shape[1] - int(j * 1600) for j in range(4, -1, -1)]
        loud = np.stack([np.sqrt((x[:, e - 800 : e] ** 2).mean(1)) for e in ends], 1)
        return [_unit(loud - loud.mean(1, keepdims=True))]

    def run_image(self, x):
        size = (x.max(2) > 200).sum((2, 3)).astype(np.float32)  # [B, T]: pixels of the brightest ink per frame
        emb = _unit(size - size.mean(1, keepdims=True))
        return [emb, emb[:, :, None, None]]


def _unit(v):
    return (v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-9)).astype(np.float32)


@pytest.fixture(scope="module")
def bank():
    return synthetic_bank("test", 16000)


def test_a_stack_model_sees_five_frames_and_every_shifted_window_is_full_of_speech(bank):
    train = AVDigitClips(bank, STACK, 8, k=2, train=True, shifts=None)
    views = [train[i] for i in range(8)]
    assert views[0]["image"].shape == (5, 3, 96, 96) and views[0]["wave"].shape == (8000,)
    rms = np.sqrt((np.stack([v["wave_shifted"] for v in views]) ** 2).mean(-1))
    assert rms.min() > 0.01  # no silent negative: a shifted window differs in *when*, not in whether there is speech
    frames = views[0]["image"]
    assert not np.array_equal(frames[0], frames[-1])  # the digit pulses between the frames of one stack
    assert len({tuple(np.round(v["wave_shifted"][:, -1], 4)) for v in views}) == 8  # shifts drawn per clip
    still = np.zeros((2, 3, 96, 96), np.float32)
    assert model_input(STACK, still).shape == (2, 5, 3, 96, 96)  # a still, seen by a stack model


def test_the_offset_estimate_reads_back_a_known_delay(bank):
    from edge_sdk.eval.evaluate import offset_error_ms

    clips = AVDigitClips(bank, STACK, 12, k=1, seed=5, train=False)
    assert offset_error_ms(Oracle(STACK), clips, seed=0) <= 60  # the oracle knows; a sign error would give ~500 ms


def test_every_eval_stage_is_bounded_by_the_scenes():
    cfg = EvalConfig.scaled(40)
    assert (cfg.scenes, cfg.gallery_per_class, cfg.probe_images, cfg.sync_clips) == (40, 5, 160, 40)
    assert EvalConfig.scaled(5000).sync_clips == 200 and EvalConfig.scaled(5000).probe_images == 2000


def _shift(clip, out, seconds: float):
    """``clip`` with its sound ``seconds`` late (negative: early), made as a user would, with ffmpeg -itsoffset."""
    import subprocess

    late = ["-i", str(clip), "-itsoffset", f"{seconds}", "-i", str(clip)]
    early = ["-itsoffset", f"{-seconds}", "-i", str(clip), "-i", str(clip)]
    cmd = ["ffmpeg", "-loglevel", "error", "-y", *(late if seconds > 0 else early), "-map", "0:v", "-map", "1:a", "-c", "copy", str(out)]
    subprocess.run(cmd, check=True, timeout=60)
    return out


@pytest.mark.parametrize("shift_s", [0.3, -0.2])
def test_the_runtime_reads_back_an_offset_made_with_ffmpeg(tmp_path, shift_s):
    """A file whose sound ffmpeg moved by a known amount, through the runtime (PyAV decoding,
    frame stacks at the file's 25 fps, the sync task's shifted windows and history): the oracle
    towers' offset, read live, is that amount."""
    import shutil

    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg (apt install ffmpeg)")
    from edge_sdk.media.clipfile import write_sync_clip
    from edge_sdk.runtime.opening import open_sources
    from edge_sdk.runtime.pipeline import Pipeline

    clip = write_sync_clip(tmp_path / "clip.mp4", STACK, seconds=8, fps=25)
    video, audio = open_sources(f"file://{_shift(clip, tmp_path / 'shifted.mp4', shift_s)}", None, 16000)
    results = []
    Pipeline(Oracle(STACK), STACK, video, audio, "sync", callback=results.append).run()
    assert len(results) >= 190
    middle = [r.values["offset_ms"] for r in results[len(results) // 3 : 2 * len(results) // 3]]  # away from the file's ends
    assert abs(np.median(middle) - shift_s * 1000) <= 100, middle  # a sign error would read the opposite


def test_the_sync_demo_reads_back_a_known_offset_with_the_shipped_model(tmp_path, fsdd, mnist):
    """`edge-sdk demo sync` on a clip of held-out speakers whose sound ffmpeg made 300 ms late:
    the shipped synchrony student (ONNX Runtime INT8, a stack of 5 frames) reads that back."""
    import json
    import shutil

    from edge_sdk.bundle import read_bundle, shipped_bundles

    if "avsync_s-demo" not in shipped_bundles() or shutil.which("ffmpeg") is None:
        pytest.skip("needs the shipped synchrony bundle (toolchain/ship_sync.sh) and ffmpeg")
    from edge_sdk.apps.demo import run_demo
    from edge_sdk.media.clipfile import write_sync_clip

    contract = read_bundle(shipped_bundles()["avsync_s-demo"]).contract
    clip = write_sync_clip(tmp_path / "clip.mp4", contract, seconds=8, fps=25, fsdd=fsdd, mnist=mnist)
    s = run_demo("sync", video=f"file://{_shift(clip, tmp_path / 'late.mp4', 0.3)}", headless=True, out=tmp_path / "demo")
    assert s["backend"].startswith("onnxruntime") and {"offset_ms", "offset_confidence"} <= set(s["last"])
    events = [json.loads(line) for line in Path(s["files"]["events"]).read_text().splitlines() if '"offset_ms"' in line]
    middle = [e["offset_ms"] for e in events[len(events) // 3 : 2 * len(events) // 3]]
    assert abs(np.median(middle) - 300) <= 100, middle
