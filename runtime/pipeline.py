"""The streaming pipeline: camera and microphone on one clock, into any backend, live.

Each source captures on its own thread (or device callback) into a bounded frame queue
(:class:`~.queues.BoundedQueue`) and the :class:`~.align.AudioRing` of its stream
(:class:`~.stream.Stream`); one inference thread takes a frame once the audio window(s)
ending at its time are there, runs the towers and the task, and hands the result to the
sinks, the callback and the consumer (``run()`` or iteration). A :class:`Pipeline` is the
one-stream case of :class:`~.multi.MultiPipeline`: both are an :class:`~.engine.Engine`,
one code path.
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

from edge_sdk.runtime.config import PipelineConfig
from edge_sdk.runtime.engine import Engine, Interrupted
from edge_sdk.runtime.opening import open_bundle
from edge_sdk.runtime.tasks import Task

__all__ = ["Pipeline", "PipelineConfig", "Interrupted"]


class Pipeline(Engine):
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
        super().__init__(towers, contract, [("", video, audio, task, task_opts, ())], config=config, sinks=sinks, callback=callback, backend=backend)
        self.stream = self.streams[0]

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

    # the one stream's parts, by their names (sinks read the sources; apps and tests the task)
    @property
    def video(self):
        return self.stream.video

    @property
    def audio(self):
        return self.stream.audio

    @property
    def task(self) -> Task:
        return self.stream.task

    @property
    def paced(self) -> bool:
        return self.stream.paced

    @property
    def batch(self) -> int:
        return self.config.batch

    def final_stats(self) -> dict:
        d = super().final_stats()
        d.update(self.stream.final_stats())
        errors = self.stream.source_errors()
        if errors:
            d["faults"]["source_error"] = d["faults"].get("source_error", 0) + len(errors)
        errors += self.sink_errors()
        if errors:
            d["errors"] = errors
        return d
