"""Where results go, each opened by URI like the sources (``open_sink(uri, **opts)``, a
``usage()`` text per scheme): an annotated video file (the run's sound muxed back in with
ffmpeg), a JSON-lines events file, an HTTP MJPEG preview for headless boards, a desktop
window (:mod:`.window`). The Python callback is ``Pipeline(callback=...)``.

    sink = open_sink("file:///runs/out.mp4?fps=30")     # or "runs/out.mp4", "video://runs/out"
    Pipeline.from_bundle(b, "cam://0", sinks=["events.jsonl", "mjpeg://0.0.0.0:8090", "window://"])

Schemes: ``file`` (by extension: a video, or JSON lines), ``video``, ``events``, ``mjpeg``,
``window``; a plain path is a ``file`` (``out.mp4?fps=30``; a ``Path`` is taken whole).
Query parameters become options, keyword arguments override them; an unknown scheme or option is a ConfigError naming what it takes, an
output path that cannot be written one EdgeSDKError line naming the path and the cause.
A sink is fed on the inference thread (``result``, ``gap``), except one that declares
``on_caller_thread`` (the window), which the thread consuming the results feeds and pumps.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
import shutil
import struct
import subprocess
import textwrap
import threading
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from edge_sdk.errors import ConfigError, EdgeSDKError
from edge_sdk.outputs import writing
from edge_sdk.runtime.annotate import annotate
from edge_sdk.runtime.frames import Gap, Result

__all__ = ["Sink", "JsonlSink", "VideoSink", "MjpegSink", "SinkSet", "annotate", "open_sink", "open_sinks", "usage", "SCHEMES"]

log = logging.getLogger(__name__)

VIDEO_EXTS = (".mp4", ".m4v", ".mov", ".mkv", ".avi")
EVENTS_EXTS = (".jsonl", ".ndjson")

# scheme -> (default options, help text)
SCHEMES: dict[str, tuple[dict, str]] = {
    "file": (
        {},
        "file:///abs/out.mp4, file://relative/events.jsonl or a plain path -- by its extension: "
        f"{', '.join(VIDEO_EXTS)} is an annotated video (as video://, same options), "
        f"{', '.join(EVENTS_EXTS)} a JSON-lines events file (as events://).",
    ),
    "video": (
        dict(fps=25.0, audio_from="auto"),
        "video:///abs/out.mp4 or video://relative/out.mp4 -- the annotated "
        "frames (heatmap, the task's values, latency) as an mp4v video at fps, each frame shown from its time "
        "until the next (held over drops and gaps up to 5 s), written to a temporary name and renamed at close. "
        "Options: fps (default 25); audio_from (a sound file muxed in with ffmpeg at close, looped if the run was "
        "longer; auto: the file the run's sound came from, none: silent).",
    ),
    "events": (
        {},
        "events:///abs/events.jsonl or events://relative.jsonl -- one JSON object per line: "
        '{"type": "result", ["stream",] "task", "pts_ns", "seq", "latency_ms", "skew_ms", ...the task\'s values} or '
        '{"type": "gap", ...}. Written in place, one whole line at a time, so it can be followed while the '
        "run goes (tail -f). No options.",
    ),
    "mjpeg": (
        {},
        "mjpeg://127.0.0.1:8090 -- an HTTP MJPEG preview of the annotated frames at http://HOST:PORT/ "
        "(open it in a browser; frames are encoded only while someone watches). Host 0.0.0.0 serves every "
        "interface, port 0 any free port. No options.",
    ),
    "window": (
        dict(title="", min_side=480),
        "window:// or window://TITLE -- a desktop window (OpenCV's, or Tk's "
        "under a headless OpenCV) with the annotated frames and the backend and FPS; q, Esc or closing it ends "
        "the run. Drawn on the thread that calls Pipeline.run() or iterates the pipeline (GUI toolkits draw "
        "only on the thread that made the window). Needs a display. Options: title, min_side (smaller frames "
        "are enlarged by a whole factor, default 480).",
    ),
}


class Sink:
    """What the pipeline calls: ``result`` for each result, ``gap`` for each fault of a source,
    ``close`` once at the end; ``attach(pipeline)`` once at start. A sink with
    ``on_caller_thread`` is fed by the thread that consumes the results, which calls ``pump``
    between results: False ends the run."""

    on_caller_thread = False

    def attach(self, pipeline) -> None:
        pass

    def result(self, r: Result) -> None:
        raise NotImplementedError

    def gap(self, g: Gap) -> None:
        pass

    def pump(self) -> bool:
        return True

    def close(self) -> None:
        pass


def _create(path: Path, mode: str, **kw):
    """``open(path, mode)`` for writing; a folder, a missing folder or any OSError is one
    EdgeSDKError line naming the path and the cause."""
    if path.is_dir():
        raise EdgeSDKError(f"cannot write {path}: it is a folder", "give the path of a file (in that folder or elsewhere)")
    if not path.parent.is_dir():
        raise EdgeSDKError(
            f"cannot write {path}: folder {path.parent} does not exist", f"create it first (mkdir -p {path.parent}) or pick another path"
        )
    with writing(path):  # a read-only folder, a full disk: one line naming the path and the cause
        return open(path, mode, **kw)


class JsonlSink(Sink):
    """One JSON object per line: ``{"type": "result", ...}`` or ``{"type": "gap", ...}``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        # In place, not a temporary name renamed at close: events are followed while the run goes
        # (tail -f, a dashboard, a test counting lines), and a run killed outright keeps what it
        # wrote. Line-buffered, each line one write: a reader sees whole lines (the last at worst partial).
        self.f = _create(self.path, "w", buffering=1)
        self._lock = threading.Lock()

    def _write(self, obj: dict) -> None:
        with self._lock, writing(self.path):  # a disk that fills during the run: one line (the run goes on without it)
            self.f.write(json.dumps(obj) + "\n")

    def result(self, r: Result) -> None:
        self._write(
            {
                "type": "result",
                **({"stream": r.stream} if r.stream else {}),  # a MultiPipeline's results name their stream
                "task": r.task,
                "pts_ns": r.pts_ns,
                "seq": r.seq,
                "latency_ms": round(r.latency_ms, 3),
                "skew_ms": round(r.skew_ns / 1e6, 3),
                **r.values,
            }
        )

    def gap(self, g: Gap) -> None:
        self._write({"type": "gap", **asdict(g)})

    def close(self) -> None:
        with self._lock:
            self.f.close()


def _sound_file(pipeline) -> str | None:
    """The file the run's sound came from: its audio source, else its video source, when that
    is a file (``file://``, ``wav://``); None for devices, streams and generated scenes."""
    for src in (pipeline.audio, pipeline.video):
        if src is not None:  # the first one given is where the sound came from (a microphone: in no file)
            parts = urlsplit(src.uri)
            return unquote(parts.netloc + parts.path) if parts.scheme.lower() in ("file", "wav") else None
    return None


def _cut_short(video: Path) -> bool:
    """Whether a full disk cut the MP4 ``video`` short (OpenCV's writer fails silently): no space
    left, and its index (the ``moov`` box, written last) missing or cut."""
    if shutil.disk_usage(video.parent).free >= 1 << 20 or video.suffix.lower() not in (".mp4", ".m4v", ".mov"):
        return False
    with open(video, "rb") as f:
        size, at = os.fstat(f.fileno()).st_size, 0
        while at + 8 <= size:  # the top-level boxes: 32-bit size (1: a 64-bit size follows) and type
            f.seek(at)
            n, kind = struct.unpack(">I4s", f.read(8))
            n = struct.unpack(">Q", f.read(8))[0] if n == 1 else n
            if kind == b"moov" or n < 8:
                return not (kind == b"moov" and at + n <= size)
            at += n
    return True


class VideoSink(Sink):
    """Annotated frames to a video file at ``fps``, each shown from its frame's time until the
    next one's (held over dropped frames and gaps, skipped when frames come faster), so the
    video lasts as long as the run and stays in step with its sound; ``audio_from`` (a file,
    looped if the run was longer; ``"auto"``: the run's own sound file) is muxed back in with
    ffmpeg at close. Written under temporary names and renamed: the path holds a whole video."""

    MAX_HOLD_S = 5.0  # a longer gap (a lost camera) is cut out: the next frame follows at once

    def __init__(self, path: str | Path, fps: float = 25.0, audio_from: str | None = None):
        self.path, self.fps, self.audio_from = Path(path), fps, audio_from
        self.writer = None
        self.tmp = self.path.with_name(self.path.stem + ".video" + self.path.suffix)
        _create(self.path, "ab").close()  # refused now, by name, rather than at the first frame
        if not self.path.stat().st_size:
            self.path.unlink()
        self.t0_ns, self.written, self.shown = 0, 0, None

    def attach(self, pipeline) -> None:
        if self.audio_from == "auto":
            self.audio_from = _sound_file(pipeline)

    def result(self, r: Result) -> None:
        import cv2

        img = annotate(r)[:, :, ::-1]
        if self.writer is None:
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (img.shape[1], img.shape[0]))
            if not self.writer.isOpened():
                self.writer = None
                raise EdgeSDKError(f"cannot write {self.tmp}: OpenCV's video writer would not open it (mp4v)", f"use one of {', '.join(VIDEO_EXTS)}")
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
        if _cut_short(self.tmp):
            self.tmp.unlink(missing_ok=True)
            raise EdgeSDKError(
                f"cannot write {self.path}: no space left on device", f"free space there (df -h {self.path.parent}) or write elsewhere"
            )
        sound = self.audio_from if self.audio_from not in (None, "", "auto", "none") else None
        muxed = self.path.with_name(self.path.stem + ".mux" + self.path.suffix)
        ok = False
        try:
            ok = bool(sound) and shutil.which("ffmpeg") is not None and self._mux(sound, muxed)
        finally:  # also when a second Ctrl-C stops the muxing: the silent video is kept
            if ok:
                muxed.replace(self.path)
                self.tmp.unlink()
            else:
                if sound:
                    log.warning("ffmpeg could not mux the sound of %s back; %s is without sound", sound, self.path)
                muxed.unlink(missing_ok=True)
                self.tmp.replace(self.path)

    def _mux(self, sound: str, out: Path) -> bool:
        cmd = ["ffmpeg", "-y", "-loglevel", "error", "-i", str(self.tmp), "-stream_loop", "-1", "-i", sound]
        cmd += ["-map", "0:v", "-map", "1:a?", "-c:v", "copy", "-c:a", "aac", "-shortest", str(out)]
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
                        head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(data)).encode()
                        self.wfile.write(head + b"\r\n\r\n" + data + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    return
                finally:
                    with sink.cond:
                        sink.clients -= 1

        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            raise EdgeSDKError(
                f"cannot serve the MJPEG preview on {host}:{port}: {e.strerror or e}",
                "pick another port (mjpeg://127.0.0.1:0 takes a free one) or host",
            ) from None
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True, name="edge_sdk-mjpeg").start()

    def result(self, r: Result) -> None:
        if not self.clients:
            return
        import cv2

        ok, buf = cv2.imencode(".jpg", annotate(r)[:, :, ::-1])
        if ok:
            with self.cond:
                self.jpeg = buf.tobytes()
                self.cond.notify_all()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- by URI --------------------------------------------------------------------------------------
def usage(scheme: str | None = None, width: int | None = None) -> str:
    """Help text for one scheme, or for all of them (``scheme=None``; with ``width``, one
    indented paragraph each, wrapped, as ``edge-sdk run --help`` lists them)."""
    if scheme is None and width:
        return "\n".join(textwrap.fill(text, width, initial_indent="  ", subsequent_indent="      ") for _, text in SCHEMES.values())
    if scheme is None:
        return "\n\n".join(text for _, text in SCHEMES.values())
    if scheme not in SCHEMES:
        raise _unknown(f"{scheme}://", scheme)
    return SCHEMES[scheme][1]


def _unknown(uri: str, scheme: str) -> ConfigError:
    close = difflib.get_close_matches(scheme.lower(), SCHEMES, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]}://? " if close else ""
    return ConfigError(
        f"unknown sink scheme {scheme!r} in {uri!r}",
        f"{hint}use one of: {', '.join(f'{s}://' for s in SCHEMES)} (see edge_sdk.runtime.sinks.usage())",
    )


def _by_extension(uri: str, path: str) -> str:
    ext = Path(path).suffix.lower()
    if ext in VIDEO_EXTS:
        return "video"
    if ext in EVENTS_EXTS:
        return "events"
    raise ConfigError(
        f"sink {uri!r}: {Path(path).name or path!r} ends in neither a video ({', '.join(VIDEO_EXTS)}) "
        f"nor a JSON-lines extension ({', '.join(EVENTS_EXTS)})",
        f"write video://{path} or events://{path} to say which, or use mjpeg://HOST:PORT or window://",
    )


def _option(uri: str, key: str, value, default):
    try:
        v = type(default)(value)
    except (TypeError, ValueError):
        v = None
    if isinstance(default, str) and v is not None:
        return v
    if v is not None and not math.isfinite(v):
        raise ConfigError(f"sink {uri}: option {key}={value!r} is not a finite number", f"pass {key}={default!r} or another finite number")
    if v is not None and (v > 0 if key == "fps" else v >= 0):
        return v
    need = "a number > 0" if key == "fps" else "a whole number >= 0" if isinstance(default, int) else "a number >= 0"
    raise ConfigError(f"sink {uri}: option {key}={value!r} is not {need}", f"pass {key}={default!r} or another {need}")


def open_sink(uri: str | os.PathLike, **opts) -> Sink:
    """Open the output named by ``uri`` (see :func:`usage`)."""
    text = os.fspath(uri)
    parts = urlsplit(text)
    if "://" not in text:  # a plain path: its extension says which (a str's options after "?"; a Path is taken whole)
        target, _, q = (text, "", "") if isinstance(uri, os.PathLike) else text.partition("?")
        scheme, query = _by_extension(text, target), parse_qsl(q, keep_blank_values=True)
    else:
        scheme, target = parts.scheme.lower(), unquote(parts.netloc + parts.path)
        if scheme not in SCHEMES:
            raise _unknown(text, scheme)
        scheme = _by_extension(text, target) if scheme == "file" else scheme
        query = parse_qsl(parts.query, keep_blank_values=True)
    defaults = SCHEMES[scheme][0]
    given = {**dict(query), **opts}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        takes = ", ".join(f"{k} (default {v!r})" for k, v in defaults.items()) or "no options"
        raise ConfigError(f"sink {text}: unknown option(s) {', '.join(unknown)} for {scheme}://", f"{scheme}:// takes {takes}")
    o = {k: _option(text, k, given.get(k, d), d) for k, d in defaults.items()}
    if scheme in ("video", "events") and not target:
        raise ConfigError(f"sink {text!r} names no file", f"write {scheme}:///abs/path or {scheme}://relative/path")
    if scheme == "video":
        return VideoSink(target, fps=o["fps"], audio_from=None if o["audio_from"] in ("", "none") else o["audio_from"])
    if scheme == "events":
        return JsonlSink(target)
    if scheme == "mjpeg":
        try:
            host, port = parts.hostname or "127.0.0.1", parts.port
        except ValueError as e:
            raise ConfigError(f"sink {text}: {e}", "write mjpeg://HOST:PORT with a port 0..65535") from None
        if port is None:
            raise ConfigError(f"sink {text}: no port", "write mjpeg://127.0.0.1:8090 (port 0: any free one)")
        return MjpegSink(port, host)
    from edge_sdk.runtime.window import WindowSink

    return WindowSink(o["title"] or target or "edge-sdk", min_side=o["min_side"])


def open_sinks(sinks) -> list:
    """Sink objects as given, URIs (and paths) opened with :func:`open_sink`; if one fails,
    those opened here are closed again."""
    out, opened = [], []
    try:
        for s in sinks:
            if isinstance(s, (str, os.PathLike)):
                s = open_sink(s)
                opened.append(s)
            out.append(s)
    except BaseException:
        for s in opened:
            s.close()
        raise
    return out


class SinkSet:
    """The sinks of one run (URIs opened): each item goes to every sink still working; one
    that fails (a full disk) is said once, left out from then on and listed in ``errors``,
    and the run and the other sinks go on. Those that draw on the consumer's thread
    (``on_caller_thread``: a window) are ``drawn``, the others ``fed``; each closes once."""

    def __init__(self, sinks=()):
        self.sinks = open_sinks(sinks)
        self.drawn = [s for s in self.sinks if getattr(s, "on_caller_thread", False)]
        self.fed = [s for s in self.sinks if s not in self.drawn]
        self.failed: list = []
        self.errors: list[str] = []
        self._closed: list = []
        self._lock = threading.Lock()

    def __iter__(self):
        return iter(self.sinks)

    def __len__(self) -> int:
        return len(self.sinks)

    def send(self, method: str, item, sinks=None) -> None:
        """``item`` to each sink (default: the ``fed`` ones) still working that has ``method``."""
        for s in self.fed if sinks is None else sinks:
            if s not in self.failed and hasattr(s, method):
                try:
                    getattr(s, method)(item)
                except Exception as e:  # noqa: BLE001 - any sink's failure is handled the same way
                    self._fail(s, e)

    def draw(self, result) -> bool:
        """On the consumer's thread: ``result`` (None: nothing new) to the ``drawn`` sinks, then
        their events pumped; False once one asks to end the run (a window closed, q, Esc)."""
        if result is not None:
            self.send("result", result, self.drawn)
        go = True
        for s in self.drawn:
            try:
                go = (s in self.failed or s.pump() is not False) and go
            except Exception as e:  # noqa: BLE001 - as send
                self._fail(s, e)
        return go

    def close(self, drawn: bool = True) -> None:
        """Close every sink not closed yet (the ``drawn`` ones only with ``drawn``: on their
        thread), each even when another fails."""
        with self._lock:
            for s in self.sinks:
                if s in self._closed or (s in self.drawn and not drawn):
                    continue
                self._closed.append(s)
                try:
                    if hasattr(s, "close"):
                        s.close()
                except Exception as e:  # noqa: BLE001 - as send
                    if s not in self.failed:
                        self._fail(s, e)

    def _fail(self, sink, e: Exception) -> None:
        self.failed.append(sink)
        log.error("%s failed (%s: %s); the run goes on without it", type(sink).__name__, e.__class__.__name__, e)
        self.errors.append(f"{type(sink).__name__}: {e.__class__.__name__}: {e}")
