"""AV-Digits rendered into a real video file (H.264 + AAC through ffmpeg), with the
ground-truth box of the spoken digit for every second, so a streaming run on a camera-like
source (e.g. 720p 30 fps) can be scored exactly like ``edge-sdk eval``.

Each scene is shown for ``hold`` seconds (default 2), scaled up into the centre square of
the frame (the runtime's centre crop maps it back); its spoken digit plays in the first
second, then silence, so the 1 s audio window of every frame holds only this scene's
speech. Encoded without B-frames (``-tune zerolatency``), as a camera streams: a decoder
then hands each frame out when its packet arrives.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import wave
from pathlib import Path

import cv2
import numpy as np

from edge_sdk.errors import DataError
from edge_sdk.outputs import atomic_write_text

__all__ = ["write_clip", "write_sync_clip", "read_boxes", "scene_at"]


def scene_at(boxes: list[dict], t: float) -> dict | None:
    """The scene whose speech fills the whole 1 s audio window ending at clip time ``t``
    (speech centred in a scene's first second: ``t`` 0.75-1.25 s after its start), else None."""
    for b in boxes:
        if 0.75 <= t - b["start_s"] <= 1.25:
            return b
    return None


def write_clip(
    path: str | Path, spec, seconds: int = 10, fps: int = 30, size=(1280, 720), fsdd=None, mnist=None, seed: int = 0, k: int = 3, hold: int = 2
) -> Path:
    """Write ``path`` (.mp4) and ``path.json`` (per-scene start, boxes in frame pixels, labels)."""
    from edge_sdk.media.avdigits import AVDigits
    from edge_sdk.media.digits import DEFAULT_TEST_SPEAKERS, load_bank, synthetic_bank

    if shutil.which("ffmpeg") is None:
        raise DataError("ffmpeg is not installed", "apt-get install ffmpeg")
    path = Path(path)
    sr = spec.audio.sample_rate
    bank = load_bank(fsdd, mnist, "test", sr, DEFAULT_TEST_SPEAKERS) if fsdd and mnist else synthetic_bank("test", sr)
    scenes = -(-seconds // hold)
    ds = AVDigits(bank, spec, scenes, k, seed, train=False)
    w, h = size
    frames, audio, boxes = _render_scenes(ds, scenes, size, spec.image.height, sr, hold)
    tmp_wav = path.with_suffix(".wav.tmp")
    _write_wav(tmp_wav, np.concatenate(audio), sr)
    _encode(_ffmpeg_command(w, h, fps, tmp_wav, path), frames, fps * hold, path)
    tmp_wav.unlink()
    atomic_write_text(path.with_suffix(".json"), json.dumps({"fps": fps, "size": [w, h], "seconds": scenes * hold, "scenes": boxes}, indent=1))
    return path


def write_sync_clip(path: str | Path, contract, seconds: int = 10, fps: int = 25, size=(640, 360), fsdd=None, mnist=None,
                    seed: int = 0) -> Path:  # fmt: skip
    """Write ``path`` (.mp4): one AV-Digits clip in which a digit is spoken again and again and
    pulses with its loudness (:mod:`edge_sdk.media.avclips`), frames at ``fps``, sound and picture
    in sync (shift the sound with ``ffmpeg -itsoffset`` to make a known offset), and ``path.json``
    (the spoken digit and its resting box in frame pixels)."""
    from edge_sdk.media.avclips import AVDigitClips
    from edge_sdk.media.digits import DEFAULT_TEST_SPEAKERS, load_bank, synthetic_bank

    if shutil.which("ffmpeg") is None:
        raise DataError("ffmpeg is not installed", "apt-get install ffmpeg")
    path, sr = Path(path), contract.audio.sample_rate
    bank = load_bank(fsdd, mnist, "test", sr, DEFAULT_TEST_SPEAKERS) if fsdd and mnist else synthetic_bank("test", sr)
    ds = AVDigitClips(bank, contract, 1, k=2, seed=seed, train=False, frames=int(seconds * 10) + 1, fps=10.0)
    c = ds.clip(0)
    (w, h), side = size, min(size)
    x0, y0 = (w - side) // 2, (h - side) // 2
    frames = []
    for j in range(seconds * fps):
        img, box = ds.render(c, c.first + round(j / fps * sr))
        canvas = np.zeros((h, w, 3), np.uint8)
        canvas[y0 : y0 + side, x0 : x0 + side] = cv2.resize(img.transpose(1, 2, 0).astype(np.uint8), (side, side))
        frames.append(canvas)
    tmp_wav = path.with_suffix(".wav.tmp")
    _write_wav(tmp_wav, c.track[c.first : c.first + seconds * sr], sr)
    _encode(_ffmpeg_command(w, h, fps, tmp_wav, path), frames, 1, path)
    tmp_wav.unlink()
    scale = side / contract.image.height
    meta = {"fps": fps, "size": [w, h], "seconds": seconds, "label": int(c.digits[c.spoken]),
            "box": [x0 + box[0] * scale, y0 + box[1] * scale, x0 + box[2] * scale, y0 + box[3] * scale]}  # fmt: skip
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=1))
    return path


def _render_scenes(ds, scenes: int, size, image_size: int, sr: int, hold: int) -> tuple[list, list, list]:
    """Each scene's frame (its image scaled into the centre square), its ``hold`` seconds of sound and its ground truth."""
    w, h = size
    side = min(w, h)
    x0, y0 = (w - side) // 2, (h - side) // 2
    scale = side / image_size
    frames, audio, boxes = [], [], []
    for i in range(scenes):
        item = ds[i]
        canvas = np.zeros((h, w, 3), np.uint8)
        canvas[y0 : y0 + side, x0 : x0 + side] = cv2.resize(
            item["image"].transpose(1, 2, 0).astype(np.uint8), (side, side), interpolation=cv2.INTER_LINEAR
        )
        frames.append(canvas)
        wave_i = np.asarray(item["wave"], np.float32)[:sr]
        audio.append(np.pad(wave_i, (0, hold * sr - len(wave_i))))
        bx = np.asarray(item["box"], np.float64)
        boxes.append(
            {
                "start_s": i * hold,
                "hold_s": hold,
                "label": int(item["label"]),
                "box": [x0 + bx[0] * scale, y0 + bx[1] * scale, x0 + bx[2] * scale, y0 + bx[3] * scale],
            }
        )
    return frames, audio, boxes


def _write_wav(path: Path, samples: np.ndarray, sr: int) -> None:
    """Write mono float samples as 16-bit PCM WAV, for ffmpeg to mux."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sr)
        f.writeframes(pcm.tobytes())


def _ffmpeg_command(w: int, h: int, fps: int, wav: Path, path: Path) -> list[str]:
    """ffmpeg reading raw RGB frames on stdin and ``wav``, writing H.264 (no B-frames) + AAC to ``path``."""
    return [
        "ffmpeg",
        "-y",
        "-loglevel",
        "error",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{w}x{h}",
        "-r",
        str(fps),
        "-i",
        "-",
        "-i",
        str(wav),
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-tune",
        "zerolatency",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-shortest",
        str(path),
    ]


def _encode(cmd: list[str], frames: list[np.ndarray], repeat: int, path: Path) -> None:
    """Pipe each scene's frame ``repeat`` times into ffmpeg; fail with its message if it fails."""
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    for canvas in frames:
        for _ in range(repeat):
            proc.stdin.write(canvas.tobytes())
    proc.stdin.close()
    err = proc.stderr.read().decode()
    if proc.wait() != 0:
        raise DataError(f"ffmpeg could not write {path}: {err[-300:]}", "check the ffmpeg installation (libx264, aac)")


def read_boxes(path: str | Path) -> list[dict]:
    """The per-scene ground truth written beside a clip by :func:`write_clip`."""
    side = Path(path).with_suffix(".json")
    if not side.is_file():
        raise DataError(f"{side} is missing", "write the clip with write_clip, which puts its ground truth beside it")
    return json.loads(side.read_text())["scenes"]
