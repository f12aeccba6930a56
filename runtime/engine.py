"""What a :class:`~.pipeline.Pipeline` (one stream) and a :class:`~.multi.MultiPipeline` (many)
share: the streams (:mod:`.stream`), one inference thread that forms batches across them
(:class:`~.batching.Batcher`) and runs them (:func:`~.batching.infer`), the hand-off of results
to sinks, the callback and the consumer (``run()`` or iteration), the lifecycle and the final
statistics. The two classes differ only in how they are built and how their statistics read.

Sinks are URIs (:func:`~.sinks.open_sink`) or objects; a window (GUI toolkits draw only on the
thread that made them) is fed by the thread that consumes the results, not the inference
thread; closing it ends the run.
"""

from __future__ import annotations

import logging
import threading
import time

from edge_sdk.errors import ConfigError
from edge_sdk.runtime.batching import Batcher, infer
from edge_sdk.runtime.config import PipelineConfig
from edge_sdk.runtime.queues import BoundedQueue
from edge_sdk.runtime.sinks import SinkSet
from edge_sdk.runtime.stats import Stats
from edge_sdk.runtime.stream import Signals, Stream

__all__ = ["Engine", "Interrupted"]

log = logging.getLogger(__name__)

_END = object()


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during :meth:`Engine.run` (or SIGTERM/SIGHUP under ``edge-sdk``, which turns
    them into Ctrl-C): the pipeline was stopped cleanly, its sinks closed, and ``stats``
    holds the final statistics, with ``interrupted: True``. Code that catches
    ``KeyboardInterrupt`` still catches it."""

    def __init__(self, stats: dict):
        super().__init__("interrupted")
        self.stats = stats


class Engine:
    """Streams -> batches across them -> one inference thread -> each stream's task -> sinks,
    callback and the consumer. ``streams`` are ``(name, video, audio, task, task_opts, sinks)``;
    with ``per_stream`` each stream keeps its own statistics inside the pipeline's."""

    def __init__(self, towers, contract, streams, *, config: PipelineConfig | None = None, sinks=(), callback=None,
                 backend: str | None = None, per_stream: bool = False):  # fmt: skip
        self.config = cfg = config if config is not None else PipelineConfig()
        self.towers, self.contract, self.backend = towers, contract, backend or type(towers).__name__
        self.stats = Stats()
        self.signals = Signals(threading.Event(), threading.Event(), threading.Event())
        self.streams: list[Stream] = []
        for name, video, audio, task, task_opts, _ in streams:
            st = Stats(parent=self.stats) if per_stream else self.stats
            self.streams.append(Stream(name, video, audio, task, contract, towers, cfg, stats=st, signals=self.signals, task_opts=task_opts))
        self.per_stream = per_stream
        self.batcher = Batcher(self.streams, max(cfg.batch, len(self.streams)) if per_stream else cfg.batch, cfg.batch_wait_ms,
                               self.signals.stop, self.signals.bell)  # fmt: skip
        self.policy = "block" if all(s.policy == "block" for s in self.streams) else "latest"
        self.results = BoundedQueue(max(32, 4 * len(self.streams)))  # a result holds its frame: 32 at 720p is 88 MB
        self.callback = callback
        self._worker: threading.Thread | None = None
        self._consumer: threading.Thread | None = None  # the thread of run() or iteration: it feeds the window
        self._ended = False  # the end of the results was taken
        self._t_start: float | None = None
        self._t_stop: float | None = None
        self.error: BaseException | None = None
        # URIs opened last: nothing else can fail and leave them open
        for stream, spec in zip(self.streams, streams):
            stream.sinks = SinkSet(spec[5])
            if stream.sinks.drawn:
                raise ConfigError(f"stream {stream.name}: a window shows every stream's results",
                                  "give window:// as a sink of the whole pipeline (sinks=...), not of one stream")  # fmt: skip
        self.sinks = SinkSet(sinks)
        for stream in self.streams:
            stream.shared = self.sinks

    # -- the inference thread ---------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self.signals.stop.is_set():
                taken = self.batcher.take()
                if not taken:
                    if all(s.finished for s in self.streams):
                        break
                    continue
                results = infer(self.towers, self.contract, taken, self.stats, batch_wait=self.per_stream)
                for t, result in zip(taken, results):
                    if self.signals.stop.is_set():  # stop() from a callback closes the sinks: nothing more goes to them
                        break
                    self._hand_out(result, t.stream)
        except BaseException as e:  # noqa: BLE001 - re-raised on the consumer's thread
            self.error = e
        finally:
            self.signals.done.set()
            self._deliver(_END)

    def _hand_out(self, result, stream: Stream) -> None:
        t0 = time.perf_counter()
        self.sinks.send("result", result)
        stream.sinks.send("result", result)
        if self.callback:
            self.callback(result)
        stream.stats.time("sinks", (time.perf_counter() - t0) * 1e3)
        stream.stats.count("frames_out")
        stream.stats.mark(result.done_ns)
        self._deliver(result)

    def _deliver(self, item) -> None:
        """Hand a result (or the end) to whoever takes them (:meth:`run`, iteration). Files
        (``block``) wait for them to be taken, like their frames: nothing is dropped, and the
        results wait for a consumer that comes later. Live, or once stopping, the oldest
        waiting result makes room (counted as ``results_dropped``)."""
        dropped = self.results.put(item, self.policy == "block", self.signals.stop)
        if dropped is None:  # stopped while waiting: in all the same (the end must reach the consumer)
            dropped = self.results.put(item, False)
        if dropped:
            self.stats.count("results_dropped", dropped)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Engine:
        if self._worker is not None:
            raise ConfigError(
                f"this pipeline was already started (a {type(self).__name__} runs once)",
                f"open a new one ({type(self).__name__}.from_bundle) for another run; iterate it or call run(), not both",
            )
        self._t_start = time.monotonic()
        self.sinks.send("attach", self, list(self.sinks))  # a sink may read the backend, stats and sources (a HUD, the sound to mux)
        for stream in self.streams:
            stream.sinks.send("attach", stream, list(stream.sinks))
        self._worker = threading.Thread(target=self._run, name="edge_sdk-infer", daemon=True)
        self._worker.start()
        for stream in self.streams:
            stream.start()
        return self

    def stop(self) -> dict:
        """Stop sources and workers (never hangs; also from a callback) and return the final
        statistics. Every sink is closed even when one fails (a full disk): the failure goes
        to the statistics' ``errors``, the other sinks' files are finished. A sink that draws
        on the consumer's thread (a window) is closed by a stop() on that thread (``run``
        ends with one)."""
        self.signals.stop.set()
        self.signals.bell.set()
        for stream in self.streams:
            stream.stop()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=5.0)
        if self._t_stop is None:
            self._t_stop = time.monotonic()
        if self.sinks.drawn and self._consumer is None and self.stats.counters["frames_out"]:
            log.warning("a window sink showed nothing: it is fed by run() or by iterating the pipeline")
        for stream in self.streams:
            stream.sinks.close()
        self.sinks.close(drawn=self._consumer in (None, threading.current_thread()))
        return self.final_stats()

    def final_stats(self) -> dict:
        """The statistics of the whole run (:meth:`~.stats.Stats.to_dict`), its length, backend
        and errors."""
        d = self.stats.to_dict()
        d["backend"] = self.backend
        if self._t_start is not None:  # the run's length, beside fps (the rate while results came)
            d["seconds"] = round((self._t_stop or time.monotonic()) - self._t_start, 2)
        return d

    def sink_errors(self) -> list[str]:
        return [f"sink {e}" for e in self.sinks.errors]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- the consumer ------------------------------------------------------------------------
    def _next_result(self, timeout: float | None):
        """The next result, ``_END`` at the end of the input, or None after ``timeout``."""
        item = self.results.get(timeout)
        self._ended = self._ended or item is _END
        return item

    def __iter__(self):
        """The results, in order, until the input ends (a finished pipeline yields nothing more);
        an error of the run is raised here, as :meth:`run` raises it. A window sink is drawn
        on this thread; closing it stops the pipeline and ends the iteration."""
        if self._ended or self.signals.stop.is_set():  # ended, or stopped: what is left in the queue is stale
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
