"""A folder of real video clips with sound, as (frame, audio window) pairs for training and evaluation.

Point :class:`VideoFolderDataset` at a folder of ``.mp4 / .m4v / .mov / .mkv / .webm / .avi``
files (searched recursively, sorted). Each file is decoded once with PyAV; every kept video
frame becomes one item: the frame, centre-cropped to the model's aspect and resized to its
``image.height`` x ``image.width`` (from its YUV planes, as the runtime cuts it:
:func:`~edge_sdk.media.image.av_square`), and the ``spec.audio.num_samples`` of mono audio
that END at the frame's presentation time (:func:`~edge_sdk.media.audio.audio_window`).
Alignment uses real timestamps (frame and audio pts), not frame counts, so variable frame
rates and audio that starts late are handled.

Audio is converted to planar float32 at the file's own rate (PyAV's resampler, format only),
downmixed to mono by averaging the channels (stays in [-1, 1]; swresample's downmix uses
0.707 gains), then resampled once to ``spec.audio.sample_rate`` with ``soxr`` (HQ).

Clips are decoded up front and kept in memory as uint8 frames of the model's size
(about 27 KB per kept frame at 96 px); use ``frame_step`` / ``max_frames_per_file`` for
long clips. PyAV is imported only when decoding (``pip install 'edge_sdk[live]'``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edge_sdk.errors import DataError, EdgeSDKError
from edge_sdk.media.audio import AudioTrack, audio_window
from edge_sdk.media.image import av_square

__all__ = ["VIDEO_EXTENSIONS", "decode_av", "decode_audio", "VideoFolderDataset"]

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")


def decode_av(
    path, sample_rate: int, *, size=None, frame_step: int = 1, max_frames: int | None = None
) -> tuple[list[tuple[float, np.ndarray]], np.ndarray, float]:
    """Decode a clip's first video and first audio stream.

    Returns ``(frames, audio, audio_start_s)``: ``frames`` is a list of ``(pts_s, rgb)`` with
    ``rgb`` HxWx3 uint8 (or centre-cropped to ``size``, a side or (height, width), when given), every
    ``frame_step``-th frame, at most ``max_frames``; ``audio`` is float32 mono at
    ``sample_rate``; ``audio_start_s`` is the time of ``audio[0]`` (first audio frame pts,
    else the stream's ``start_time * time_base``). Raises :class:`DataError` naming the file.
    """
    try:
        import av
    except ImportError:
        raise EdgeSDKError("reading video files needs PyAV", "pip install 'edge_sdk[live]' (or: pip install av)") from None
    path = Path(path)
    if frame_step < 1:
        raise DataError(f"frame_step must be >= 1, got {frame_step}", "pass frame_step=1 to keep every frame")
    frames: list[tuple[float, np.ndarray]] = []
    chunks: list[np.ndarray] = []
    track, n_video = None, 0
    try:
        with av.open(str(path)) as container:
            vs, aus = _streams(container, path)
            last_pts = prev_t = None
            for packet in container.demux(vs, aus):
                if packet.stream is vs and last_pts is not None:
                    continue  # enough frames: only keep reading audio up to the last frame
                for frame in packet.decode():
                    if packet.stream is aus:
                        track = track or AudioTrack(av, frame, aus, sample_rate)
                        chunks.append(track.push(frame))
                        continue
                    t = frame.time
                    if t is None:  # no pts: step on from the previous frame at the nominal rate
                        t = 0.0 if prev_t is None else prev_t + 1.0 / float(vs.average_rate or 25)
                    prev_t, n_video = t, n_video + 1
                    if (n_video - 1) % frame_step == 0:
                        frames.append((float(t), frame.to_ndarray(format="rgb24") if size is None else av_square(frame, size)))
                        if max_frames is not None and len(frames) >= max_frames:
                            last_pts = float(t)
                if last_pts is not None and track is not None and track.time_in() >= last_pts:
                    break
            if track is not None:
                chunks.append(track.push(None))
    except av.FFmpegError as e:
        why = f"{e.__class__.__name__}: {getattr(e, 'strerror', None) or e}"
        raise DataError(
            f"{path} could not be decoded ({why})", "check that the file plays in a media player; re-encode or remove it, or pass skip_bad=True"
        ) from None
    if not frames:
        raise DataError(f"{path}: no video frames could be decoded", "the file is empty or corrupt; re-encode or remove it")
    audio = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    if not audio.size:
        raise DataError(f"{path}: the audio track has no decodable samples", "VideoFolderDataset needs clips with sound; re-encode or remove it")
    return frames, audio, float(track.start)


def decode_audio(path, sample_rate: int) -> np.ndarray:
    """A file's first audio track (any container PyAV reads: wav, mp3, flac, a video's sound) as
    float32 mono at ``sample_rate``; DataError naming the file when it has none."""
    try:
        import av
    except ImportError:
        raise EdgeSDKError("reading sound files needs PyAV", "pip install 'edge_sdk[live]' (or: pip install av)") from None
    path, chunks, track = Path(path), [], None
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise DataError(f"{path} has no audio track", "give sound files (wav, mp3, flac, ...) or videos with sound")
            stream = container.streams.audio[0]
            for frame in container.decode(stream):
                track = track or AudioTrack(av, frame, stream, sample_rate)
                chunks.append(track.push(frame))
            if track is not None:
                chunks.append(track.push(None))
    except av.FFmpegError as e:
        raise DataError(f"{path} could not be decoded ({type(e).__name__}: {e})", "re-encode or remove it") from None
    return np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)


def _streams(container, path: Path):
    """The first video and audio streams of an open container; a DataError naming what is missing."""
    if not container.streams.video:
        raise DataError(f"{path} has no video track", "VideoFolderDataset needs video clips; move audio-only files out of the folder")
    if not container.streams.audio:
        raise DataError(
            f"{path} has no audio track", "VideoFolderDataset needs clips with sound; remove this file, or pass skip_bad=True to skip files like it"
        )
    container.streams.video[0].thread_type = "AUTO"
    return container.streams.video[0], container.streams.audio[0]


class VideoFolderDataset:
    """Items ``dict(image=float32 [3,S,S] RGB 0..255, wave=float32 [num_samples], pts_s=float, path=str)``.

    ``wave`` is the audio window that ends at the frame's timestamp ``pts_s`` (zeros before
    the audio starts). Images are centre-cropped to the model's aspect, then resized to its
    ``image.height`` x ``image.width`` (``spec``: a model contract, or a registry spec: the same input fields).
    With ``skip_bad=True`` undecodable or silent files are logged and listed in
    ``self.skipped`` as ``(path, reason)`` instead of raising :class:`DataError`.
    """

    def __init__(self, root, spec, frame_step: int = 1, max_frames_per_file: int | None = None, skip_bad: bool = False):
        self.root = Path(root)
        self.spec = spec
        self.skipped: list[tuple[str, str]] = []
        if not self.root.is_dir():
            what = "is a file, not a folder" if self.root.exists() else "does not exist"
            raise DataError(f"video folder {self.root} {what}", "pass the folder that holds your video clips")
        self.files = sorted(p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
        if not self.files:
            raise DataError(f"no video files in {self.root}", f"add clips with sound ending in {', '.join(VIDEO_EXTENSIONS)} (searched recursively)")
        sr, size = spec.audio.sample_rate, (spec.image.height, spec.image.width)
        self._clips: list[tuple[str, np.ndarray, float]] = []  # per usable file: (path, audio, audio_start_s)
        self._index: list[tuple[int, float, np.ndarray]] = []  # per item: (file no., pts_s, uint8 SxSx3)
        for path in self.files:
            try:
                frames, audio, start = decode_av(path, sr, size=size, frame_step=frame_step, max_frames=max_frames_per_file)
            except DataError as e:
                if not skip_bad:
                    raise
                log.warning("skipping %s: %s", path, e.problem)
                self.skipped.append((str(path), e.problem))
                continue
            self._clips.append((str(path), audio, start))
            self._index += [(len(self._clips) - 1, t, img) for t, img in frames]
            log.debug("%s: %d frames, %.2f s of audio from %.3f s", path.name, len(frames), audio.size / sr, start)
        if not self._index:
            raise DataError(
                f"none of the {len(self.files)} video files in {self.root} could be used",
                "; ".join(f"{Path(p).name}: {r}" for p, r in self.skipped) or "check the files",
            )
        log.info("VideoFolderDataset %s: %d items from %d files (%d skipped)", self.root, len(self._index), len(self._clips), len(self.skipped))

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} out of range for {len(self)} items")
        f, t, img = self._index[i]
        path, audio, start = self._clips[f]
        a = self.spec.audio
        return dict(
            image=img.transpose(2, 0, 1).astype(np.float32), wave=audio_window(audio, start, t, a.sample_rate, a.num_samples), pts_s=t, path=path
        )
