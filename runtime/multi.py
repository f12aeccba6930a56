"""Many streams in one process on one backend session: DeepStream's stream batching on a CPU.

A shop with eight cameras runs one process, not eight: every stream (a camera and a
microphone, a file played in real time, a network camera) keeps its own clock mapping,
alignment, queue, drops, task and statistics (:class:`~.stream.Stream`), while one set of
towers runs frames of different streams as one batch, within a latency bound
(:class:`~.batching.Batcher`; ``batch_wait_ms``). A stream that stalls or dies never holds the
others back, and a network camera that reconnects rejoins the batches.

    streams = [{"name": "door", "video": "rtsp://10.0.0.5/stream", "audio": "mic://usb-1"},
               {"name": "till", "video": "http://10.0.0.6:8080/video", "audio": "mic://usb-2"},
               "file:///clips/aisle.mp4?realtime=1"]
    with MultiPipeline.from_bundle("avnet_s-demo", streams, task="localize", sinks=["events.jsonl"]) as mp:
        for result in mp:                  # every stream's results, each naming its stream
            print(result.stream, result.values["peak_xy"], result.latency_ms)
    mp.final_stats()["streams"]["door"]    # one stream's drops, latencies, faults, sources

A stream is a video URI, or a dict (:class:`StreamSpec`'s fields): ``video``, ``audio``,
``name`` (default ``s0``, ``s1``, ...), ``task`` and ``task_opts`` (default: the pipeline's),
``sinks`` (this stream's own, e.g. its annotated video) and ``source_opts``.
:func:`read_sources` reads them from a JSON file (``edge-sdk run --sources FILE``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from edge_sdk.errors import ConfigError, EdgeSDKError
from edge_sdk.runtime.config import PipelineConfig
from edge_sdk.runtime.engine import Engine, Interrupted
from edge_sdk.runtime.opening import open_model, open_sources

__all__ = ["MultiPipeline", "StreamSpec", "stream_specs", "read_sources", "Interrupted"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class StreamSpec:
    """One stream of a :class:`MultiPipeline`, by URI."""

    video: str
    audio: str | None = None
    name: str = ""
    task: str | None = None  # None: the pipeline's
    task_opts: dict | None = None
    sinks: tuple = ()
    source_opts: dict = field(default_factory=dict)


def _spec(item, i: int) -> StreamSpec:
    names = [f.name for f in fields(StreamSpec)]
    if isinstance(item, StreamSpec):
        spec = item
    elif isinstance(item, str):
        spec = StreamSpec(item)
    elif isinstance(item, dict):
        unknown = sorted(set(item) - set(names))
        if unknown or not isinstance(item.get("video"), str):
            what = f"unknown key(s) {', '.join(unknown)}" if unknown else "no video URI"
            raise ConfigError(f"stream {i}: {what} in {item!r}", f"give each stream as {{'video': URI, 'audio': URI}}; keys: {', '.join(names)}")
        spec = StreamSpec(**{**item, "sinks": tuple(item.get("sinks") or ())})
    else:
        raise ConfigError(f"stream {i} is a {type(item).__name__}", "give each stream as a video URI or a dict {'video': URI, 'audio': URI}")
    name = spec.name or f"s{i}"
    if not _NAME.match(name):
        raise ConfigError(f"stream name {name!r} is not a plain name", "use letters, digits, '_', '-' and '.', at most 64 (it names files and keys)")
    return StreamSpec(spec.video, spec.audio or None, name, spec.task, spec.task_opts, tuple(spec.sinks), dict(spec.source_opts or {}))


def stream_specs(streams) -> list[StreamSpec]:
    """Streams as :class:`StreamSpec`, named and checked: at least one, names unique."""
    if isinstance(streams, (str, dict, StreamSpec)) or not streams:
        raise ConfigError("a MultiPipeline needs a list of streams", "pass streams=['cam://0', {'video': 'rtsp://...', 'audio': 'mic://default'}]")
    specs = [_spec(item, i) for i, item in enumerate(streams)]
    seen: set[str] = set()
    for s in specs:
        if s.name in seen:
            raise ConfigError(f"two streams are named {s.name!r}", "give every stream its own name")
        seen.add(s.name)
    return specs


def read_sources(path) -> list[StreamSpec]:
    """The streams of a JSON sources file: a list of streams (URIs or objects with ``video``,
    ``audio``, ``name``, ...), or ``{"streams": [...]}``."""
    p = Path(path)
    example = '[{"name": "door", "video": "rtsp://10.0.0.5/stream", "audio": "mic://default"}, {"video": "file:///x.mp4?realtime=1"}]'
    if not p.is_file():
        raise ConfigError(f"sources file {p} does not exist", f"write the streams as JSON, e.g. {example}")
    try:
        data = json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"sources file {p} is not JSON ({e})", f"write the streams as JSON, e.g. {example}") from None
    if isinstance(data, dict) and set(data) == {"streams"}:
        data = data["streams"]
    if not isinstance(data, list):
        raise ConfigError(f"sources file {p} holds a {type(data).__name__}, not a list of streams", f"write e.g. {example}")
    return stream_specs(data)


class MultiPipeline(Engine):
    """Several streams on one runner (see the module's docstring). ``streams`` are
    ``(name, video source, audio source or None, task or None, task_opts, sinks)``, their
    sources opened; ``task``/``task_opts`` are the default of every stream (each stream gets
    its own task object); ``sinks`` get every stream's results, each stream's own sinks its."""

    def __init__(self, towers, contract, streams, task: str = "localize", *, config: PipelineConfig | None = None, sinks=(),
                 callback=None, task_opts: dict | None = None, backend: str | None = None):  # fmt: skip
        specs = [(name, v, a, t or task, t_opts if t_opts is not None else dict(task_opts or {}), own) for name, v, a, t, t_opts, own in streams]
        super().__init__(towers, contract, specs, config=config, sinks=sinks, callback=callback, backend=backend, per_stream=True)
        self.by_name = {s.name: s for s in self.streams}

    @classmethod
    def from_bundle(cls, bundle, streams, task: str = "localize", *, prefer: str | None = None, precision: str | None = None,
                    config: PipelineConfig | None = None, sinks=(), callback=None, task_opts: dict | None = None,
                    trusted: tuple[str, ...] = (), **knobs) -> MultiPipeline:  # fmt: skip
        """Open a bundle once, on the backend this machine runs best, and every stream's sources
        by URI; ``knobs`` (``batch=``, ``batch_wait_ms=``, ``queue_size=``, ...) replace those
        of ``config`` (:class:`~.config.PipelineConfig`). A stream whose source cannot be opened
        fails the call by name, with every source opened before it closed."""
        cfg = PipelineConfig.of(config, **knobs)  # checked before anything is opened
        specs = stream_specs(streams)
        model = open_model(bundle, prefer=prefer, precision=precision, trusted=trusted)
        opened: list = []
        try:
            for s in specs:
                try:
                    v, a = open_sources(s.video, s.audio, model.contract.audio.sample_rate, s.source_opts)
                except EdgeSDKError as e:
                    raise type(e)(f"stream {s.name}: {e.problem}", e.fix) from None
                opened.append((s.name, v, a, s.task, s.task_opts, s.sinks))
            return cls(model.towers, model.contract, opened, task, config=cfg, sinks=sinks, callback=callback,
                       task_opts=task_opts, backend=model.backend)  # fmt: skip
        except BaseException:
            for _, v, a, *_ in opened:
                for src in (v, a):
                    if src is not None:
                        src.stop()
            raise

    def final_stats(self) -> dict:
        """The whole run's statistics (every stream's frames, drops and latencies together),
        with ``streams``: each stream's own, and ``batches``: how inference batched them."""
        d = super().final_stats()
        d["streams"], errors = {}, []
        for s in self.streams:
            own = {**s.stats.to_dict(), **s.final_stats()}
            mine = s.source_errors() + [f"sink {e}" for e in s.sinks.errors]
            if mine:
                own["errors"] = mine
                errors += [f"stream {s.name}: {e}" for e in mine]
            if s.source_errors():
                own["faults"]["source_error"] = len(s.source_errors())
                d["faults"]["source_error"] = d["faults"].get("source_error", 0) + len(s.source_errors())
            d["streams"][s.name] = own
        n = d["counters"].get("inference_batches", 0)
        d["batches"] = {"count": n, "mean_size": round(d["frames_out"] / n, 2) if n else 0.0, "max_size": self.batcher.batch,
                        "wait_ms": self.config.batch_wait_ms}  # fmt: skip
        errors += self.sink_errors()
        if errors:
            d["errors"] = errors
        return d
