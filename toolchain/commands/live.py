"""``edge-sdk run`` (a bundle live on sources and sinks given by URI: :class:`edge_sdk.runtime.Pipeline`)
and ``edge-sdk demo`` (the live demos: :mod:`edge_sdk.apps.demo`)."""

from __future__ import annotations

import argparse
import json
import sys

from edge_sdk.errors import EdgeSDKError
from edge_sdk.outputs import atomic_write_text
from edge_sdk.toolchain.args import NONNEG, PORT, Command, StatusLine, number, writable

__all__ = ["COMMANDS"]


def _sink_uris(args) -> list[str]:
    """``--sink`` URIs and the shorthands (``--events``, ``--out-video``, ``--mjpeg``) as sink URIs."""
    from urllib.parse import quote

    uris = list(args.sink)
    uris += [f"events://{quote(args.events)}"] if args.events else []
    uris += [f"video://{quote(args.out_video)}"] if args.out_video else []
    uris += [f"mjpeg://127.0.0.1:{args.mjpeg}"] if args.mjpeg else []
    return uris


def _prefer_profile(args):
    """The bundle (read, when a ``--device`` profile is given) with the profile's backend and
    precision preferred where the bundle has them."""
    if not args.device:
        return args.bundle
    from edge_sdk.bundle import read_bundle
    from edge_sdk.profiles import get_profile

    prof, bundle = get_profile(args.device), read_bundle(args.bundle)
    want = (args.backend or prof.backend, args.precision or prof.precision)
    if want in {(c.backend, c.precision) for c in bundle.choices()}:
        args.backend, args.precision = want
    else:
        print(
            f"edge-sdk run: {bundle.folder} has no {want[0]} {want[1]} model (asked with --device {args.device}): using the best one it has",
            file=sys.stderr,
        )
    return bundle


def _report(stats: dict, args) -> None:
    text = json.dumps(stats, indent=2)
    if args.stats:  # written first: the terminal may be gone; whole or not at all
        atomic_write_text(args.stats, text, "--stats")
    for err in stats.get("errors", []):
        print(f"edge-sdk run: {err}", file=sys.stderr)
    if not args.stats:
        print(text)
        return
    lat = stats.get("latency_ms", {}).get("capture_to_result") or {}  # the file has it all; the terminal gets one line
    print(
        f"{stats.get('frames_out')} results in {stats.get('seconds')} s ({stats.get('fps')} fps while they came), "
        f"dropped {stats.get('dropped')}, capture-to-result p50 {lat.get('p50', '-')} ms p95 {lat.get('p95', '-')} ms; "
        f"statistics in {args.stats}"
    )


def _stream_specs(args) -> list | None:
    """The streams of ``--sources FILE`` or of several ``--video``/``--audio`` pairs; None for one stream."""
    from edge_sdk.runtime.multi import read_sources, stream_specs

    videos, audios = args.video or [], args.audio or []
    if args.sources:
        if videos or audios:
            raise EdgeSDKError("--sources and --video/--audio both name the streams", "give the streams in the --sources file only")
        return read_sources(args.sources)
    if not videos:
        raise EdgeSDKError("no video source", "give --video URI (repeat --video/--audio for several streams) or --sources FILE")
    if len(videos) == 1 and len(audios) <= 1:
        return None
    if audios and len(audios) != len(videos):
        raise EdgeSDKError(
            f"{len(videos)} --video and {len(audios)} --audio sources: with several streams each --video needs its --audio",
            "give one --audio per --video, in the same order ('-' for a video's own sound), or none",
        )
    pairs = zip(videos, audios or [None] * len(videos))
    return stream_specs([{"video": v, "audio": None if a in (None, "-") else a} for v, a in pairs])


def _per_stream(uri: str, name: str) -> str:
    """``video://out.mp4`` -> ``video://out-NAME.mp4``: one annotated video per stream."""
    stem, dot, ext = uri.rpartition(".")
    return f"{stem}-{name}.{ext}" if dot and "/" not in ext else f"{uri}-{name}"


def _open(args, uris: list[str], window, specs):
    from edge_sdk.runtime.multi import MultiPipeline, StreamSpec
    from edge_sdk.runtime.pipeline import Pipeline

    common = dict(
        prefer=args.backend,
        precision=args.precision,
        task_opts={"gallery": args.gallery} if args.gallery else {},
        policy=args.policy,
        audio_hop_ms=args.audio_hop_ms,
        trusted=(args.factory,) if args.factory else (),
    )
    sinks = [*uris, *([window] if window else [])]
    if specs is None:
        audio = (args.audio or [None])[0]
        return Pipeline.from_bundle(_prefer_profile(args), args.video[0], None if audio == "-" else audio, args.task, sinks=sinks, **common)
    if args.mjpeg:
        raise EdgeSDKError("--mjpeg previews one stream", 'give each stream its own preview in a --sources file: "sinks": ["mjpeg://127.0.0.1:8091"]')
    videos = [u for u in sinks if isinstance(u, str) and u.startswith("video://")]  # one annotated video per stream
    shared = [u for u in sinks if u not in videos]
    specs = [StreamSpec(s.video, s.audio, s.name, s.task, s.task_opts, (*s.sinks, *(_per_stream(u, s.name) for u in videos)), s.source_opts)
             for s in specs]  # fmt: skip
    return MultiPipeline.from_bundle(_prefer_profile(args), specs, args.task, sinks=shared, batch_wait_ms=args.batch_wait_ms, **common)


def run_run(args) -> int:
    from edge_sdk.runtime.pipeline import Interrupted
    from edge_sdk.runtime.sinks import open_sink

    writable(events=args.events, out_video=args.out_video, stats=args.stats)
    specs = _stream_specs(args)
    uris = _sink_uris(args)
    window = None  # a window unless --headless (or one given with --sink): where none can open, said and headless
    if specs is not None and not args.headless:
        print(f"edge-sdk run: {len(specs)} streams: no window (add --sink window:// to see every stream's results in one)", file=sys.stderr)
    elif not args.headless and not any(u.lower().startswith("window:") for u in uris):
        try:
            window = open_sink("window://", title=f"edge-sdk run {args.task}")
        except EdgeSDKError as e:
            print(f"{e.problem}: running headless (use --mjpeg PORT for a live preview)", file=sys.stderr)
    try:  # the URIs are opened once the bundle and sources are
        pipe = _open(args, uris, window, specs)
    except BaseException:
        if window:
            window.close()
        raise
    for sink in [*pipe.sinks, *(s for st in pipe.streams for s in st.sinks)]:
        if getattr(sink, "url", None):
            print(f"preview: {sink.url}", file=sys.stderr)
    live, stopped = (None if args.quiet else StatusLine()), None
    try:  # the window is drawn here, on the main thread (q, Esc or closing it ends the run)
        stats = pipe.run(args.max_seconds, on_stats=live)
    except Interrupted as e:  # a live run ends this way: its statistics are written all the same
        stats, stopped = e.stats, e
    finally:
        if live:
            live.end()
    _report(stats, args)
    if stopped:
        raise stopped
    return 1 if stats.get("errors") else 0  # a source that ended on an error, an output that could not be finished


def run_demo(args) -> int:
    from edge_sdk.apps.demo import run_demo as demo

    live = None if args.quiet else StatusLine()
    try:
        summary = demo(
            args.name,
            video=args.video,
            audio=args.audio,
            bundle=args.bundle,
            backend=args.backend,
            precision=args.precision,
            headless=args.headless,
            out=args.out,
            mjpeg=args.mjpeg,
            max_seconds=args.max_seconds,
            gallery=args.gallery,
            on_stats=live,
        )
    finally:
        if live:
            live.end()
    st = summary["stats"]
    lat = st["latency_ms"].get("capture_to_result", {})
    print(
        f"demo {summary['demo']} on {summary['backend']}: {st['frames_out']} frames, {st['fps']} fps, dropped {st['dropped']}, "
        f"capture-to-result p50 {lat.get('p50')} ms p95 {lat.get('p95')} ms"
    )
    print("wrote " + ", ".join(summary["files"].values()))
    if st.get("interrupted"):
        raise KeyboardInterrupt
    return 0


def run_arguments(p: argparse.ArgumentParser) -> None:
    from edge_sdk.runtime.sinks import usage as sink_usage

    p.add_argument("--bundle", required=True, help="a bundle folder or .zip (edge-sdk info lists the shipped ones)")
    p.add_argument(
        "--video",
        action="append",
        help="cam://0, v4l2:///dev/video0, csi://0, http://..., rtsp://..., file:///clip.mp4[?realtime=1], synthetic://av-digits; "
        "repeat it for several streams served by one process",
    )
    p.add_argument(
        "--audio",
        action="append",
        help="mic://default, mic://NAME, wav:///x.wav (default: the video source's own audio track); "
        "with several --video, one per video ('-': its own sound)",
    )
    p.add_argument(
        "--sources",
        metavar="FILE",
        help='the streams as JSON: [{"name": "door", "video": "rtsp://...", "audio": "mic://default", "sinks": ["door.mp4"]}, ...] '
        "(several streams: one model, frames batched across streams; see the README's Streaming runtime)",
    )
    p.add_argument(
        "--batch-wait-ms",
        type=NONNEG,
        default=10.0,
        help="several streams: how long a ready frame waits for other streams' frames to join its batch (default 10)",
    )
    p.add_argument("--task", default="localize", help="localize, sync, retrieval or speaker")
    p.add_argument("--gallery", help="retrieval: a folder of images and/or .wav sounds")
    p.add_argument("--backend", help="onnxruntime, tensorrt, executorch or torch (default: the best this machine runs)")
    p.add_argument("--precision", help="fp32, fp16 or int8 (default: the fastest the bundle has)")
    p.add_argument("--model", dest="factory", metavar="FILE.py:FUNCTION",
                   help="your model's factory, as at export: lets --backend torch import it for a bundle of your model")  # fmt: skip
    p.add_argument(
        "--policy",
        choices=["latest", "block"],
        help="when inference is slower than capture: drop the oldest frames (latest, default for live sources) or wait (block, default for files)",
    )
    p.add_argument("--device", help="device profile whose backend and precision to prefer (edge-sdk export --device)")
    p.add_argument("--audio-hop-ms", type=NONNEG, default=0.0, help="run the audio tower at most every this many ms (default: every frame)")
    p.add_argument("--headless", action="store_true", help="no window (unless a --sink window:// asks for one)")
    p.add_argument(
        "--sink",
        action="append",
        default=[],
        metavar="URI",
        help="send results here too, repeatable: events.jsonl, out.mp4, mjpeg://127.0.0.1:8090, window:// (schemes below)",
    )
    p.add_argument("--events", help="write JSON-lines results and faults here (--sink events://PATH)")
    p.add_argument(
        "--out-video",
        help="write an annotated video here, the run's sound file muxed back (--sink video://PATH; several streams: PATH-NAME.mp4 each)",
    )
    p.add_argument("--mjpeg", type=PORT, help="serve an MJPEG preview on this port (--sink mjpeg://127.0.0.1:PORT)")
    p.add_argument("--stats", help="write the final statistics (JSON) here (several streams: each stream's under 'streams')")
    p.add_argument("--max-seconds", type=number(float, 0.1), help="stop after this many seconds")
    p.add_argument("--quiet", action="store_true", help="no live status line")
    p.epilog += "\n\nsinks (--sink URI; query parameters are options, e.g. out.mp4?fps=30):\n" + sink_usage(width=100)


def demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", choices=["localize", "sync", "retrieve", "speaker"], help="which demo")
    p.add_argument("--video", help="video source URI (default: this machine's camera, else synthetic://av-digits)")
    p.add_argument("--audio", help="audio source URI (default: the microphone, or the video's own sound)")
    p.add_argument("--bundle", help="bundle folder or .zip (default: the shipped demo bundle)")
    p.add_argument("--backend", help="onnxruntime, tensorrt, executorch or torch (default: the best this machine runs)")
    p.add_argument("--precision", help="fp32, fp16 or int8")
    p.add_argument("--gallery", help="retrieve: a folder of images and/or .wav sounds (default: one image per digit)")
    p.add_argument("--headless", action="store_true", help="no window: annotated video, events, stats and a snapshot in --out")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--mjpeg", type=PORT, help="serve an MJPEG preview on this port")
    p.add_argument("--max-seconds", type=number(float, 0.1), help="stop after this many seconds")
    p.add_argument("--quiet", action="store_true", help="no live status line")


COMMANDS = (
    Command(
        "run",
        run_run,
        run_arguments,
        "Run a bundle live on video and audio sources (URIs), with a task, stats and sinks.",
        "edge-sdk run --bundle avnet_s-demo --video synthetic://av-digits?seconds=10 --task localize --headless --stats stats.json",
        live=lambda args: True,
    ),
    Command(
        "demo",
        run_demo,
        demo_arguments,
        "Live demos: localize, sync, retrieve, speaker (camera + microphone, or generated scenes).",
        "edge-sdk demo localize --headless --max-seconds 20",
        logs=("edge_sdk.apps.demo",),
        live=lambda args: True,
    ),
)
