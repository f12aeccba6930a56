"""One stream of a pipeline: a video source and its sound (a camera and a microphone, a file,
a network camera), its frame queue and audio ring on the SDK clock, its task, its statistics
and its own sinks. A :class:`~.pipeline.Pipeline` serves one, a
:class:`~.multi.MultiPipeline` many, through the same class: each stream keeps its own clock
mapping (its sources stamp ``pts_ns``), alignment (its ring), drops (its queue) and results
(its task object and statistics), and only the inference is shared (:mod:`.batching`).

Capture threads call :meth:`Stream.emit` (frames into the bounded queue, sound into the ring);
the inference thread moves waiting frames to the stream's *staging* (out of the queue, so a
file's decoder goes on while a frame waits for its sound) and takes a staged frame once its
audio window is complete, or it has waited as long as the configuration allows
(:meth:`Stream.ready`). Nothing here blocks the inference thread: a stream whose sound is
late delays only its own frames.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from edge_sdk.errors import ConfigError
from edge_sdk.runtime.align import AudioRing
from edge_sdk.runtime.clock import now_ns
from edge_sdk.runtime.config import PipelineConfig
from edge_sdk.runtime.frames import AudioBlock, Gap, VideoFrame
from edge_sdk.runtime.opening import check_roles, warn_without_sound
from edge_sdk.runtime.queues import BoundedQueue
from edge_sdk.runtime.stacks import FrameStack
from edge_sdk.runtime.stats import Stats
from edge_sdk.runtime.tasks import Task, make_task

__all__ = ["Stream", "Staged", "Signals"]

log = logging.getLogger(__name__)


@dataclass
class Signals:
    """What a pipeline's streams share with its inference thread: ``stop`` (the run is ending),
    ``done`` (the inference thread ended) and ``bell`` (rung when a frame arrives, or the sound
    a staged frame waits for: the inference thread sleeps on it instead of polling)."""

    stop: threading.Event
    done: threading.Event
    bell: threading.Event


@dataclass
class Staged:
    """A frame taken out of its stream's queue, waiting for its sound: ``origin`` is where its
    latency counts from, ``arrived_ns`` when it was queued, ``staged_ns`` when it was taken
    from the queue, ``ready_ns`` when its audio window was first found complete (or timed out)."""

    origin: int
    frame: VideoFrame
    arrived_ns: int
    staged_ns: int
    ready_ns: int | None = None


class Stream:
    """One source pair of a pipeline (see the module's docstring). ``task`` is a name or a task
    object (one per stream: a task may keep a history); ``sinks`` is the stream's own
    :class:`~.sinks.SinkSet` (``gaps`` also go to ``shared``, the pipeline's)."""

    def __init__(self, name: str, video, audio, task: Task | str, contract, towers, config: PipelineConfig, *,
                 stats: Stats, signals: Signals, task_opts: dict | None = None):  # fmt: skip
        check_roles(video, audio)
        self.name, self.video, self.audio, self.contract, self.config = name, video, audio, contract, config
        self.task = make_task(task, **(task_opts or {})) if isinstance(task, str) else task
        if self.task.needs_map and contract.map is None:
            raise ConfigError(f"the {self.task.name} task places sound in the image, and {contract.name} has no localization map",
                              "use the sync or retrieval task with this model, or a model whose image tower gives a map")  # fmt: skip
        self.task.setup(towers, contract)
        warn_without_sound(video, audio, self.task.name)
        self.stats, self.signals = stats, signals
        self.paced = getattr(video, "live", True)  # pts_ns is the capture time; else media time
        self.policy = config.policy or ("latest" if self.paced else "block")
        # a task that scores sound after its frame (sync: up to +0.7 s) waits for it: live frames
        # queue meanwhile (room for that long at up to 60 fps) instead of being dropped, and
        # :meth:`stage` skips to the newest frame whose sound is complete when inference falls behind
        self.lookahead_s = max(0.0, max(self.task.shifts_ms) / 1e3)
        self.latest_ns = int(max(self.task.shifts_ms) * 1e6)  # the end of the last window after the frame's time
        # a file read as fast as it decodes blocks on a full queue, and its sound comes after the
        # frames: the queue must hold a look-ahead of frames too, or each would wait out wait_ns
        ahead = math.ceil(self.lookahead_s * 60)
        self.frames = BoundedQueue((max(config.queue_size, 2 * config.batch) if self.policy == "block" else config.queue_size) + ahead)
        self.staged: deque[Staged] = deque()
        self.ring = AudioRing(contract.audio.sample_rate)
        image = contract.image  # a model that sees time keeps the recent frames its stacks are made of
        self.stack = FrameStack(image.frames, image.frame_rate, (image.height, image.width),
                                keep_s=self.lookahead_s + config.max_audio_wait_s, queued=self.frames.maxsize + 2 * config.batch)  # fmt: skip
        self.max_skew_ns = int(config.max_skew_ms * 1e6)
        self.wait_ns = int((config.max_audio_wait_s + self.lookahead_s) * 1e9)  # the longest a frame waits for its sound
        self.audio_hop_ns = int(config.audio_hop_ms * 1e6)
        self.last_audio: tuple[int, np.ndarray] | None = None  # (pts, embedding) of the last sound embedded (audio_hop_ms)
        self.taken_pts: int | None = None  # the time of the frame inference is at: an unpaced sound file is kept near it
        self.need_audio_ns: int | None = None  # the sound the first staged frame waits for (the bell rings when it comes)
        self.lost = False  # a network camera lost (until it reconnects): not waited for by a batch
        self.sinks = None  # the stream's own SinkSet, opened by the pipeline once everything else is
        self.shared = None  # the pipeline's sinks (gaps go there too)
        self._hold_sound = audio is not None and not self.paced and not getattr(audio, "live", True)

    # -- capture side (capture threads) ----------------------------------------------------
    def start(self) -> None:
        if self.audio is not None:  # a separate microphone or track: the video source's own sound is not used
            self.video.start(self.emit_picture)
            self.audio.start(self.emit)
        else:
            self.video.start(self.emit)

    def stop(self) -> None:
        for src in (self.video, self.audio):
            if src is not None:
                src.stop()

    def emit_picture(self, item) -> None:
        if isinstance(item, AudioBlock):
            self.stats.count("video_source_audio_ignored")
        else:
            self.emit(item)

    def emit(self, item) -> None:
        if isinstance(item, VideoFrame):
            self.stats.count("frames_in")
            t = now_ns()
            origin = item.pts_ns if self.paced else t  # where its latency is measured from
            self.stack.add(item)
            dropped = self.frames.put((origin, item, t), self.policy == "block", self.signals.stop)  # None: stopped while waiting
            if dropped:
                self.stats.count("dropped", dropped)
            self.signals.bell.set()
        elif isinstance(item, AudioBlock):
            self._audio(item)
        elif isinstance(item, Gap):
            self._gap(item)

    def _audio(self, block: AudioBlock) -> None:
        if self._hold_sound:
            self._hold(block)
        self.stats.count("audio_blocks")
        if not np.isfinite(block.samples).all():  # NaN would reach every result; ~1 us per 10 ms block
            if not self.stats.faults["nonfinite_audio"]:
                log.warning("%s: audio holds NaN/inf samples; they are replaced by silence (counted as nonfinite_audio)", block.source)
            self.stats.fault("nonfinite_audio")
            block.samples = np.nan_to_num(block.samples, nan=0.0, posinf=0.0, neginf=0.0)
        self.ring.push(block)
        need = self.need_audio_ns
        if need is not None and self.ring.end_ns >= need:  # the sound a staged frame waited for
            self.signals.bell.set()

    def _gap(self, gap: Gap) -> None:
        self.stats.fault(gap.kind)
        if gap.kind == "lost":
            self.lost = True
        elif gap.kind == "reconnect":
            self.lost = False
        # a lost stream is announced by its source (rate-limited); the rest are news here
        (log.info if gap.kind == "lost" else log.warning)("%s: %s %s", gap.source, gap.kind, gap.message)
        for sinks in (self.shared, self.sinks):
            if sinks is not None:
                sinks.send("gap", gap)
        self.signals.bell.set()

    def _hold(self, block: AudioBlock) -> None:
        """Keep a sound file's blocks within half the ring of the frame inference is at: with
        an unpaced video file beside it, both decode as fast as they are taken and the sound,
        far cheaper, would wrap the ring and leave the frames' windows silent (also after the
        video ended, for the frames still queued). Its reading thread waits."""
        ahead = int(self.ring.buf.size / self.ring.sample_rate / 2 * 1e9)
        first = block.pts_ns
        while not self.signals.stop.is_set() and not self.signals.done.is_set():
            if block.pts_ns - (self.taken_pts if self.taken_pts is not None else first) < ahead:
                return
            time.sleep(0.005)

    # -- inference side (the inference thread) ------------------------------------------------
    @property
    def audio_done(self) -> bool:
        src = self.audio or (self.video if getattr(self.video, "kind", "") == "av" else None)
        return src is None or src.done or src.error is not None

    @property
    def finished(self) -> bool:
        """The video ended (or failed) and every frame it gave was taken."""
        return (self.video.done or self.video.error is not None) and not self.staged and not len(self.frames)

    @property
    def active(self) -> bool:
        """Delivering frames: a batch waits for it (a little, ``batch_wait_ms``)."""
        return not self.lost and not (self.video.done or self.video.error is not None)

    def stage(self, limit: int) -> None:
        """Move waiting frames to staging: up to ``limit`` of a file read as fast as possible,
        one of a live source (the newest whose sound is complete when a look-ahead task fell
        behind: the older ones are dropped, so a live result stays about the look-ahead late)."""
        want = limit - len(self.staged) if self.policy == "block" else int(not self.staged)
        if want <= 0:
            return
        got = self.frames.take(want)
        if not got:
            return
        if self.policy == "latest" and self.lookahead_s:  # behind: later frames' sound is complete too
            end = (self.ring.end_ns or 0) - int(self.lookahead_s * 1e9) + self.max_skew_ns
            first, skipped = self.frames.skip_while(got[0], lambda waiting: waiting[1].pts_ns <= end)
            if skipped:
                self.stats.count("dropped", skipped)
            got = [first]
        t = now_ns()
        self.staged.extend(Staged(origin, frame, arrived, t) for origin, frame, arrived in got)

    def ready(self, now: int) -> int:
        """How many staged frames, from the first, may run now: their sound reached the end of
        their last window (less the skew a live frame accepts, about one frame), the sound ended,
        or they waited ``max_audio_wait_s`` (plus the look-ahead) for it. Sets
        :attr:`need_audio_ns` to what the first waiting frame needs."""
        n = 0
        done = self.audio_done
        slack = 0 if self.policy == "block" else self.max_skew_ns
        for s in self.staged:
            self.taken_pts = s.frame.pts_ns
            need = s.frame.pts_ns + self.latest_ns - slack
            if not (done or now - s.staged_ns >= self.wait_ns):
                self.need_audio_ns = need  # said first: a block pushed after the look below rings the bell
                end = self.ring.end_ns
                if end is None or end < need:
                    break
            self.need_audio_ns = None
            if s.ready_ns is None:
                s.ready_ns = now
            n += 1
        return n

    def due_ns(self) -> int | None:
        """When the first staged frame stops waiting for its sound (None: nothing waits)."""
        return self.staged[0].staged_ns + self.wait_ns if self.staged and self.need_audio_ns is not None else None

    def windows(self, frame: VideoFrame) -> tuple[np.ndarray, int]:
        """The audio windows the task needs for ``frame`` (one per shift), cut from the ring as
        it stands, and the skew of the window ending last (negative: sound missing)."""
        n = self.contract.audio.num_samples
        cuts = [self.ring.window(frame.pts_ns + int(s * 1e6), n) for s in self.task.shifts_ms]
        skew = cuts[int(np.argmax(self.task.shifts_ms))][1]
        return np.stack([c[0] for c in cuts]), skew if self.paced else min(skew, 0)  # unpaced audio decoded ahead is no skew

    def fresh(self, pts_ns: int, shifts: int, last: int | None) -> bool:
        """Whether a frame at ``pts_ns`` gets its sound embedded afresh: always, or with
        ``audio_hop_ms`` (one window per frame) when it is a hop after ``last`` (a source's
        times only grow, a looping file's too)."""
        return not self.audio_hop_ns or shifts != 1 or last is None or pts_ns - last >= self.audio_hop_ns

    def final_stats(self) -> dict:
        """What this stream adds to the statistics: its policy, where latency counts from and
        its sources' counters."""
        d: dict = {"policy": self.policy, "latency_from": "capture" if self.paced else "read", "audio_gaps": self.ring.gaps}
        for role, src in (("video", self.video), ("audio", self.audio)):
            if src is not None:
                d.setdefault("sources", {})[role] = {"uri": src.uri, **src.counters}
        return d

    def source_errors(self) -> list[str]:
        """The errors that ended a source: said, not swallowed."""
        return [f"{role} source {src.uri}: {src.error}" for role, src in (("video", self.video), ("audio", self.audio))
                if src is not None and src.error is not None]  # fmt: skip
