"""The capture machinery every source shares, and the live video inputs: the :class:`Source`
base (capture thread, counters, sequence numbers, pacing, stop) used by all of
:mod:`.sources`, and :class:`CaptureSource`, cameras and network streams through OpenCV's
``VideoCapture``. The microphone is :mod:`.microphone`; files are read in :mod:`.sources`,
generated scenes in :mod:`.synthetic`.

Threads are daemons joined with a timeout, so ``stop()`` never hangs on a device that
does not answer.
"""

from __future__ import annotations

import glob
import logging
import os
import threading
import time

import cv2
import numpy as np

from edge_sdk.errors import DataError
from edge_sdk.media.image import center_crop_resize
from edge_sdk.runtime.clock import now_ns
from edge_sdk.runtime.frames import AudioBlock, Gap, VideoFrame

__all__ = ["Source", "CaptureSource", "csi_pipeline", "has_gstreamer"]

log = logging.getLogger(__name__)

_yield = getattr(os, "sched_yield", lambda: time.sleep(0))  # gives up the CPU and the GIL; Windows has no sched_yield
_JOIN_S = 1.0  # how long stop() waits for each thread before leaving it (a daemon) behind


class Source:
    """One input. ``start(emit)`` returns at once; a thread (or a device callback plus a
    feeder thread) then calls ``emit(item)`` with :class:`VideoFrame`, :class:`AudioBlock`
    and :class:`Gap` items in capture order. ``emit`` may block: offline inputs wait for
    the consumer (back-pressure), live ones count what they had to drop.

    ``seq`` counts VideoFrames and AudioBlocks separately (0, 1, 2, ... per kind), and
    ``pts_ns`` increases per kind, on the SDK clock (:mod:`.clock`). ``done`` turns True
    once a finite input has ended and everything was emitted; ``error`` holds the exception
    that ended a source (also sent to the consumer as ``Gap(kind="error")``).
    """

    def __init__(self, uri: str, kind: str, opts: dict | None = None):
        self.uri, self.kind = uri, kind
        self.opts = dict(opts or {})
        self.counters = dict.fromkeys(("frames", "blocks", "gaps", "dropped", "overflows", "decode_errors", "reconnects"), 0)
        self.done = False
        self.error: BaseException | None = None
        self._emit = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._seq = {"video": 0, "audio": 0}
        self._last_pts = {"video": None, "audio": None}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r}, kind={self.kind!r})"

    @property
    def live(self) -> bool:
        """Whether it delivers at the pace of the world (devices, streams, realtime=1), so a
        slow consumer must drop frames; a file read as fast as possible waits for it instead."""
        return True

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, emit) -> None:
        """Start capturing; ``emit(item)`` is called from a capture thread."""
        if self._emit is not None:
            raise RuntimeError(f"{self.uri} was already started; open a new source to read it again")
        self._emit = emit
        self._begin()

    def stop(self) -> None:
        """Stop capturing and close the device; safe to call twice, never hangs."""
        self._stopping.set()
        try:
            self._close()
        except Exception as e:  # noqa: BLE001 - closing must not raise into the caller
            log.warning("%s: closing failed: %s", self.uri, e)
        for t in self._threads:
            if t is not threading.current_thread() and t.is_alive():
                t.join(_JOIN_S)
                if t.is_alive():
                    log.warning("%s: thread %r still busy after %.1f s; left behind (daemon)", self.uri, t.name, _JOIN_S)

    @property
    def stopped(self) -> bool:
        return self._stopping.is_set()

    def _begin(self) -> None:
        self._spawn(self._run, "capture")

    def _run(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        pass

    def _spawn(self, target, what: str) -> None:
        t = threading.Thread(target=self._guard, args=(target,), name=f"{what} {self.uri}", daemon=True)
        self._threads.append(t)
        t.start()

    def _guard(self, target) -> None:
        try:
            target()
        except Exception as e:  # noqa: BLE001 - reported to the consumer, never lost
            self._fail(e)

    def _fail(self, e: BaseException) -> None:
        if self.error is None:
            self.error = e
        text = str(e)
        log.error("%s", text if text.startswith(self.uri) else f"{self.uri} stopped: {text}")
        try:
            self.gap("error", message=text)
        except Exception as again:  # noqa: BLE001 - the consumer itself failed
            log.error("%s: could not report the error: %s", self.uri, again)

    # -- what capture threads call -------------------------------------------------------
    _PUNCTUAL_NS = 200_000

    def wait_until(self, due_ns: int) -> bool:
        """Sleep until ``due_ns`` on the SDK clock; True when stopped meanwhile.

        A paced source (a file or generated scenes played like a camera) is a camera
        simulator: its items must come out when they are due, not when a timer happens to
        wake. A timed wait oversleeps by ~0.1 ms (timer slack, then the GIL), which the
        runtime's capture-to-result latency would count as its own (0.11 of a 1.6 ms median,
        measured). So the last 0.2 ms are spun, yielding the CPU and the GIL at each turn
        (``sched_yield`` does not sleep; ``time.sleep(0)`` may, by the timer slack): frames
        come out 0.01 ms late (median) for 11 ms more CPU per second of 720p30 media with
        10 ms audio blocks (1.1% of a core, measured).
        """
        wait = due_ns - now_ns() - self._PUNCTUAL_NS
        if wait > 0 and self._stopping.wait(wait / 1e9):
            return True
        while now_ns() < due_ns and not self.stopped:
            _yield()
        return self.stopped

    def _next(self, kind: str, pts_ns: int) -> tuple[int, int]:
        last = self._last_pts[kind]
        pts_ns = int(pts_ns) if last is None else max(int(pts_ns), last + 1)
        self._last_pts[kind] = pts_ns
        seq = self._seq[kind]
        self._seq[kind] += 1
        return seq, pts_ns

    def frame(self, image: np.ndarray | None, pts_ns: int, meta: dict | None = None, picture=None) -> bool:
        """Emit one RGB frame (or a decoded ``picture``, see :class:`VideoFrame`); False (nothing
        emitted) once stopped."""
        if self.stopped:
            return False
        seq, pts_ns = self._next("video", pts_ns)
        self.counters["frames"] += 1
        self._emit(VideoFrame(pts_ns, seq, image, self.uri, meta or {}, picture=picture))
        return True

    def block(self, samples: np.ndarray, pts_ns: int, sample_rate: int) -> bool:
        """Emit one mono float32 block whose first sample is at ``pts_ns``."""
        if self.stopped or samples.size == 0:
            return not self.stopped
        seq, pts_ns = self._next("audio", pts_ns)
        self.counters["blocks"] += 1
        self._emit(AudioBlock(pts_ns, seq, np.ascontiguousarray(samples, np.float32), sample_rate, self.uri))
        return True

    def gap(self, kind: str, seconds: float = 0.0, message: str = "", pts_ns: int | None = None) -> None:
        self.counters["gaps"] += 1
        self._emit(Gap(now_ns() if pts_ns is None else int(pts_ns), self.uri, kind, float(seconds), message))


# -- cameras and network streams ---------------------------------------------------------
class _Bgr:
    """An OpenCV frame as captured, BGR (see :class:`~.frames.VideoFrame`): the model's square
    is cut from it and its channels swapped on those pixels alone, exactly what cutting the
    RGB frame gives; the whole frame is converted to RGB only when something reads it (0.2 ms
    per 720p frame, measured, that a live pipeline without an overlay no longer spends)."""

    __slots__ = ("bgr",)

    def __init__(self, bgr: np.ndarray):
        self.bgr = bgr

    @property
    def shape(self) -> tuple[int, int]:
        return self.bgr.shape[:2]

    def rgb(self) -> np.ndarray:
        return cv2.cvtColor(self.bgr, cv2.COLOR_BGR2RGB)

    def cut(self, size) -> np.ndarray:
        return np.ascontiguousarray(center_crop_resize(self.bgr, size)[..., ::-1])


def csi_pipeline(sensor: int, width: int, height: int, fps: int, flip: int = 0) -> str:
    """The GStreamer pipeline for a Jetson CSI camera (nvarguscamerasrc), ending in BGR for OpenCV."""
    return (
        f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM), width={width}, height={height}, "
        f"framerate={fps}/1 ! nvvidconv flip-method={flip} ! video/x-raw, format=BGRx ! videoconvert ! "
        f"video/x-raw, format=BGR ! appsink drop=1 max-buffers=2"
    )


def has_gstreamer() -> bool:
    return any(line.strip().startswith("GStreamer:") and "YES" in line for line in cv2.getBuildInformation().splitlines())


def _quiet_opencv() -> None:
    """OpenCV and its FFmpeg print each failed (re)connection to stderr (about 30 lines a
    minute while a network camera is down: "Connection refused", "can't be used to capture
    by name"); the SDK reports a lost camera itself, rate-limited. Setting
    ``OPENCV_FFMPEG_LOGLEVEL`` or ``OPENCV_LOG_LEVEL`` brings their messages back. OpenCV
    reads the first when the process opens its first FFmpeg capture: an app that opened one
    before the SDK's keeps its own setting."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


class CaptureSource(Source):
    """A camera or stream read with OpenCV's ``VideoCapture`` in a thread; ``pts_ns`` is the
    capture time on the SDK clock. Network streams (``network=True``) that end or stall for
    ``stall_s`` seconds emit ``Gap(kind="lost")``, reconnect with exponential backoff (0.1 s
    doubling to 0.5 s, :attr:`RETRY_S`; attempts logged, at most every 10 s, and counted with the time lost in
    ``counters``), then emit ``Gap(kind="reconnect", seconds=...)`` as frames resume."""

    _SAY_EVERY_NS = 10_000_000_000
    # Reconnect attempts: the first after 0.1 s, then doubling up to every 0.5 s, so a camera that
    # comes back is read within about 0.5 s plus its stream's start. An attempt on a server that is
    # down is refused at once (a connect(), no busy loop); one on an unreachable host waits up to
    # stall_s by itself.
    RETRY_S = (0.1, 0.5)

    def __init__(self, uri: str, target, api: int, opts: dict, network: bool = False):
        super().__init__(uri, "video", opts)
        _quiet_opencv()
        if network:
            self.counters.update(reconnect_attempts=0, lost_s=0.0)
        self.target, self.api, self.network = target, api, network
        self.stall_s = float(opts.get("stall_s", 2.0))
        self._lock = threading.Lock()
        self._cap = self._open()
        if self._cap is None:
            raise self._open_error()

    def _open(self):
        if self.network:
            ms = int(self.stall_s * 1000)
            cap = cv2.VideoCapture(self.target, self.api, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
        else:
            cap = cv2.VideoCapture(self.target, self.api)
        if not cap.isOpened():
            cap.release()
            return None
        for prop, key in ((cv2.CAP_PROP_FRAME_WIDTH, "width"), (cv2.CAP_PROP_FRAME_HEIGHT, "height"), (cv2.CAP_PROP_FPS, "fps")):
            if self.opts.get(key) and not self.uri.startswith("csi:"):
                cap.set(prop, float(self.opts[key]))
        return cap

    def _take(self):
        with self._lock:
            cap, self._cap = self._cap, None
        return cap

    def _close(self) -> None:  # a source that never started still holds the device it opened
        cap = self._take()
        if cap is not None:
            cap.release()

    def _open_error(self) -> DataError:
        if self.network:
            return DataError(
                f"{self.uri} could not be opened (refused, not found, or no stream within {self.stall_s:g} s)",
                "check that the URL plays in ffplay or VLC, that the camera is reachable and the credentials in the URL are right",
            )
        if self.uri.startswith("csi:"):
            return DataError(
                f"{self.uri}: the CSI camera pipeline did not start ({self.target})",
                "check the sensor id and that nvargus-daemon runs (sudo systemctl restart nvargus-daemon)",
            )
        found = ", ".join(sorted(glob.glob("/dev/video*"))) or "no /dev/video* devices"
        return DataError(
            f"camera {self.uri} could not be opened", f"check it is plugged in and not used by another program; this machine has: {found}"
        )

    def _run(self) -> None:
        cap = self._take()
        last = now_ns()
        lost_at, delay, failures, attempts, said, lost_ns = None, self.RETRY_S[0], 0, 0, 0, 0

        def lost_s(t: int) -> float:  # seconds without the stream, this loss included
            return round((lost_ns + (t - lost_at if lost_at is not None else 0)) / 1e9, 2)

        try:
            while not self.stopped:
                ok, bgr = cap.read() if cap is not None else (False, None)
                if ok and bgr is not None:
                    t = now_ns()
                    if lost_at is not None:
                        self.counters["reconnects"] += 1
                        self.counters["lost_s"] = lost_s(t)
                        log.info("%s: back after %.2f s", self.uri, (t - lost_at) / 1e9)
                        self.gap("reconnect", (t - lost_at) / 1e9, "the stream came back", pts_ns=lost_at)
                        lost_ns, lost_at, delay, attempts = lost_ns + t - lost_at, None, self.RETRY_S[0], 0
                    last, failures = t, 0
                    self.frame(None, t, picture=_Bgr(bgr))
                    continue
                if not self.network:  # a local camera: short hiccups are retried, a dead one ends it
                    failures += 1
                    if (now_ns() - last) / 1e9 > self.stall_s:
                        raise DataError(
                            f"camera {self.uri} stopped delivering frames for {self.stall_s:g} s",
                            "check the cable and that no other program took the camera",
                        )
                    time.sleep(0.01)
                    continue
                if cap is not None:
                    cap.release()
                    cap = None
                if not self.opts.get("reconnect", True):
                    log.info("%s ended", self.uri)
                    self.done = True
                    return
                t = now_ns()
                if lost_at is None:
                    lost_at = last
                    self.gap("lost", message="the stream ended or stalled; reconnecting", pts_ns=last)
                self.counters["lost_s"] = lost_s(t)
                attempts += 1
                if attempts == 1 or t - said >= self._SAY_EVERY_NS:
                    said = t
                    log.warning("lost %s: attempt %d to reconnect in %g s (no frame for %.0f s)", self.uri, attempts, delay, (t - lost_at) / 1e9)
                if self._stopping.wait(delay):
                    break
                delay = min(delay * 2, self.RETRY_S[1])
                self.counters["reconnect_attempts"] += 1
                cap = self._open()
        finally:
            if lost_at is not None:
                self.counters["lost_s"] = lost_s(now_ns())
            if cap is not None:
                cap.release()
