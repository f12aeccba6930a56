"""The streaming pipeline: camera and microphone on one clock, into any backend, live.

Each source captures on its own thread (or device callback) into a bounded frame queue
(:class:`~.queues.BoundedQueue`) and the :class:`~.align.AudioRing`; one inference thread
takes a frame, cuts the audio window(s) ending at its time, runs the towers and the task,
and hands the result to the sinks, the callback and the consumer (``run()`` or iteration).
When inference is slower than capture the queue keeps the latest frames and counts every
drop (``policy="latest"``, the default for live sources); a file read as fast as possible
is never dropped from (``policy="block"`` pushes back on the decoder), so offline is the
streaming loop over a file. Offline, the frames already waiting (up to ``batch``) run as
one inference (0.17 instead of 0.33 ms per pair at batch 8, measured); a live source goes
one frame at a time, for the lowest latency. The knobs are one :class:`PipelineConfig`.

Sinks are URIs (:func:`~.sinks.open_sink`: video file, JSON-lines events, MJPEG preview,
window) or objects. A window (GUI toolkits draw only on the thread that made them) is fed
by the thread that consumes the results, not the inference thread; closing it ends the run.

Latency is measured from a frame's capture time for live and paced sources; a file or
generated scenes read as fast as possible stamp frames with media time (their audio and
video must line up), so there it is measured from when the frame was read
(``final_stats()["latency_from"]``), and the skew is how far the audio window falls short.
Non-finite audio samples are replaced by silence and counted (``nonfinite_audio``).

    with Pipeline.from_bundle("bundle", video="cam://0", audio="mic://default", task="localize",
                              sinks=["events.jsonl", "window://"]) as p:
        for result in p:
            print(result.values["peak_xy"], result.latency_ms)
"""

from __future__ import annotations

import logging
import math
import threading
import time

import numpy as np

from edge_sdk.errors import ConfigError
from edge_sdk.runtime.align import AudioRing
from edge_sdk.runtime.clock import now_ns
from edge_sdk.runtime.config import PipelineConfig
from edge_sdk.runtime.frames import AudioBlock, Gap, Result, VideoFrame
from edge_sdk.runtime.opening import check_roles, open_bundle, warn_without_sound
from edge_sdk.runtime.queues import BoundedQueue
from edge_sdk.runtime.sinks import SinkSet
from edge_sdk.runtime.stats import Stats
from edge_sdk.runtime.tasks import Geometry, Task, make_task

__all__ = ["Pipeline", "PipelineConfig", "Interrupted"]

log = logging.getLogger(__name__)

_END = object()


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during :meth:`Pipeline.run` (or SIGTERM/SIGHUP under ``edge-sdk``, which turns
    them into Ctrl-C): the pipeline was stopped cleanly, its sinks closed, and ``stats``
    holds the final statistics, with ``interrupted: True``. Code that catches
    ``KeyboardInterrupt`` still catches it."""

    def __init__(self, stats: dict):
        super().__init__("interrupted")
        self.stats = stats


class Pipeline:
    """Sources -> frame queue + audio ring -> one inference thread -> task -> sinks, callback
    and the consumer. ``config`` holds the knobs (:class:`PipelineConfig`); ``sinks`` are
    URIs (opened here, after the sources and the task) or sink objects; ``backend`` names
    what runs the towers (``from_bundle`` says which backend and precision)."""

    def __init__(
        self,
        towers,
        contract,
        video,
        audio=None,
        task: Task | str = "localize",
        *,
        config: PipelineConfig | None = None,
        sinks=(),
        callback=None,
        task_opts: dict | None = None,
        backend: str | None = None,
    ):
        self.config = cfg = config if config is not None else PipelineConfig()
        check_roles(video, audio)
        if contract.image.frames > 1:
            raise ConfigError(f"{contract.name} takes a stack of {contract.image.frames} frames per visual input, which this "
                              "runtime does not stream yet", "use a single-frame model with the runtime")  # fmt: skip
        self.towers, self.contract, self.backend = towers, contract, backend or type(towers).__name__
        self.video, self.audio = video, audio
        self.task = make_task(task, **(task_opts or {})) if isinstance(task, str) else task
        if self.task.needs_map and contract.map is None:
            raise ConfigError(f"the {self.task.name} task places sound in the image, and {contract.name} has no localization map",
                              "use the sync or retrieval task with this model, or a model whose image tower gives a map")  # fmt: skip
        self.task.setup(towers, contract)
        warn_without_sound(video, audio, self.task.name)
        self.paced = getattr(video, "live", True)  # pts_ns is the capture time; else media time
        self.policy = cfg.policy or ("latest" if self.paced else "block")
        self.batch = cfg.batch
        # a task that scores sound after its frame (sync: up to +0.4 s) waits for it: live frames
        # queue meanwhile (room for that long at up to 60 fps) instead of being dropped, and
        # :meth:`_take` skips to the newest frame whose sound is complete when inference falls behind
        self.lookahead_s = max(0.0, max(self.task.shifts_ms) / 1e3)
        live_size = cfg.queue_size + math.ceil(self.lookahead_s * 60)
        self.frames = BoundedQueue(max(cfg.queue_size, 2 * self.batch) if self.policy == "block" else live_size)
        self.results = BoundedQueue(32)  # a result holds its frame: 32 at 720p is 88 MB
        self.ring = AudioRing(contract.audio.sample_rate)
        self.stats = Stats()
        self.callback = callback
        self.audio_hop_ns = int(cfg.audio_hop_ms * 1e6)
        self.max_skew_ns = int(cfg.max_skew_ms * 1e6)
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._consumer: threading.Thread | None = None  # the thread of run() or iteration: it feeds the window
        self._ended = False  # the end of the results was taken
        self._taken_pts: int | None = None  # the time of the frame inference is at: an unpaced sound file is kept near it
        self._worker_done = threading.Event()
        self._hold_sound = audio is not None and not self.paced and not getattr(audio, "live", True)
        self._last_audio: tuple[int, np.ndarray] | None = None
        self._t_start: float | None = None
        self._t_stop: float | None = None
        self.error: BaseException | None = None
        self.sinks = SinkSet(sinks)  # URIs opened last: nothing else can fail and leave them open

    @classmethod
    def from_bundle(
        cls,
        bundle,
        video: str,
        audio: str | None = None,
        task: str = "localize",
        *,
        prefer: str | None = None,
        precision: str | None = None,
        source_opts: dict | None = None,
        config: PipelineConfig | None = None,
        sinks=(),
        callback=None,
        task_opts: dict | None = None,
        trusted: tuple[str, ...] = (),
        **knobs,
    ) -> Pipeline:
        """Open a bundle (folder or zip) on the backend this machine runs best, and the sources by
        URI (``source_opts`` go to the video source; :func:`~.opening.open_bundle`). ``knobs`` (``policy=``, ``queue_size=``,
        ``batch=``, ``audio_hop_ms=``, ...) replace those of ``config``: see :class:`PipelineConfig`;
        ``trusted``: the model factories (``FILE.py:FUNCTION``) a ``torch`` backend may import."""
        cfg = PipelineConfig.of(config, **knobs)  # checked before anything is opened
        o = open_bundle(bundle, video, audio, prefer=prefer, precision=precision, source_opts=source_opts, trusted=trusted)
        return cls(
            o.towers,
            o.contract,
            o.video,
            o.audio,
            task,
            config=cfg,
            sinks=sinks,
            callback=callback,
            task_opts=task_opts,
            backend=o.backend,
        )

    # -- capture side ---------------------------------------------------------------
    def _emit_picture(self, item) -> None:
        if isinstance(item, AudioBlock):
            self.stats.count("video_source_audio_ignored")
        else:
            self._emit(item)

    def _emit(self, item) -> None:
        if isinstance(item, VideoFrame):
            self.stats.count("frames_in")
            origin = item.pts_ns if self.paced else now_ns()  # where its latency is measured from
            dropped = self.frames.put((origin, item), self.policy == "block", self._stop)  # None: stopped while waiting
            if dropped:
                self.stats.count("dropped", dropped)
        elif isinstance(item, AudioBlock):
            if self._hold_sound:
                self._hold(item)
            self.stats.count("audio_blocks")
            if not np.isfinite(item.samples).all():  # NaN would reach every result; ~1 us per 10 ms block
                if not self.stats.faults["nonfinite_audio"]:
                    log.warning("%s: audio holds NaN/inf samples; they are replaced by silence (counted as nonfinite_audio)", item.source)
                self.stats.fault("nonfinite_audio")
                item.samples = np.nan_to_num(item.samples, nan=0.0, posinf=0.0, neginf=0.0)
            self.ring.push(item)
        elif isinstance(item, Gap):
            self.stats.fault(item.kind)
            # a lost stream is announced by its source (rate-limited); the rest are news here
            (log.info if item.kind == "lost" else log.warning)("%s: %s %s", item.source, item.kind, item.message)
            self.sinks.send("gap", item)

    def _hold(self, block: AudioBlock) -> None:
        """Keep a sound file's blocks within half the ring of the frame inference is at: with
        an unpaced video file beside it, both decode as fast as they are taken and the sound,
        far cheaper, would wrap the ring and leave the frames' windows silent (also after the
        video ended, for the frames still queued). Its reading thread waits."""
        ahead = int(self.ring.buf.size / self.ring.sample_rate / 2 * 1e9)
        first = block.pts_ns
        while not self._stop.is_set() and not self._worker_done.is_set():
            if block.pts_ns - (self._taken_pts if self._taken_pts is not None else first) < ahead:
                return
            time.sleep(0.005)

    # -- inference side ---------------------------------------------------------------
    def _audio_done(self) -> bool:
        src = self.audio or (self.video if getattr(self.video, "kind", "") == "av" else None)
        return src is None or src.done or src.error is not None

    def _windows(self, frame: VideoFrame) -> tuple[np.ndarray, int, float]:
        n = self.contract.audio.num_samples
        latest = frame.pts_ns + int(max(self.task.shifts_ms) * 1e6)
        t0 = time.perf_counter()
        if not self._audio_done():  # audio up to the frame, less the skew we accept live (about one frame), or a timeout
            self.ring.wait_until(latest - (0 if self.policy == "block" else self.max_skew_ns), self.config.max_audio_wait_s + self.lookahead_s)
        wait_ms = (time.perf_counter() - t0) * 1e3
        cuts = [self.ring.window(frame.pts_ns + int(s * 1e6), n) for s in self.task.shifts_ms]
        skew = cuts[int(np.argmax(self.task.shifts_ms))][1]  # of the window ending last: negative where audio was missing
        return np.stack([c[0] for c in cuts]), skew, wait_ms

    def _process(self, taken: list[tuple[int, VideoFrame]]) -> list[Result]:
        """Results for frames taken from the queue together, each with the time its latency
        counts from: one inference for all of them (a frame's preprocessing, inference and task
        times are its share of the batch's)."""
        st, n = self.stats, len(taken)
        origins, frames = zip(*taken)
        t_start = now_ns()
        waves, skews = [], []
        for origin, frame in taken:
            self._taken_pts = frame.pts_ns
            w, skew, wait_ms = self._windows(frame)
            st.times(queue=(t_start - origin) / 1e6, audio_wait=wait_ms)
            waves.append(w)
            skews.append(skew if self.paced else min(skew, 0))  # unpaced audio decoded ahead is no skew
        t0 = time.perf_counter()
        size = (self.contract.image.height, self.contract.image.width)
        images = np.ascontiguousarray(np.stack([f.cut(size) for f in frames]).transpose(0, 3, 1, 2), dtype=np.float32)
        st.check_inputs(images, [w[0] for w in waves])
        t1 = time.perf_counter()
        fresh = self._fresh_audio(frames, len(waves[0]))
        if len(fresh) == n:
            audio_emb, image_emb, image_map = self.towers.embed_both(np.concatenate(waves), images)
            audio_emb = audio_emb.reshape(n, len(waves[0]), -1)
        else:  # audio_hop_ms: only the frames a hop apart get their sound embedded, the rest reuse the last
            image_emb, image_map = self.towers.embed_image(images)
            new = iter(self.towers.embed_audio(np.concatenate([waves[i] for i in fresh]))[:, None] if fresh else ())
            last, audio_emb = (self._last_audio[1] if self._last_audio is not None else None), []
            for i in range(n):
                last = next(new) if i in fresh else last
                audio_emb.append(last)
            audio_emb = np.stack(audio_emb)
        if fresh:
            self._last_audio = (frames[fresh[-1]].pts_ns, audio_emb[fresh[-1]])
        st.count("audio_inferences", len(fresh))
        st.count("inference_batches")
        t2 = time.perf_counter()
        out = []
        for i, frame in enumerate(frames):
            m = self.contract.map
            geom = Geometry(frame.shape, size, image_map.shape[-2:], m.offset if m else (0, 0), m.stride if m else None)
            values, heat = self.task(frame, audio_emb[i], image_emb[i], image_map[i], geom)
            out.append((frame, values, heat, skews[i]))
        t3 = time.perf_counter()
        done = now_ns()
        results = []
        for origin, (frame, values, heat, skew) in zip(origins, out):
            st.times(
                preprocess=(t1 - t0) * 1e3 / n,
                inference=(t2 - t1) * 1e3 / n,
                task=(t3 - t2) * 1e3 / n,
                capture_to_result=(done - origin) / 1e6,
                skew=abs(skew) / 1e6,
            )
            results.append(Result(self.task.name, frame.pts_ns, frame.seq, done, values, heat, frame, skew, None if self.paced else origin))
        return results

    def _fresh_audio(self, frames, shifts: int) -> list[int]:
        """Indices of the frames whose sound is embedded afresh: all of them, or with
        ``audio_hop_ms`` (one window per frame) those at least a hop after the last one
        embedded (a source's times only grow, a looping file's too)."""
        if not self.audio_hop_ns or shifts != 1:
            return list(range(len(frames)))
        fresh, last = [], self._last_audio[0] if self._last_audio is not None else None
        for i, f in enumerate(frames):
            if last is None or f.pts_ns - last >= self.audio_hop_ns:
                fresh.append(i)
                last = f.pts_ns
        return fresh

    def _take(self) -> list[tuple[int, VideoFrame]]:
        """The next frame (none if none came within 50 ms), and with ``policy="block"`` (a file
        read as fast as possible) up to ``batch`` frames already waiting; live sources get one
        frame at a time (lowest latency)."""
        first = self.frames.get(timeout=0.05)
        if first is None:
            return []
        if self.policy == "latest" and self.lookahead_s:  # behind: later frames' sound is complete too
            end = (self.ring.end_ns or 0) - int(self.lookahead_s * 1e9) + self.max_skew_ns
            first, skipped = self.frames.skip_while(first, lambda waiting: waiting[1].pts_ns <= end)
            if skipped:  # the older ones are dropped: a live result stays ~look-ahead late
                self.stats.count("dropped", skipped)
        if self.policy == "block":
            return [first, *self.frames.take(self.batch - 1)]
        return [first]

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                frames = self._take()
                if not frames:
                    if self.video.done or self.video.error is not None:
                        break
                    continue
                for result in self._process(frames):
                    if self._stop.is_set():  # stop() from a callback closes the sinks: nothing more goes to them
                        break
                    t0 = time.perf_counter()
                    self.sinks.send("result", result)
                    if self.callback:
                        self.callback(result)
                    self.stats.time("sinks", (time.perf_counter() - t0) * 1e3)
                    self.stats.count("frames_out")
                    self.stats.mark(result.done_ns)
                    self._deliver(result)
        except BaseException as e:  # noqa: BLE001 - re-raised on the consumer's thread
            self.error = e
        finally:
            self._worker_done.set()
            self._deliver(_END)

    def _deliver(self, item) -> None:
        """Hand a result (or the end) to whoever takes them (:meth:`run`, iteration). A file
        (``block``) waits for them to be taken, like its frames: nothing is dropped, and 32
        results wait for a consumer that comes later. Live, or once stopping, the oldest
        waiting result makes room (counted as ``results_dropped``)."""
        dropped = self.results.put(item, self.policy == "block", self._stop)
        if dropped is None:  # stopped while waiting: in all the same (the end must reach the consumer)
            dropped = self.results.put(item, False)
        if dropped:
            self.stats.count("results_dropped", dropped)

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> Pipeline:
        if self._worker is not None:
            raise ConfigError(
                "this pipeline was already started (a Pipeline runs once)",
                "open a new one (Pipeline.from_bundle) for another run; iterate it or call run(), not both",
            )
        self._t_start = time.monotonic()
        self.sinks.send("attach", self, list(self.sinks))  # a sink may read the backend, stats and sources (a HUD, the sound to mux)
        self._worker = threading.Thread(target=self._run, name="edge_sdk-infer", daemon=True)
        self._worker.start()
        if self.audio is not None:  # a separate microphone or track: the video source's own sound is not used
            self.video.start(self._emit_picture)
            self.audio.start(self._emit)
        else:
            self.video.start(self._emit)
        return self

    def stop(self) -> dict:
        """Stop sources and workers (never hangs; also from a callback) and return the final
        statistics. Every sink is closed even when one fails (a full disk): the failure goes
        to the statistics' ``errors``, the other sinks' files are finished. A sink that draws
        on the consumer's thread (a window) is closed by a stop() on that thread (``run``
        ends with one)."""
        self._stop.set()
        for src in (self.video, self.audio):
            if src is not None:
                src.stop()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=5.0)
        if self._t_stop is None:
            self._t_stop = time.monotonic()
        if self.sinks.drawn and self._consumer is None and self.stats.counters["frames_out"]:
            log.warning("a window sink showed nothing: it is fed by Pipeline.run() or by iterating the pipeline")
        self.sinks.close(drawn=self._consumer in (None, threading.current_thread()))
        return self.final_stats()

    def final_stats(self) -> dict:
        d = self.stats.to_dict()
        d["policy"] = self.policy
        d["latency_from"] = "capture" if self.paced else "read"  # an unpaced file's pts_ns is media time
        d["backend"] = self.backend
        if self._t_start is not None:  # the run's length, beside fps (the rate while results came)
            d["seconds"] = round((self._t_stop or time.monotonic()) - self._t_start, 2)
        d["audio_gaps"] = self.ring.gaps
        for name, src in (("video", self.video), ("audio", self.audio)):
            if src is not None:
                d.setdefault("sources", {})[name] = {"uri": src.uri, **src.counters}
                if src.error is not None:  # the source ended on an error: said, not swallowed
                    d["faults"]["source_error"] = d["faults"].get("source_error", 0) + 1
                    d.setdefault("errors", []).append(f"{name} source {src.uri}: {src.error}")
        if self.sinks.errors:
            d.setdefault("errors", []).extend(f"sink {e}" for e in self.sinks.errors)
        return d

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _next_result(self, timeout: float | None):
        """The next result, ``_END`` at the end of the input, or None after ``timeout``."""
        item = self.results.get(timeout)
        self._ended = self._ended or item is _END
        return item

    def __iter__(self):
        """The results, in order, until the input ends (a finished pipeline yields nothing more);
        an error of the run is raised here, as :meth:`run` raises it. A window sink is drawn
        on this thread; closing it stops the pipeline and ends the iteration."""
        if self._ended or self._stop.is_set():  # ended, or stopped: what is left in the queue is stale
            return
        self._consumer = threading.current_thread()
        if self._worker is None:
            self.start()
        while (item := self._next_result(0.03 if self.sinks.drawn else None)) is not _END:
            if self.sinks.drawn and not self.sinks.draw(item):
                self.stop()
                return
            if item is not None:
                yield item
        if self.error is not None:
            raise self.error

    def run(self, max_seconds: float | None = None, on_stats=None, every_s: float = 1.0, on_result=None) -> dict:
        """Run to the end of the input (or ``max_seconds``); returns the final statistics
        (raises :class:`Interrupted`, holding them, on Ctrl-C).

        Sinks that draw on the caller's thread (``window://``) are fed here; closing the
        window (q, Esc) ends the run. ``on_result(result)`` is also called on this thread for
        each result it gets to; returning False stops the run."""
        t_end = time.monotonic() + max_seconds if max_seconds else None
        next_line = time.monotonic() + every_s
        self._consumer = threading.current_thread()
        self.start()
        wait = 0.03 if self.sinks.drawn else 0.1  # a window stays responsive
        interrupted = False
        try:
            while (item := self._next_result(wait)) is not _END:
                if on_result and item is not None and on_result(item) is False:
                    break
                if not self.sinks.draw(item):
                    break
                if on_stats and time.monotonic() >= next_line:
                    on_stats(self.stats)
                    next_line += every_s
                if t_end and time.monotonic() >= t_end:
                    break
        except KeyboardInterrupt:
            interrupted = True
        finally:
            stats = self.stop()
        if interrupted:
            raise Interrupted({**stats, "interrupted": True}) from None
        if self.error is not None:
            raise self.error
        return stats
