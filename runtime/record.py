"""Record a calibration set from live sources: (frame, audio window) pairs as the target
machine's own camera and microphone deliver them, in the ``.npz`` format of
``edge-sdk calib`` (``wave`` float32, ``image`` HxWx3 uint8 at the model contract's size,
``sample_rate``: :mod:`edge_sdk.media.pairs`), so INT8 calibration sees the real input
distribution of the device.
"""

from __future__ import annotations

import logging
import queue
import time
from pathlib import Path

import numpy as np

from edge_sdk.errors import DataError
from edge_sdk.media.pairs import read_pairs, write_pair
from edge_sdk.outputs import LOCK_NAME, lock_folder, output_folder, writing
from edge_sdk.runtime.align import AudioRing
from edge_sdk.runtime.frames import AudioBlock, Gap, VideoFrame

__all__ = ["record_pairs"]

log = logging.getLogger(__name__)


def record_pairs(
    out: str | Path,
    spec,
    video: str,
    audio: str | None = None,
    seconds: float = 30.0,
    every_ms: float = 250.0,
    min_rms: float = 1e-3,
    append: bool = False,
) -> dict:
    """Keep one pair every ``every_ms`` of source time for ``seconds``; windows quieter than
    ``min_rms`` are skipped (a calibration set of silence teaches the quantizer nothing).
    Ctrl-C ends the recording early, keeping what was recorded (``interrupted``: True); each
    pair file appears whole or not at all. ``append`` adds to the pairs already in ``out``
    (another room, another light), once one of them is checked against ``spec``; ``total``
    counts them all."""
    out = Path(out)
    with lock_folder(output_folder(out)):  # a second recording into it is refused
        first = _first_index(out, spec) if append else 0
        if not append and any(p.name != LOCK_NAME for p in out.iterdir()):
            raise DataError(f"{out} is not empty", "choose a new folder for the calibration set, or pass --append to add pairs to it")
        return _record(out, first, spec, video, audio, seconds, every_ms, min_rms)


def _record(out: Path, first: int, spec, video: str, audio: str | None, seconds: float, every_ms: float, min_rms: float) -> dict:
    """:func:`record_pairs`' work, with ``out`` locked."""
    sr, n, size = spec.audio.sample_rate, spec.audio.num_samples, (spec.image.height, spec.image.width)
    ring, frames = AudioRing(sr), queue.Queue(maxsize=8)
    counts = {"kept": 0, "silent": 0, "frames": 0, "faults": 0}
    sources = _open_sources(video, audio, sr)
    emit = _emitter(ring, frames, counts, every_ms, sources[-1].uri)  # the sound of --audio alone, when given
    for s in sources:
        s.start(emit)
    t_first, deadline = None, time.monotonic() + seconds + 30
    interrupted, next_note = False, time.monotonic() + 5
    try:
        while time.monotonic() < deadline:
            if time.monotonic() >= next_note:
                next_note += 5
                log.info("calibrate: %d pairs kept, %d silent windows skipped", counts["kept"], counts["silent"])
            try:
                f = frames.get(timeout=0.2)
            except queue.Empty:
                if sources[0].done or sources[0].error is not None:
                    break
                continue
            t_first = f.pts_ns if t_first is None else t_first
            if (f.pts_ns - t_first) / 1e9 > seconds:
                break
            ring.wait_until(f.pts_ns, 1.0)
            wave, _ = ring.window(f.pts_ns, n)
            if float(np.sqrt(np.mean(wave**2))) < min_rms:
                counts["silent"] += 1
                continue
            # renamed once whole: a kill mid-write leaves no half file, Ctrl-C no temporary one
            with writing(out, "--out"):
                write_pair(out / f"live_{first + counts['kept']:05d}.npz", wave, f.cut(size), sr)
            counts["kept"] += 1
    except KeyboardInterrupt:
        interrupted = True
        counts["kept"] = sum(_index(p) >= first for p in out.glob("live_*.npz"))  # an interrupt may fall between a rename and the count
    finally:
        for s in sources:
            s.stop()
    errors = [f"{s.uri}: {s.error}" for s in sources if s.error is not None]
    if errors and not counts["kept"]:
        raise DataError(f"no calibration pairs recorded ({'; '.join(errors)})", "check the source URIs (edge-sdk doctor lists devices)")
    log.info("calibrate: kept %d pairs, skipped %d silent windows", counts["kept"], counts["silent"])
    return {"out": str(out), **counts, "total": len(list(out.glob("*.npz"))), "errors": errors, "interrupted": interrupted}


def _emitter(ring: AudioRing, frames: queue.Queue, counts: dict, every_ms: float, sound_from: str):
    """The sources' ``emit``: the sound of source ``sound_from`` into ``ring``, a frame every
    ``every_ms`` into ``frames``, faults counted."""

    def emit(item) -> None:
        if isinstance(item, VideoFrame):
            counts["frames"] += 1
            if item.pts_ns - emit.last >= every_ms * 1e6:
                emit.last = item.pts_ns
                frames.put(item)  # a file waits here; a camera's extra frames were never queued
        elif isinstance(item, AudioBlock) and item.source == sound_from:  # not the video's own sound besides --audio
            ring.push(item)
        elif isinstance(item, Gap):
            counts["faults"] += 1

    emit.last = -(1 << 62)
    return emit


def _open_sources(video: str, audio: str | None, sr: int) -> list:
    """The video source, and the audio one if given; refused when no sound would come."""
    from edge_sdk.runtime.sources import open_source

    sources = [open_source(video, sample_rate=sr)] + ([open_source(audio, sample_rate=sr)] if audio else [])
    if audio is None and sources[0].kind == "video":  # a camera, or a file without sound: every window would be silent
        sources[0].stop()
        raise DataError(
            f"{video} has no audio track; calibration pairs need sound", "pass --audio mic://default or wav:///path, or a video file with sound"
        )
    return sources


def _index(path: Path) -> int:
    """The number in ``live_NNNNN.npz`` (-1 for another name)."""
    digits = path.stem.removeprefix("live_")
    return int(digits) if digits.isdigit() else -1


def _first_index(out: Path, spec) -> int:
    """The number the next appended pair takes, once the folder's pairs are checked to be
    calibration pairs for ``spec`` (sample rate, window, image size): a mixed set would only
    fail later, at quantization."""
    pairs = sorted(out.glob("*.npz")) if out.is_dir() else []
    if not pairs and out.is_dir() and any(p.name != LOCK_NAME for p in out.iterdir()):
        raise DataError(
            f"{out} holds no calibration pairs to append to", "choose a new folder, or one `edge-sdk calibrate` or `edge-sdk calib` wrote"
        )
    if pairs:
        read_pairs(pairs[-1:], spec)
    return 1 + max((_index(p) for p in pairs), default=-1)
