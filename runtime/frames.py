"""What flows through the runtime: video frames, audio blocks and task results, as plain
dataclasses of numpy arrays and timestamps (``pts_ns`` on :mod:`.clock`'s timeline)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_sdk.media.image import center_crop_resize

__all__ = ["VideoFrame", "AudioBlock", "Gap", "Result"]


class VideoFrame:
    """One video frame as captured: ``image`` is the HxWx3 RGB uint8 picture.

    A source may hand over its decoded ``picture`` instead (an object with ``shape``,
    ``rgb()`` and ``cut(size)``: a file's YUV 4:2:0 planes, a camera's BGR array): the
    model's input is then cut straight from it (from YUV, 0.37 instead of 1.0 ms for
    a 720p frame: RGB conversion of the whole frame, then the crop), and the whole frame is
    converted only when something reads ``image`` (an overlay, a face detector), once."""

    __slots__ = ("_image", "_picture", "meta", "pts_ns", "seq", "source")

    def __init__(self, pts_ns: int, seq: int, image: np.ndarray | None = None, source: str = "", meta: dict | None = None, *, picture=None):
        if image is None and picture is None:
            raise ValueError("a VideoFrame needs an image or a decoded picture")
        self.pts_ns, self.seq, self.source, self.meta = pts_ns, seq, source, meta if meta is not None else {}
        self._image, self._picture = image, (picture if image is None else None)

    # Sinks, tasks and the app's own thread may read one frame at once: each reads the picture
    # into a local first, and a conversion stores the image before it lets the picture go.
    @property
    def image(self) -> np.ndarray:
        picture = self._picture
        if picture is not None:
            self._image = picture.rgb()
            self._picture = None
        return self._image

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels, without converting anything."""
        picture = self._picture
        return tuple(picture.shape) if picture is not None else tuple(self._image.shape[:2])

    def cut(self, size) -> np.ndarray:
        """The centre at the model's aspect, resized to its ``size`` ((height, width), or a side for a
        square), RGB uint8: the model's image input."""
        picture = self._picture
        return picture.cut(size) if picture is not None else center_crop_resize(self._image, size)

    def __repr__(self) -> str:
        return f"VideoFrame(pts_ns={self.pts_ns}, seq={self.seq}, shape={self.shape}, source={self.source!r})"


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
    pts_ns: int  # the frame's capture time (media time for a file read as fast as possible)
    seq: int
    done_ns: int  # when the result was ready
    values: dict  # the task's numbers (peak, confidence, score, offset_ms, ...)
    heatmap: np.ndarray | None = None  # [h, w] on the model's map grid, for overlays
    frame: VideoFrame | None = None  # the frame it was computed on (for sinks)
    skew_ns: int = 0  # how far the audio reached past the end of the last window the task used (negative: missing)
    read_ns: int | None = None  # when the pipeline got the frame, where pts_ns is media time (an unpaced source)
    stream: str = ""  # the name of the stream it belongs to (a MultiPipeline's; "" for a Pipeline's one stream)

    @property
    def latency_ms(self) -> float:
        """Capture-to-result (read-to-result for an unpaced source)."""
        return (self.done_ns - (self.pts_ns if self.read_ns is None else self.read_ns)) / 1e6
