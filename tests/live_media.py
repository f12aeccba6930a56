"""Real media for the source tests: the clips of ../shared/data/video (skipped with a reason
where absent), ffmpeg-made variants, a speech WAV for the virtual microphone, and network
cameras (ffmpeg serving MJPEG over HTTP, GStreamer's RTSP server) to kill and restart."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import wave
from pathlib import Path

import numpy as np
import pytest
import soxr

from edge_sdk.errors import DataError
from edge_sdk.runtime.frames import AudioBlock, Gap, VideoFrame
from edge_sdk.runtime.sources import open_source

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
VIDEO_DIR = DATA / "video"
SR = 16000
# clip -> (length s, fps), from ../shared/data/README.md
CLIPS = {"chaplin.mp4": (9.6, 25), "big_buck_bunny_0_30.webm": (30.0, 24), "smpte-2997.mp4": (10.0, 25), "example2.mp4": (2.0, 24)}


def clip(name: str) -> Path:
    p = VIDEO_DIR / name
    if not p.is_file():
        pytest.skip(f"real clip {p} is absent (../shared/data/video is not on this machine)")
    return p


def need(*tools: str) -> None:
    for t in tools:
        if shutil.which(t) is None:
            pytest.skip(f"the {t} binary is not installed (apt-get install {t}; toolchain/setup.sh does it)")


def run(src, timeout: float = 30.0, until=None) -> list:
    """Start ``src``, collect what it emits until it is done (or ``until(items)``), then stop it."""
    items: list = []
    src.start(items.append)
    end = time.monotonic() + timeout
    while not (src.done or src.error or (until and until(items))):
        assert time.monotonic() < end, f"{src.uri} did not finish in {timeout} s: {src.counters}"
        time.sleep(0.01)
    src.stop()
    return items


def split(items):
    return (
        [i for i in items if isinstance(i, VideoFrame)],
        [i for i in items if isinstance(i, AudioBlock)],
        [i for i in items if isinstance(i, Gap)],
    )


def increasing(items) -> bool:
    return all(np.diff([i.pts_ns for i in items]) > 0) and [i.seq for i in items] == list(range(len(items)))


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True, timeout=60)


def speech_wav(path: Path) -> np.ndarray:
    """0.5 s of silence, a real FSDD recording (or a tone), 0.5 s of silence, as 16-bit 16 kHz."""
    rec = DATA / "fsdd" / "recordings" / "7_jackson_0.wav"
    if rec.is_file():
        with wave.open(str(rec)) as w:
            x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
            x = soxr.resample(x, w.getframerate(), SR).astype(np.float32)
        x *= 0.5 / np.abs(x).max()
    else:
        t = np.arange(int(0.6 * SR)) / SR
        x = (0.3 * np.sin(2 * np.pi * 440 * t) * np.sin(np.pi * t / 0.6)).astype(np.float32)
    sig = np.concatenate([np.zeros(SR // 2, np.float32), x, np.zeros(SR // 2, np.float32)])
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes((sig * 32767).astype("<i2").tobytes())
    return x


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(path: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-i",
            str(path),
            "-an",
            "-c:v",
            "mjpeg",
            "-q:v",
            "8",
            "-f",
            "mpjpeg",
            "-listen",
            "1",
            f"http://127.0.0.1:{port}/",
        ],
        stdin=subprocess.DEVNULL,
    )


SYSTEM_PYTHON = "/usr/bin/python3"  # PyGObject comes from apt, not from the venv


def serve_rtsp(path: Path, port: int) -> subprocess.Popen:
    """tests/rtsp_camera.py (GStreamer's RTSP server), once it listens."""
    server = subprocess.Popen(
        [SYSTEM_PYTHON, str(Path(__file__).with_name("rtsp_camera.py")), str(path), str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = server.stdout.readline().strip()
    if line != "ready":
        server.kill()
        server.wait()
        if server.returncode == 2 or not line:
            pytest.skip(
                f"no GStreamer RTSP server ({line or 'no output'}): apt-get install python3-gi "
                "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good (toolchain/setup.sh does it)"
            )
        raise RuntimeError(f"the RTSP camera did not start: {line}")
    return server


CAMERAS = {"http": (serve, "http://127.0.0.1:{port}/"), "rtsp": (serve_rtsp, "rtsp://127.0.0.1:{port}/cam")}


def connect(url: str, **opts):
    end = time.monotonic() + 10
    while True:  # until ffmpeg listens
        try:
            return open_source(url, **opts)
        except DataError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def nearest_clip_frame(path: Path, image: np.ndarray) -> float:
    """Mean absolute difference (levels, at 1/8 size) from ``image`` to the closest frame of the clip."""
    import av
    import cv2

    small = lambda x: cv2.resize(x, (x.shape[1] // 8, x.shape[0] // 8), interpolation=cv2.INTER_AREA).astype(np.float32)
    target = small(image)
    with av.open(str(path)) as c:
        return min(float(np.abs(small(f.to_ndarray(format="rgb24")) - target).mean()) for f in c.decode(video=0))


def wait_for(cond, timeout: float, src) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end and src.error is None, f"{src.uri}: {src.counters}, error {src.error}"
        time.sleep(0.02)
