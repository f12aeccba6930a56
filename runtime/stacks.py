"""The visual input of a model that sees time: a stack of ``frames`` pictures ``1 / frame_rate``
apart ending at the present one (the contract's ``image.frames`` and ``image.frame_rate``;
``edge_sdk.media.avclips`` stacks its training clips the same way), built from whatever rate
the camera gives.

A stream keeps the model-size cuts of its recent frames (:meth:`FrameStack.add`, on the
capture thread, every frame including those a live policy later drops, so a stack has no
holes where inference fell behind); :meth:`FrameStack.input` picks, for each slot of the
stack, the recorded frame nearest to its time and no later than the present frame. Before a
stream has a stack's worth of history, the oldest frame it has fills the early slots (a
still picture, as evaluation feeds stills). A single-frame model keeps no history.
"""

from __future__ import annotations

import bisect
import threading
from collections import deque

import numpy as np

__all__ = ["FrameStack"]


class FrameStack:
    """Recent cuts of one stream and the stacks made of them; ``size`` is the model's
    (height, width). ``keep_s``: how much older than the newest frame a frame may be and still
    be inferred (a look-ahead task's frames wait for their sound that long), ``queued``: how many
    frames may wait between capture and inference (a file decodes ahead of inference by that
    many); together they bound the frames kept, at up to 60 fps. A frame's stack is made in
    order, so :meth:`input` lets go of what no later frame's stack can use."""

    def __init__(self, frames: int, frame_rate: float, size: tuple[int, int], keep_s: float = 0.0, queued: int = 0):
        self.frames, self.size = frames, size
        self.step_ns = int(round(1e9 / frame_rate)) if frames > 1 else 0
        self.span_ns = (frames - 1) * self.step_ns
        keep = queued + int(np.ceil((self.span_ns / 1e9 + keep_s + 0.5) * 60)) if frames > 1 else 0
        self.recent: deque[tuple[int, np.ndarray]] = deque(maxlen=max(keep, 1))  # (pts_ns, cut), in capture order
        self.lock = threading.Lock()

    def add(self, frame) -> None:
        """Record a captured frame (a stack model only; called before the frame is queued)."""
        if self.frames == 1:
            return
        cut = frame.cut(self.size)
        with self.lock:
            self.recent.append((frame.pts_ns, cut))

    def input(self, frame) -> np.ndarray:
        """The model's visual input for ``frame``, RGB uint8: [H, W, 3], or [T, H, W, 3] for a stack."""
        cut = frame.cut(self.size)
        if self.frames == 1:
            return cut
        with self.lock:
            while len(self.recent) > 1 and self.recent[1][0] <= frame.pts_ns - self.span_ns - self.step_ns:
                self.recent.popleft()  # older than any slot of this frame's stack (or a later one's) needs
            past = [(p, c) for p, c in self.recent if p < frame.pts_ns]
        times = [p for p, _ in past]
        slots = []
        for j in range(self.frames - 1, 0, -1):
            target = frame.pts_ns - j * self.step_ns
            i = bisect.bisect_left(times, target)
            near = [k for k in (i - 1, i) if 0 <= k < len(past)]
            k = min(near, key=lambda k: abs(times[k] - target)) if near else None
            slots.append(past[k][1] if k is not None else cut)
        return np.stack([*slots, cut])
