"""Latency and fault statistics of a running pipeline: per-stage percentiles,
capture-to-result latency, frames in/out, drops, faults by kind (including those the
model's inputs show: black frames, silent or clipped sound), A/V skew. Every stage is
reported, with ``None`` percentiles where nothing was measured (a run without frames).

A stream of a multi-stream pipeline keeps its own :class:`Stats` whose ``parent`` (the
pipeline's) receives every sample and count too: per-stream and overall figures, both live."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict, deque

import numpy as np

from edge_sdk.runtime.clock import now_ns

__all__ = ["Stats", "Samples"]

_STAGES = ("queue", "audio_wait", "preprocess", "inference", "task", "sinks", "capture_to_result", "skew")


class Samples:
    """The last ``keep`` samples of one stage, in a float64 ring (8 bytes a sample: a deque of
    Python floats takes 32, 5.8 MB a pipeline's nine stages at 20,000 each, and every stream of
    a multi-stream pipeline keeps its own)."""

    __slots__ = ("buf", "n")

    def __init__(self, keep: int):
        self.buf = np.empty(keep, np.float64)
        self.n = 0  # samples ever added

    def append(self, v: float) -> None:
        self.buf[self.n % len(self.buf)] = v
        self.n += 1

    def values(self) -> np.ndarray:
        return self.buf[: min(self.n, len(self.buf))].copy()

    def __len__(self) -> int:
        return min(self.n, len(self.buf))


def _pcts(values) -> dict[str, float]:
    if not len(values):
        return {"p50": None, "p95": None, "p99": None, "n": 0}
    a = np.asarray(values, dtype=np.float64)
    return {
        "p50": round(float(np.percentile(a, 50)), 3),
        "p95": round(float(np.percentile(a, 95)), 3),
        "p99": round(float(np.percentile(a, 99)), 3),
        "n": int(a.size),
    }


class Stats:
    """Thread-safe counters and bounded latency samples (the last ``keep`` per stage); what is
    recorded here is recorded in ``parent`` too (a stream's statistics inside a pipeline's)."""

    def __init__(self, keep: int = 20000, parent: Stats | None = None):
        self.parent = parent
        self._lock = threading.Lock()
        self.stages: dict[str, Samples] = defaultdict(lambda: Samples(keep))
        self.counters: Counter = Counter()
        self.faults: Counter = Counter()
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self._recent: deque = deque(maxlen=512)  # the latest result times, for the live frame rate

    def time(self, stage: str, ms: float) -> None:
        with self._lock:
            self.stages[stage].append(ms)
        if self.parent is not None:
            self.parent.time(stage, ms)

    def times(self, **ms: float) -> None:
        """Several stages' times (ms) at once: ``times(inference=0.4, task=0.1)``."""
        with self._lock:
            for stage, v in ms.items():
                self.stages[stage].append(v)
        if self.parent is not None:
            self.parent.times(**ms)

    def check_inputs(self, images: np.ndarray, waves) -> None:
        """Count the faults the model's inputs show: a black frame (mean below 2 of 255), a
        silent (RMS below 1e-4) or clipped (a sample at 0.999 or more) audio window; one
        image [3, H, W] and one window per item."""
        for image, wave in zip(images, waves):
            if float(image.mean()) < 2.0:
                self.fault("black_frame")
            if float(np.sqrt(np.mean(wave**2))) < 1e-4:
                self.fault("silent_audio")
            elif float(np.abs(wave).max()) >= 0.999:
                self.fault("clipped_audio")

    def count(self, name: str, n: float = 1) -> None:
        with self._lock:
            self.counters[name] += n
        if self.parent is not None:
            self.parent.count(name, n)

    def fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1
        if self.parent is not None:
            self.parent.fault(kind)

    def mark(self, t_ns: int) -> None:
        with self._lock:
            self.first_ns = t_ns if self.first_ns is None else self.first_ns
            self.last_ns = t_ns
            self._recent.append(t_ns)
        if self.parent is not None:
            self.parent.mark(t_ns)

    def fps(self, recent_s: float | None = None) -> float:
        """Results per second over the whole run, or over the last ``recent_s`` seconds: over
        the span of the results in that window when they cover half of it or more, otherwise
        their count over the window's length (0 once results stopped coming: a lost camera;
        a burst after a reconnection counts for what it is, not as hundreds per second)."""
        with self._lock:
            now, first, n = now_ns(), self.first_ns, self.counters["frames_out"]
            recent = [t for t in self._recent if t >= now - recent_s * 1e9] if recent_s is not None else None
            last = self.last_ns
        if recent is not None and first is not None and now - first >= recent_s * 1e9:
            span = (recent[-1] - recent[0]) / 1e9 if len(recent) >= 2 else 0.0
            if span > 0 and (span >= recent_s / 2 or len(recent) == self._recent.maxlen):  # steady (or more than the deque holds): exact
                return round((len(recent) - 1) / span, 2)
            return round(len(recent) / recent_s, 2)  # a burst, or the tail of a stream that stopped
        if recent is not None and not recent:
            return 0.0
        if n < 2 or first is None or last == first:  # the whole run (younger than the window)
            return 0.0
        return round((n - 1) / ((last - first) / 1e9), 2)

    def to_dict(self) -> dict:
        with self._lock:
            stages = {k: self.stages[k].values() if k in self.stages else () for k in dict.fromkeys((*_STAGES, *self.stages))}
            counters, faults = {k: round(v, 1) if isinstance(v, float) else v for k, v in self.counters.items()}, dict(self.faults)
        frames_in = counters.get("frames_in", 0)
        return {
            "frames_in": frames_in,
            "frames_out": counters.get("frames_out", 0),
            "dropped": counters.get("dropped", 0),
            "drop_rate": round(counters.get("dropped", 0) / frames_in, 4) if frames_in else 0.0,
            "results_dropped": counters.get("results_dropped", 0),  # made room for newer ones: nobody took them in time
            "audio_blocks": counters.get("audio_blocks", 0),
            "fps": self.fps(),
            "faults": faults,
            "latency_ms": {k: _pcts(v) for k, v in stages.items()},
            "counters": counters,
        }

    def line(self) -> str:
        """One status line for the terminal: the frame rate of the last 2 s."""
        d = self.to_dict()
        lat, skew = d["latency_ms"]["capture_to_result"], d["latency_ms"]["skew"]
        kinds = Counter(d["faults"]).most_common(2)  # say what they are: silence between words is one, a lost camera another
        faults = f"faults {sum(d['faults'].values())}" + (" (" + ", ".join(f"{k} {n}" for k, n in kinds) + ")" if kinds else "")
        return (
            f"{self.fps(2.0):6.1f} fps  in {d['frames_in']}  out {d['frames_out']}  dropped {d['dropped']}  "
            f"latency p50 {lat.get('p50')} p95 {lat.get('p95')} ms  skew p95 {skew.get('p95')} ms  {faults}"
        )
