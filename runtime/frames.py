"""What flows through the runtime: video frames, audio blocks and task results, as plain
dataclasses of numpy arrays and timestamps (``pts_ns`` on :mod:`.clock`'s timeline)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["VideoFrame", "AudioBlock", "Gap", "Result"]


@dataclass
class VideoFrame:
    """One RGB frame, HxWx3 uint8, as captured."""

    pts_ns: int
    seq: int
    image: np.ndarray
    source: str = ""
    meta: dict = field(default_factory=dict)  # e.g. a synthetic scene's ground-truth box


@dataclass
class AudioBlock:
    """Mono float32 samples in [-1, 1] at ``sample_rate`` (already the spec's rate); ``pts_ns``
    is the time of the first sample."""

    pts_ns: int
    seq: int
    samples: np.ndarray
    sample_rate: int
    source: str = ""


@dataclass
class Gap:
    """A source lost its input (a camera unplugged, a stream that stalled) and, where it
    could, came back: reported, never silent."""

    pts_ns: int
    source: str
    kind: str  # "reconnect", "stall", "overflow", "decode", ...
    seconds: float = 0.0
    message: str = ""


@dataclass
class Result:
    """One task result for one video frame."""

    task: str
    pts_ns: int  # the frame's capture time
    seq: int
    done_ns: int  # when the result was ready (capture-to-result latency = done_ns - pts_ns)
    values: dict  # the task's numbers (peak, confidence, score, offset_ms, ...)
    heatmap: np.ndarray | None = None  # [h, w] on the model's map grid, for overlays
    frame: VideoFrame | None = None  # the frame it was computed on (for sinks)
    skew_ns: int = 0  # end of the audio window minus the frame time

    @property
    def latency_ms(self) -> float:
        return (self.done_ns - self.pts_ns) / 1e6
