"""A/V alignment: an audio ring buffer on the SDK clock, cut at each video frame's time.

Audio blocks are written at their own timestamps (a block that starts after the end of
the previous one leaves silence in between, counted as a gap; one that overlaps is
trusted to continue the stream). For a video frame at ``pts_ns``, :meth:`AudioRing.window`
returns the ``n`` samples that end at that time, and how far the audio it had actually
reached (the skew): negative when the audio lags the picture.
"""

from __future__ import annotations

import threading

import numpy as np

from edge_sdk.runtime.frames import AudioBlock

__all__ = ["AudioRing"]


class AudioRing:
    def __init__(self, sample_rate: int, seconds: float = 8.0, gap_tolerance_s: float = 0.02):
        self.sample_rate = sample_rate
        self.buf = np.zeros(int(sample_rate * seconds), np.float32)
        self.total = 0  # samples written since the start
        self.end_ns: int | None = None  # SDK time just after the newest sample
        self.gaps = 0
        self._tol = int(gap_tolerance_s * 1e9)
        self._lock = threading.Lock()
        self._grew = threading.Condition(self._lock)

    def _write(self, x: np.ndarray) -> None:
        n, cap = len(x), len(self.buf)
        if n >= cap:
            x, n = x[-cap:], cap
        i = self.total % cap
        first = min(n, cap - i)
        self.buf[i : i + first] = x[:first]
        self.buf[: n - first] = x[first:]
        self.total += n

    def push(self, block: AudioBlock) -> None:
        with self._grew:
            if self.end_ns is not None and block.pts_ns - self.end_ns > self._tol:  # a hole: fill it with silence
                missing = int(round((block.pts_ns - self.end_ns) * self.sample_rate / 1e9))
                self._write(np.zeros(min(missing, len(self.buf)), np.float32))
                self.gaps += 1
            self._write(np.asarray(block.samples, np.float32))
            self.end_ns = block.pts_ns + int(round(len(block.samples) * 1e9 / self.sample_rate))
            self._grew.notify_all()

    def wait_until(self, t_ns: int, timeout_s: float) -> bool:
        """Block until audio reaches ``t_ns`` (True) or ``timeout_s`` passes (False)."""
        with self._grew:
            return self._grew.wait_for(lambda: self.end_ns is not None and self.end_ns >= t_ns, timeout_s)

    def window(self, end_ns: int, n: int) -> tuple[np.ndarray, int]:
        """``(samples[n], skew_ns)``: the ``n`` samples ending at ``end_ns`` (zeros where the ring
        has none), and the audio's end minus ``end_ns`` (negative: the audio had not got there).

        Audio that is late (a microphone's latency) gives its newest ``n`` samples, so a
        window shifts back by at most its own length; audio that ended before the window
        starts (a microphone stalled or unplugged for longer than a window) gives zeros, not
        sound from before the window, again and again."""
        with self._lock:
            out = np.zeros(n, np.float32)
            if self.end_ns is None:
                return out, 0
            skew = self.end_ns - end_ns
            if -skew > n * 1e9 / self.sample_rate:
                return out, skew
            lag = int(round(max(skew, 0) * self.sample_rate / 1e9))  # samples newer than the window's end
            last = self.total - lag  # index just after the window's last sample
            first = max(last - n, self.total - len(self.buf), 0)
            if last > first:  # at most two slices of the ring (it may wrap)
                cap, m = len(self.buf), last - first
                i = first % cap
                head = min(m, cap - i)
                out[n - m : n - m + head] = self.buf[i : i + head]
                out[n - m + head :] = self.buf[: m - head]
            return out, skew
