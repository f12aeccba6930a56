"""Where results go: JSON-lines events, an annotated video file (the audio track muxed
back in with ffmpeg), an HTTP MJPEG preview for headless boards. (The Python callback is
``Pipeline(callback=...)``; an on-screen window is :class:`MjpegSink` opened in a browser,
since the runtime depends on headless OpenCV.)"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import threading
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

from edge_sdk.runtime.frames import Gap, Result

__all__ = ["Sink", "JsonlSink", "VideoSink", "MjpegSink", "annotate"]

log = logging.getLogger(__name__)


class Sink:
    def result(self, r: Result) -> None:
        raise NotImplementedError

    def gap(self, g: Gap) -> None:  # noqa: B027 - optional
        pass

    def close(self) -> None:  # noqa: B027 - optional
        pass


def annotate(r: Result, label: str = "", min_side: int = 0) -> np.ndarray:
    """The frame (RGB) with the heatmap blended over the model's square, the task's values and
    ``label`` (e.g. backend and FPS) at the bottom. A frame smaller than ``min_side`` is first
    enlarged by a whole factor (nearest neighbour), so the text stays readable."""
    img = r.frame.image
    f = max(1, -(-min_side // max(img.shape[:2])))
    img = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_NEAREST) if f > 1 else img.copy()
    h, w = img.shape[:2]
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    if r.heatmap is not None:
        hm = r.heatmap.astype(np.float32)
        hm = (hm - hm.min()) / (np.ptp(hm) + 1e-9)
        colour = cv2.applyColorMap(cv2.resize((hm * 255).astype(np.uint8), (side, side)), cv2.COLORMAP_JET)[:, :, ::-1]
        img[y0:y0 + side, x0:x0 + side] = cv2.addWeighted(img[y0:y0 + side, x0:x0 + side], 0.55, colour, 0.45, 0)
    v = r.values
    if "peak_xy" in v:
        cv2.circle(img, tuple(int(c * f) for c in v["peak_xy"]), max(4, side // 40), (255, 255, 255), 2)
    for face in v.get("faces", []):
        x0, y0, x1, y1 = (int(c * f) for c in face["box"])
        cv2.rectangle(img, (x0, y0), (x1, y1), (0, 255, 0), 2)
    text = "  ".join(f"{k} {v[k]}" for k in ("score", "offset_ms", "belongs") if k in v) + f"  {r.latency_ms:.0f} ms"
    cv2.putText(img, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
    if label:
        cv2.putText(img, label, (8, h - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1)
    return img


class JsonlSink(Sink):
    """One JSON object per line: ``{"type": "result", ...}`` or ``{"type": "gap", ...}``."""

    def __init__(self, path: str | Path):
        self.f = open(path, "w")
        self._lock = threading.Lock()

    def _write(self, obj: dict) -> None:
        with self._lock:
            self.f.write(json.dumps(obj) + "\n")

    def result(self, r: Result) -> None:
        self._write({"type": "result", "task": r.task, "pts_ns": r.pts_ns, "seq": r.seq, "latency_ms": round(r.latency_ms, 3),
                     "skew_ms": round(r.skew_ns / 1e6, 3), **r.values})

    def gap(self, g: Gap) -> None:
        self._write({"type": "gap", **asdict(g)})

    def close(self) -> None:
        with self._lock:
            self.f.close()


class VideoSink(Sink):
    """Annotated frames to a video file at ``fps``, each shown from its frame's time until the
    next one's (held over dropped frames and gaps, skipped when frames come faster), so the
    video lasts as long as the run and stays in step with its sound; ``audio_from`` (a file,
    looped if the run was longer) is muxed back in with ffmpeg at close."""

    MAX_HOLD_S = 5.0  # a longer gap (a lost camera) is cut out: the next frame follows at once

    def __init__(self, path: str | Path, fps: float = 25.0, audio_from: str | None = None):
        self.path, self.fps, self.audio_from = Path(path), fps, audio_from
        self.writer = None
        self.tmp = self.path.with_name(self.path.stem + ".video" + self.path.suffix)
        self.t0_ns, self.written, self.shown = 0, 0, None

    def result(self, r: Result) -> None:
        img = annotate(r)[:, :, ::-1]
        if self.writer is None:
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (img.shape[1], img.shape[0]))
            self.t0_ns = r.pts_ns
        slot = int((r.pts_ns - self.t0_ns) * self.fps / 1e9)  # where this frame starts in the video
        if slot < self.written - self.fps or slot > self.written + self.MAX_HOLD_S * self.fps:  # time jumped: carry on from here
            self.t0_ns, slot = r.pts_ns - int(self.written * 1e9 / self.fps), self.written
        while self.shown is not None and self.written < slot:  # the previous frame lasts until this one
            self.writer.write(self.shown)
            self.written += 1
        if slot >= self.written or self.shown is None:
            self.writer.write(img)
            self.written += 1
        self.shown = img  # a frame faster than the video's rate is not written, but is held from here

    def close(self) -> None:
        if self.writer is None:
            return
        self.writer.release()
        self.writer = None
        muxed = False
        try:
            muxed = bool(self.audio_from) and shutil.which("ffmpeg") is not None and self._mux()
        finally:  # also when a second Ctrl-C stops the muxing: the silent video is kept
            if muxed:
                self.tmp.unlink()
            else:
                if self.audio_from:
                    log.warning("ffmpeg could not mux the sound of %s back; %s is without sound", self.audio_from, self.path)
                self.tmp.replace(self.path)

    def _mux(self) -> bool:
        cmd = ["ffmpeg", "-y", "-loglevel", "error", "-i", str(self.tmp), "-stream_loop", "-1", "-i", self.audio_from,
               "-map", "0:v", "-map", "1:a?", "-c:v", "copy", "-c:a", "aac", "-shortest", str(self.path)]
        return subprocess.run(cmd, capture_output=True).returncode == 0


class MjpegSink(Sink):
    """An HTTP MJPEG preview (``http://HOST:PORT/``) of the annotated frames, for headless boards."""

    def __init__(self, port: int = 8090, host: str = "127.0.0.1"):
        self.jpeg: bytes | None = None
        self.clients = 0  # frames are encoded only while someone watches
        self.cond = threading.Condition()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                with sink.cond:
                    sink.clients += 1
                try:
                    while True:
                        with sink.cond:
                            sink.cond.wait(timeout=1.0)
                            data = sink.jpeg
                        if data is None:
                            continue
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    return
                finally:
                    with sink.cond:
                        sink.clients -= 1

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True, name="edge_sdk-mjpeg").start()

    def result(self, r: Result) -> None:
        if not self.clients:
            return
        ok, buf = cv2.imencode(".jpg", annotate(r)[:, :, ::-1])
        if ok:
            with self.cond:
                self.jpeg = buf.tobytes()
                self.cond.notify_all()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
