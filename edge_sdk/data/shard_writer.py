"""Write a folder of clips as WebDataset tar shards (``edge-sdk shard``), once, for training at scale.

Each clip is decoded once with PyAV and stored as the model contract needs it, so training
never decodes a video again:

- the audio track, mono, resampled to the contract's ``audio.sample_rate`` (soxr HQ, as
  :class:`~edge_sdk.media.audio.AudioTrack` does for every stage), as 16-bit PCM WAV;
- frames at a fixed rate (``fps``; sample-and-hold from the decoded timestamps, so variable
  frame rates come out even), centre-cropped to the contract's aspect and resized to its
  ``image.height`` x ``image.width`` from the YUV planes as the runtime cuts them
  (:func:`~edge_sdk.media.image.av_square`), as JPEG.

A long clip is cut into pieces of at most ``max_clip_seconds`` (each piece keeps one audio
window of sound before its first frame, so its first windows are whole). The WebDataset
layout, one sample per piece, key ``NNNNNNNN``: ``KEY.json`` (source, piece, fps, first frame
time, frames, audio start, sample rate), ``KEY.wav``, ``KEY.00000.jpg`` ... Shards are named
``shard-000000.tar`` and written whole or not at all; ``index.json`` lists every shard (bytes,
sha256, its clips with frames and seconds), the totals, the contract the shards were cut for,
and the clips that were skipped with the reason (undecodable, no sound, no video).

References: WebDataset (Breuel et al., https://github.com/webdataset/webdataset), the tar
layout large-scale A/V pretraining reads (e.g. OpenCLIP, VGGSound / AudioSet pipelines).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_sdk.data.video import VIDEO_EXTENSIONS
from edge_sdk.errors import DataError, EdgeSDKError
from edge_sdk.media.audio import AudioTrack
from edge_sdk.media.image import av_square
from edge_sdk.outputs import atomic_path, atomic_write_text, fresh_folder

__all__ = ["INDEX_NAME", "FORMAT", "ShardOptions", "DecodedClip", "decode_clip", "write_shards", "find_videos"]

log = logging.getLogger(__name__)

INDEX_NAME = "index.json"
FORMAT = "edge_sdk.shards/1"


@dataclass(frozen=True)
class ShardOptions:
    """How clips are cut into shards: frames per second kept, JPEG quality, the longest piece of
    a clip, and when a shard is full (``clips_per_shard`` clips, or ``shard_mb`` megabytes)."""

    fps: float = 10.0
    jpeg_quality: int = 90
    max_clip_seconds: float = 60.0
    clips_per_shard: int = 0  # 0: no limit, shard_mb decides
    shard_mb: float = 256.0

    def check(self) -> None:
        rules = (
            (0.5 <= self.fps <= 120, "--fps", self.fps, "0.5..120"),
            (10 <= self.jpeg_quality <= 100, "--jpeg-quality", self.jpeg_quality, "10..100"),
            (self.max_clip_seconds >= 1, "--max-clip-seconds", self.max_clip_seconds, ">= 1"),
            (self.clips_per_shard >= 0, "--clips-per-shard", self.clips_per_shard, ">= 0 (0: no limit)"),
            (self.shard_mb >= 1, "--shard-mb", self.shard_mb, ">= 1"),
        )
        for ok, flag, value, want in rules:
            if not ok:
                raise EdgeSDKError(f"{flag} {value} is out of range", f"use {flag} {want}")


@dataclass
class DecodedClip:
    """One decoded clip: JPEG frames at ``fps`` from time ``t0``, mono audio at ``sample_rate`` from ``audio_start``."""

    jpegs: list[bytes]
    t0: float
    fps: float
    audio: np.ndarray
    audio_start: float
    sample_rate: int


def find_videos(root: Path) -> list[Path]:
    """The clips of a folder (searched recursively, sorted); a DataError when it is not a folder or holds none."""
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise DataError(f"--videos {root} {what}", "pass the folder that holds your video clips")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if not files:
        raise DataError(f"no video files in {root}", f"add clips with sound ending in {', '.join(VIDEO_EXTENSIONS)} (searched recursively)")
    return files


def _jpeg(rgb: np.ndarray, quality: int) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
        raise DataError("a frame could not be encoded as JPEG", "check the OpenCV install (edge-sdk doctor)")
    return buf.tobytes()


class _FixedRate:
    """Sample-and-hold of decoded frames onto the times ``t0 + k / fps``: a frame is shown until the next one starts."""

    def __init__(self, fps: float, size, quality: int):
        self.fps, self.size, self.quality = fps, size, quality
        self.t0 = None
        self.prev = None  # (time, PyAV frame) not yet placed
        self.jpegs: list[bytes] = []

    def push(self, t: float, frame) -> None:
        if self.t0 is None:
            self.t0 = t
        if self.prev is not None:
            self._place(self.prev[1], until=t)
        self.prev = (t, frame)

    def _place(self, frame, until: float) -> None:
        """Frame ``frame`` holds every target time before ``until``."""
        n = int(np.ceil((until - self.t0) * self.fps - 1e-6))
        if n > len(self.jpegs):
            jpeg = _jpeg(av_square(frame, self.size), self.quality)
            self.jpegs += [jpeg] * (n - len(self.jpegs))

    def finish(self, frame_s: float) -> None:
        if self.prev is not None:
            self._place(self.prev[1], until=self.prev[0] + frame_s)
            self.prev = None


def decode_clip(path, sample_rate: int, size, fps: float, quality: int = 90) -> DecodedClip:
    """Decode ``path``'s first video and audio streams into :class:`DecodedClip` (frames ``size``: (height, width));
    a DataError naming the file when it cannot be used."""
    try:
        import av
    except ImportError:
        raise EdgeSDKError("reading video files needs PyAV", "pip install 'edge_sdk[live]' (or: pip install av)") from None
    path = Path(path)
    frames, chunks, track = _FixedRate(fps, size, quality), [], None
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path} has no video track", "shard clips with pictures and sound; move audio-only files out")
            if not container.streams.audio:
                raise DataError(f"{path} has no audio track", "shard clips with sound; remove this file")
            vs, aus = container.streams.video[0], container.streams.audio[0]
            vs.thread_type = "AUTO"
            frame_s, prev_t = 1.0 / float(vs.average_rate or 25), None
            for packet in container.demux(vs, aus):
                for frame in packet.decode():
                    if packet.stream is aus:
                        track = track or AudioTrack(av, frame, aus, sample_rate)
                        chunks.append(track.push(frame))
                        continue
                    t = frame.time if frame.time is not None else (0.0 if prev_t is None else prev_t + frame_s)
                    if prev_t is None or t > prev_t:  # a repeated or backwards timestamp adds no new picture
                        frames.push(float(t), frame)
                        prev_t = t
            frames.finish(frame_s)
            if track is not None:
                chunks.append(track.push(None))
    except av.FFmpegError as e:
        raise DataError(f"{path} could not be decoded ({type(e).__name__}: {getattr(e, 'strerror', None) or e})", "re-encode or remove it") from None
    if not frames.jpegs:
        raise DataError(f"{path}: no video frames could be decoded", "the file is empty or corrupt; re-encode or remove it")
    audio = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    if not audio.size:
        raise DataError(f"{path}: the audio track has no decodable samples", "shard clips with sound; re-encode or remove it")
    return DecodedClip(frames.jpegs, frames.t0, fps, audio, float(track.start), sample_rate)


def _wav(audio: np.ndarray, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes((np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes())
    return buf.getvalue()


def _pieces(clip: DecodedClip, source: str, max_s: float, window_s: float):
    """The clip cut into samples of at most ``max_s`` seconds: (meta, wav bytes, jpegs)."""
    per = max(1, int(round(max_s * clip.fps)))
    for p, first in enumerate(range(0, len(clip.jpegs), per)):
        jpegs = clip.jpegs[first : first + per]
        t0 = clip.t0 + first / clip.fps
        t_end = clip.t0 + (first + len(jpegs) - 1) / clip.fps
        lo = max(0, int(np.floor((t0 - window_s - clip.audio_start) * clip.sample_rate)))
        hi = max(lo, min(clip.audio.size, int(np.ceil((t_end - clip.audio_start) * clip.sample_rate)) + 1))
        meta = {
            "source": source,
            "piece": p,
            "fps": clip.fps,
            "t0": round(t0, 6),
            "frames": len(jpegs),
            "audio_start": round(clip.audio_start + lo / clip.sample_rate, 9),
            "sample_rate": clip.sample_rate,
            "audio_samples": hi - lo,
        }
        yield meta, _wav(clip.audio[lo:hi], clip.sample_rate), jpegs


class _ShardFiles:
    """Shards written one after another into ``out``, each whole or not at all; the index rows."""

    def __init__(self, out: Path, opts: ShardOptions):
        self.out, self.opts = out, opts
        self.rows: list[dict] = []
        self._open = None  # (atomic_path context, tmp path, TarWriter, row)

    def add(self, key: str, meta: dict, wav: bytes, jpegs: list[bytes]) -> None:
        size = len(wav) + sum(len(j) for j in jpegs) + 512 * (len(jpegs) + 3)
        if self._open is not None:
            row = self._open[3]
            full = self.opts.clips_per_shard and len(row["clips"]) >= self.opts.clips_per_shard
            if full or row["bytes"] + size > self.opts.shard_mb * 1e6:
                self.close()
        if self._open is None:
            self._start()
        sample = {"__key__": key, "json": json.dumps(meta, sort_keys=True).encode(), "wav": wav}
        sample.update({f"{k:05d}.jpg": j for k, j in enumerate(jpegs)})
        self._open[2].write(sample)
        row = self._open[3]
        row["bytes"] += size
        row["clips"].append({"key": key, "source": meta["source"], "piece": meta["piece"], "frames": meta["frames"],
                             "seconds": round(meta["frames"] / meta["fps"], 3)})  # fmt: skip

    def _start(self) -> None:
        from webdataset import TarWriter

        name = f"shard-{len(self.rows):06d}.tar"
        ctx = atomic_path(self.out / name, "--out")
        tmp = ctx.__enter__()
        self._open = (
            ctx,
            tmp,
            TarWriter(str(tmp), encoder=False, mtime=0.0, user="edge_sdk", group="edge_sdk"),
            {"name": name, "bytes": 0, "clips": []},
        )

    def close(self) -> None:
        if self._open is None:
            return
        ctx, tmp, writer, row = self._open
        self._open = None
        try:
            writer.close()
            row["bytes"], row["sha256"] = tmp.stat().st_size, _sha256(tmp)
        except BaseException as e:
            ctx.__exit__(type(e), e, e.__traceback__)
            raise
        ctx.__exit__(None, None, None)
        self.rows.append(row)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def write_shards(videos, out, contract, opts: ShardOptions | None = None, progress: bool = True, jobs: int = 1) -> dict:
    """Shard every clip under ``videos`` into the new folder ``out`` for ``contract`` (a model contract or a
    registry spec: its audio sample rate and window, image height and width); the index as a dict.

    Bad clips are skipped and listed (``index["skipped"]``); a DataError when none could be used
    (then ``out`` is left as it was). ``jobs`` > 1 decodes that many clips at once (processes);
    the shards are the same either way."""
    opts = opts or ShardOptions()
    opts.check()
    root = Path(videos)
    files = find_videos(root)
    size = (contract.image.height, contract.image.width)
    sr, window_s = contract.audio.sample_rate, contract.audio.num_samples / contract.audio.sample_rate
    started, skipped, n_clips, seconds = time.time(), [], 0, 0.0
    with fresh_folder(out, "--out") as folder:
        shards = _ShardFiles(folder, opts)
        bar = _bar(len(files), progress)
        try:
            for path, result in _decoded(files, sr, size, opts, jobs):
                if isinstance(result, str):
                    log.warning("skipping %s: %s", path, result)
                    skipped.append({"path": str(path.relative_to(root)), "reason": result})
                else:
                    for meta, wav, jpegs in _pieces(result, str(path.relative_to(root)), opts.max_clip_seconds, window_s):
                        shards.add(f"{n_clips:08d}", meta, wav, jpegs)
                        n_clips, seconds = n_clips + 1, seconds + meta["frames"] / opts.fps
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(hours=f"{seconds / 3600:.2f}", skipped=len(skipped), shards=len(shards.rows) + 1)
            shards.close()
        finally:
            if bar is not None:
                bar.close()
        if not shards.rows:
            reasons = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3])
            raise DataError(f"none of the {len(files)} clips in {root} could be used ({reasons})", "shard clips that have both pictures and sound")
        index = _index(shards.rows, contract, opts, skipped, files, time.time() - started)
        atomic_write_text(folder / INDEX_NAME, json.dumps(index, indent=1))
    return index


def _bar(total: int, progress: bool):
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="shard", unit="clip", dynamic_ncols=True)


def _decoded(files: list[Path], sr: int, size, opts: ShardOptions, jobs: int):
    """(path, DecodedClip or why it is skipped) for every file, in order."""
    args = [(p, sr, size, opts.fps, opts.jpeg_quality) for p in files]
    if jobs <= 1:
        yield from (_decode_or_error(a) for a in args)
        return
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs) as pool:  # in order, at most 2 x jobs decoded clips waiting: memory stays bounded
        pending = deque()
        for a in args:
            pending.append(pool.submit(_decode_or_error, a))
            if len(pending) >= 2 * jobs:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _decode_or_error(args) -> tuple[Path, DecodedClip | str]:
    path = args[0]
    try:
        return path, decode_clip(*args)
    except DataError as e:  # a reason, not the exception: it crosses process boundaries
        return path, e.problem


def _index(rows: list[dict], contract, opts: ShardOptions, skipped: list[dict], files: list[Path], seconds_taken: float) -> dict:
    frames = sum(c["frames"] for r in rows for c in r["clips"])
    a, i = contract.audio, contract.image
    return {
        "format": FORMAT,
        "contract": {"sample_rate": a.sample_rate, "window_samples": a.num_samples, "height": i.height, "width": i.width},
        "options": {"fps": opts.fps, "jpeg_quality": opts.jpeg_quality, "max_clip_seconds": opts.max_clip_seconds},
        "totals": {
            "files": len(files),
            "used": len(files) - len(skipped),
            "skipped": len(skipped),
            "clips": sum(len(r["clips"]) for r in rows),
            "frames": frames,
            "hours": round(frames / opts.fps / 3600, 4),
            "shards": len(rows),
            "bytes": sum(r["bytes"] for r in rows),
            "seconds_taken": round(seconds_taken, 2),
        },
        "shards": rows,
        "skipped": skipped,
    }
