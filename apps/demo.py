"""``edge-sdk demo localize|sync|retrieve|speaker``: the live demos, each a thin composition
of runtime parts (sources, pipeline, task, sinks).

Defaults: the shipped demo bundle, the machine's camera and microphone; where there is no
camera (or no microphone) the demo says so and runs on ``synthetic://av-digits`` (held-out
scenes with real speech, paced like a camera). Every demo writes an annotated video with
sound, JSON-lines events, the final stats and a snapshot, optionally serves an MJPEG
preview, and shows a window (``window://``, :mod:`edge_sdk.runtime.window`: OpenCV's, or
Tk's under a headless OpenCV) with backend, FPS and latency drawn on each frame, unless
``--headless`` or there is no display (said in a note). Every sink is opened by URI
(:func:`edge_sdk.runtime.sinks.open_sink`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np

from edge_sdk.errors import ConfigError, EdgeSDKError
from edge_sdk.outputs import atomic_write_bytes, atomic_write_text, lock_folder, output_folder

__all__ = ["DEMOS", "run_demo", "default_sources"]

log = logging.getLogger(__name__)

DEMOS = {"localize": "localize", "sync": "sync", "retrieve": "retrieval", "speaker": "speaker"}
FALLBACK = "synthetic://av-digits?seconds=20&realtime=1"


def _camera() -> str | None:
    for dev in sorted(Path("/dev").glob("video*")):
        cap = cv2.VideoCapture(str(dev))
        ok = cap.isOpened()
        cap.release()
        if ok:
            return f"v4l2://{dev}"
    return None


def _microphone() -> str | None:
    try:
        import sounddevice as sd

        return "mic://default" if any(d["max_input_channels"] > 0 for d in sd.query_devices()) else None
    except Exception:  # noqa: BLE001 - no PortAudio, no server: no microphone
        return None


def default_sources(video: str | None, audio: str | None) -> tuple[str, str | None, str | None]:
    """``(video, audio, note)``: the given URIs, else this machine's camera and microphone, else
    the synthetic scenes (with a note saying why)."""
    if video:
        return video, audio, None
    cam = _camera()
    if cam is None:  # a given --audio is kept: the scenes' pictures with that sound
        sound = f" with the sound of {audio}" if audio else ""
        return FALLBACK, audio, f"no camera found (no /dev/video* that opens): running on synthetic://av-digits{sound}; pass --video URI"
    mic = audio or _microphone()
    if mic is None:
        return FALLBACK, None, f"camera {cam} but no microphone: running on synthetic://av-digits; pass --audio URI"
    return cam, mic, None


def _digit_gallery(folder: Path, spec) -> Path:
    """One image per digit from the held-out AV-Digits renderer, for the retrieve demo's default gallery."""
    from edge_sdk.media.avdigits import render_single
    from edge_sdk.media.corpora import default_data_dir
    from edge_sdk.media.digits import DEFAULT_TEST_SPEAKERS, load_bank, synthetic_bank

    root = default_data_dir()
    sr = spec.audio.sample_rate
    bank = load_bank(root / "fsdd" / "recordings", root / "mnist", "test", sr, DEFAULT_TEST_SPEAKERS) if root else synthetic_bank("test", sr)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for d in range(10):
        img = render_single(bank, int(bank.images_of(d)[0]), (spec.image.height, spec.image.width), rng)
        cv2.imwrite(str(folder / f"digit_{d}.png"), img[:, :, ::-1])
    return folder


def run_demo(
    name: str,
    *,
    video: str | None = None,
    audio: str | None = None,
    bundle: str | None = None,
    backend: str | None = None,
    precision: str | None = None,
    headless: bool = False,
    out: str | Path = "runs/demo",
    mjpeg: int | None = None,
    max_seconds: float | None = None,
    gallery: str | None = None,
    on_stats=None,
) -> dict:
    """Run one demo; returns a summary (paths written, stats, the notes shown to the user).
    Ctrl-C ends it as the end of its input would, with ``stats["interrupted"]`` True."""
    from edge_sdk.bundle import read_bundle

    if name not in DEMOS:
        raise ConfigError(f"unknown demo {name!r}", f"use one of: {', '.join(DEMOS)}")
    notes = []
    b = read_bundle(bundle if bundle is not None else _shipped_demo_bundle(name))
    video, audio, note = default_sources(video, audio)
    if note:
        notes.append(note)
    out = output_folder(output_folder(out) / name)
    lock = lock_folder(out)  # a second demo into the same folder is refused
    try:
        return _run(name, b, video, audio, out, backend, precision, headless, mjpeg, max_seconds, gallery, on_stats, notes)
    finally:
        lock.release()


def _run(name, b, video, audio, out: Path, backend, precision, headless, mjpeg, max_seconds, gallery, on_stats, notes) -> dict:
    """:func:`run_demo`'s work, with ``out`` locked."""
    from edge_sdk.runtime.pipeline import Interrupted, Pipeline

    task_opts = {}
    if DEMOS[name] == "retrieval":
        task_opts["gallery"] = gallery or str(_digit_gallery(out / "gallery", b.contract))
    keep = _Keeper()
    sinks, window = _open_sinks(out, name, mjpeg, headless, notes)
    for n in notes:  # said once, before the run (the CLI shows this module's INFO lines)
        log.info("demo %s: %s", name, n)
    try:
        pipe = Pipeline.from_bundle(
            b, video, audio, DEMOS[name], prefer=backend, precision=precision, sinks=sinks, callback=keep, task_opts=task_opts
        )
    except BaseException:
        for s in sinks:  # the pipeline never had them: closed here
            s.close()
        raise
    try:
        stats = pipe.run(max_seconds, on_stats=on_stats)  # the window is drawn here, on this thread
    except Interrupted as e:  # how a live demo ends: its files are written all the same
        stats = e.stats
    summary = {
        "demo": name,
        "video": video,
        "audio": audio,
        "backend": pipe.backend,
        "notes": notes,
        "out": str(out),
        "window": {"kind": window.kind, "frames_shown": window.shown} if window else None,
        "files": {
            "video": str(out / "annotated.mp4"),
            "events": str(out / "events.jsonl"),
            "stats": str(out / "stats.json"),
            "summary": str(out / "summary.json"),
        },
        "stats": stats,
        "pointing_acc": float(np.mean(keep.hits)) if keep.hits else None,
    }
    _write_summary(out, summary, keep.last, pipe)
    return summary


def _shipped_demo_bundle(name: str) -> str:
    """The path of the shipped demo bundle, for a demo run without ``--bundle``: for ``sync``, the
    synchrony student's (a model that sees time: one frame cannot tell when a sound happened)."""
    from edge_sdk.bundle import shipped_bundles

    shipped = shipped_bundles()
    if name == "sync" and "avsync_s-demo" in shipped:
        return str(shipped["avsync_s-demo"])
    if "avnet_s-demo" not in shipped:
        raise ConfigError("no --bundle given and no shipped demo bundle", "pass --bundle PATH (edge-sdk export writes one)")
    return str(shipped_bundles()["avnet_s-demo"])


class _Keeper:
    """The demo's callback: keeps the last result and, where a generated scene knows the spoken digit's box, whether the peak hit it."""

    def __init__(self):
        self.last, self.hits = None, []

    def __call__(self, result) -> None:
        self.last = result
        box = result.frame.meta.get("box")  # generated scenes know where the spoken digit is
        if box is not None and "peak_xy" in result.values:
            x, y = result.values["peak_xy"]
            self.hits.append(box[0] <= x <= box[2] and box[1] <= y <= box[3])


def _open_sinks(out: Path, name: str, mjpeg: int | None, headless: bool, notes: list[str]) -> tuple[list, object | None]:
    """The demo's sinks (events, annotated video, MJPEG preview, window) and the window, if one opened; what to tell the user goes to ``notes``."""
    from edge_sdk.runtime.sinks import open_sink

    sinks = [open_sink(out / "events.jsonl"), open_sink(out / "annotated.mp4")]  # its sound: the run's own file, if any
    if mjpeg is not None:
        sinks.append(open_sink(f"mjpeg://127.0.0.1:{mjpeg}"))
        notes.append(f"preview at {sinks[-1].url}")
    window = None
    if not headless:  # opened last: nothing after it can fail and leave it on the screen
        try:
            window = open_sink("window://", title=f"edge-sdk demo {name}")
            sinks.append(window)
        except EdgeSDKError as e:
            notes.append(f"{e.problem}: running headless (annotated video, events and stats in {out}; --mjpeg PORT for a live preview)")
    return sinks, window


def _write_summary(out: Path, summary: dict, last, pipe) -> None:
    """Write the snapshot of the last result (added to ``summary``), the stats and the summary into ``out``."""
    from edge_sdk.runtime.sinks import annotate
    from edge_sdk.runtime.window import MIN_SIDE, hud

    if last is not None:
        ok, png = cv2.imencode(".png", annotate(last, hud(pipe), min_side=MIN_SIDE)[:, :, ::-1])
        if ok:
            atomic_write_bytes(out / "snapshot.png", png.tobytes())
            summary["files"]["snapshot"] = str(out / "snapshot.png")
        summary["last"] = last.values
    atomic_write_text(out / "stats.json", json.dumps(summary["stats"], indent=2))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str))
