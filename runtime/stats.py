"""Latency and fault statistics of a running pipeline: per-stage percentiles,
capture-to-result latency, frames in/out, drops, faults by kind, A/V skew."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict, deque

import numpy as np

__all__ = ["Stats"]


def _pcts(values) -> dict[str, float]:
    if not len(values):
        return {"p50": None, "p95": None, "p99": None, "n": 0}
    a = np.asarray(values, dtype=np.float64)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p95": round(float(np.percentile(a, 95)), 3),
            "p99": round(float(np.percentile(a, 99)), 3), "n": int(a.size)}


class Stats:
    """Thread-safe counters and bounded latency samples (the last ``keep`` per stage)."""

    def __init__(self, keep: int = 20000):
        self._lock = threading.Lock()
        self.stages: dict[str, deque] = defaultdict(lambda: deque(maxlen=keep))
        self.counters: Counter = Counter()
        self.faults: Counter = Counter()
        self.first_ns: int | None = None
        self.last_ns: int | None = None

    def time(self, stage: str, ms: float) -> None:
        with self._lock:
            self.stages[stage].append(ms)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    def fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def mark(self, t_ns: int) -> None:
        with self._lock:
            self.first_ns = t_ns if self.first_ns is None else self.first_ns
            self.last_ns = t_ns

    def fps(self) -> float:
        out = self.counters["frames_out"]
        if not out or self.first_ns is None or self.last_ns == self.first_ns:
            return 0.0
        return round((out - 1) / ((self.last_ns - self.first_ns) / 1e9), 2)

    def to_dict(self) -> dict:
        with self._lock:
            stages = {k: _pcts(v) for k, v in self.stages.items()}
            counters, faults = dict(self.counters), dict(self.faults)
        frames_in = counters.get("frames_in", 0)
        return {"frames_in": frames_in, "frames_out": counters.get("frames_out", 0), "dropped": counters.get("dropped", 0),
                "drop_rate": round(counters.get("dropped", 0) / frames_in, 4) if frames_in else 0.0,
                "audio_blocks": counters.get("audio_blocks", 0), "fps": self.fps(), "faults": faults,
                "latency_ms": stages, "counters": counters}

    def line(self) -> str:
        """One status line for the terminal."""
        d = self.to_dict()
        lat = d["latency_ms"].get("capture_to_result", {})
        skew = d["latency_ms"].get("skew", {})
        return (f"{d['fps']:6.1f} fps  in {d['frames_in']}  out {d['frames_out']}  dropped {d['dropped']}  "
                f"latency p50 {lat.get('p50')} p95 {lat.get('p95')} ms  skew p95 {skew.get('p95')} ms  faults {sum(d['faults'].values())}")
