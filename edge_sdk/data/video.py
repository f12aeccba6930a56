"""A folder of real video clips with sound, as (frame, audio window) pairs for training and evaluation.

Point :class:`VideoFolderDataset` at a folder of ``.mp4 / .m4v / .mov / .mkv / .webm / .avi``
files (searched recursively, sorted). Each file is decoded once with PyAV; every kept video
frame becomes one item: the frame, centre-cropped to a square and resized to
``spec.image.size`` (from its YUV planes, as the runtime cuts it: :func:`av_square`), and
the ``spec.audio.num_samples`` of mono audio that END at the frame's presentation time.
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

import cv2
import numpy as np
import soxr

from edge_sdk.errors import DataError, EdgeSDKError
from edge_sdk.spec import ModelSpec

__all__ = ["VIDEO_EXTENSIONS", "decode_av", "audio_window", "center_crop_resize", "yuv420_square", "av_square", "VideoFolderDataset"]

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")
_GAP_S = 0.02  # audio pts jumps larger than this are filled with silence


def _shrink_square(sq: np.ndarray, size: int) -> np.ndarray:
    """An s x s image (any channels) to ``size`` x ``size``: exact 2x2 halvings while it stays at
    least ``size`` (OpenCV's INTER_AREA is fast only for an integer ratio), then area the rest
    of the way; a smaller square is enlarged bilinearly."""
    s = sq.shape[0]
    if s <= size:
        return np.ascontiguousarray(sq) if s == size else cv2.resize(sq, (size, size), interpolation=cv2.INTER_LINEAR)
    while s % 2 == 0 and s // 2 >= size:
        s //= 2
        sq = cv2.resize(sq, (s, s), interpolation=cv2.INTER_AREA)
    return sq if s == size else cv2.resize(sq, (size, size), interpolation=cv2.INTER_AREA)


def center_crop_resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop an HxWx3 image to a square, then resize it to ``size`` x ``size`` (area
    averaging when shrinking).

    The square is halved first (exact 2x2 averages) while it stays at least ``size``, then
    area-resized the rest of the way: 720 -> 96 px takes 0.24 ms instead of 1.1 ms in one
    step, within 8 levels (mean 0.2) of it (measured on the runtime benchmark's 720p clip;
    the runtime does this for every frame).
    """
    h, w = rgb.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return _shrink_square(rgb[y:y + s, x:x + s], size)


def _yuv_to_rgb(bt709: bool, full_range: bool) -> np.ndarray:
    """The 3x4 matrix taking (Y, U, V, 1) to (R, G, B): BT.601 or BT.709, limited (16-235) or
    full range -- swscale (PyAV's ``to_ndarray``) takes BT.601 unless the frame says BT.709."""
    kr, kb = (0.2126, 0.0722) if bt709 else (0.299, 0.114)
    kg = 1 - kr - kb
    sy, sc, y0 = (1.0, 1.0, 0.0) if full_range else (255 / 219, 255 / 224, 16.0)
    m = np.array([[sy, 0, 2 * (1 - kr) * sc, 0],
                  [sy, -2 * (1 - kb) * kb / kg * sc, -2 * (1 - kr) * kr / kg * sc, 0],
                  [sy, 2 * (1 - kb) * sc, 0, 0]])
    m[:, 3] = -y0 * m[:, 0] - 128 * (m[:, 1] + m[:, 2])
    return m.astype(np.float32)


_YUV_TO_RGB = {(bt709, full): _yuv_to_rgb(bt709, full) for bt709 in (False, True) for full in (False, True)}


def yuv420_square(y: np.ndarray, u: np.ndarray, v: np.ndarray, size: int, *, bt709: bool = False,
                  full_range: bool = False) -> np.ndarray:
    """What :func:`center_crop_resize` gives on the RGB conversion of a YUV 4:2:0 picture (its
    three uint8 planes, chroma at half width and height), without converting the whole
    picture: the centre squares of the planes are shrunk first and only ``size`` x ``size``
    pixels are converted. A 720p frame takes 0.37 instead of 1.0 ms (RGB conversion of the
    frame, then the crop), within a mean 1.2 levels of it (chroma is averaged before the
    conversion instead of after; measured on the runtime benchmark's clip and
    ``../shared/data/video``)."""
    h, w = y.shape
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    c0, c1, cs = y0 // 2, x0 // 2, s // 2
    yuv = cv2.merge([_shrink_square(y[y0:y0 + s, x0:x0 + s], size),
                     _shrink_square(u[c0:c0 + cs, c1:c1 + cs], size),
                     _shrink_square(v[c0:c0 + cs, c1:c1 + cs], size)])
    return cv2.transform(yuv, _YUV_TO_RGB[bool(bt709), bool(full_range)])  # rounds and saturates to uint8


YUV420 = ("yuv420p", "yuvj420p")  # PyAV frame formats :func:`av_square` cuts from the planes


def av_square(frame, size: int) -> np.ndarray:
    """A decoded PyAV video frame's centre square at ``size`` x ``size`` RGB uint8: from its
    YUV 4:2:0 planes (:func:`yuv420_square`, BT.709 when the frame says so, full range for
    ``yuvj420p``, as swscale would convert it), other formats through a whole RGB conversion."""
    if frame.format.name not in YUV420:
        return center_crop_resize(frame.to_ndarray(format="rgb24"), size)
    h, w, (py, pu, pv) = frame.height, frame.width, frame.planes
    y = np.frombuffer(py, np.uint8).reshape(-1, py.line_size)[:h, :w]
    u, v = (np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[:(h + 1) // 2, :(w + 1) // 2] for p in (pu, pv))
    return yuv420_square(y, u, v, size, bt709=frame.colorspace == 1, full_range=frame.format.name == "yuvj420p")


def decode_av(path, sample_rate: int, *, size: int | None = None, frame_step: int = 1,
              max_frames: int | None = None) -> tuple[list[tuple[float, np.ndarray]], np.ndarray, float]:
    """Decode a clip's first video and first audio stream.

    Returns ``(frames, audio, audio_start_s)``: ``frames`` is a list of ``(pts_s, rgb)`` with
    ``rgb`` HxWx3 uint8 (or ``size`` x ``size`` centre-cropped when ``size`` is given), every
    ``frame_step``-th frame, at most ``max_frames``; ``audio`` is float32 mono at
    ``sample_rate``; ``audio_start_s`` is the time of ``audio[0]`` (first audio frame pts,
    else the stream's ``start_time * time_base``). Raises :class:`DataError` naming the file.
    """
    try:
        import av
    except ImportError:
        raise EdgeSDKError("reading video files needs PyAV",
                           "pip install 'edge_sdk[live]' (or: pip install av)") from None
    path = Path(path)
    if frame_step < 1:
        raise DataError(f"frame_step must be >= 1, got {frame_step}", "pass frame_step=1 to keep every frame")
    frames: list[tuple[float, np.ndarray]] = []
    chunks: list[np.ndarray] = []
    rate = audio_start = None
    n_audio = n_video = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path} has no video track", "VideoFolderDataset needs video clips; "
                                "move audio-only files out of the folder")
            if not container.streams.audio:
                raise DataError(f"{path} has no audio track",
                                "VideoFolderDataset needs clips with sound; remove this file, "
                                "or pass skip_bad=True to skip files like it")
            vs, aus = container.streams.video[0], container.streams.audio[0]
            vs.thread_type = "AUTO"
            resampler = None
            last_pts = prev_t = None
            for packet in container.demux(vs, aus):
                if packet.stream is vs and last_pts is not None:
                    continue  # enough frames: only keep reading audio up to the last frame
                for frame in packet.decode():
                    if packet.stream is aus:
                        if resampler is None:
                            rate = frame.sample_rate
                            resampler = av.AudioResampler(format="fltp", rate=rate)  # planar float, same layout
                            audio_start = frame.time if frame.time is not None else float(
                                (aus.start_time or 0) * aus.time_base)
                        if frame.time is not None:  # fill real gaps in the track with silence
                            gap = int(round((frame.time - audio_start) * rate)) - n_audio
                            if gap > _GAP_S * rate:
                                chunks.append(np.zeros(gap, np.float32))
                                n_audio += gap
                        for out in resampler.resample(frame):
                            chunks.append(out.to_ndarray().mean(axis=0))
                            n_audio += chunks[-1].size
                        continue
                    t = frame.time
                    if t is None:  # no pts: step on from the previous frame at the nominal rate
                        fps = float(vs.average_rate or 25)
                        t = 0.0 if prev_t is None else prev_t + 1.0 / fps
                    prev_t = t
                    n_video += 1
                    if (n_video - 1) % frame_step:
                        continue
                    frames.append((float(t), frame.to_ndarray(format="rgb24") if size is None else av_square(frame, size)))
                    if max_frames is not None and len(frames) >= max_frames:
                        last_pts = float(t)
                if last_pts is not None and rate is not None and audio_start + n_audio / rate >= last_pts:
                    break
            if resampler is not None:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray().mean(axis=0))
    except av.FFmpegError as e:
        why = f"{e.__class__.__name__}: {getattr(e, 'strerror', None) or e}"
        raise DataError(f"{path} could not be decoded ({why})",
                        "check that the file plays in a media player; re-encode or remove it, "
                        "or pass skip_bad=True") from None
    if not frames:
        raise DataError(f"{path}: no video frames could be decoded",
                        "the file is empty or corrupt; re-encode or remove it")
    if not chunks:
        raise DataError(f"{path}: the audio track has no decodable samples",
                        "VideoFolderDataset needs clips with sound; re-encode or remove it")
    audio = np.concatenate(chunks).astype(np.float32, copy=False)
    if rate != sample_rate:
        audio = soxr.resample(audio, rate, sample_rate).astype(np.float32, copy=False)
    return frames, audio, float(audio_start)


def audio_window(audio: np.ndarray, audio_start_s: float, end_s: float, sample_rate: int,
                 num_samples: int) -> np.ndarray:
    """The ``num_samples`` of ``audio`` ending at time ``end_s``, zero-padded where outside the track."""
    end = int(round((end_s - audio_start_s) * sample_rate))
    start = end - num_samples
    out = np.zeros(num_samples, np.float32)
    lo, hi = max(start, 0), min(end, audio.size)
    if hi > lo:
        out[lo - start:hi - start] = audio[lo:hi]
    return out


class VideoFolderDataset:
    """Items ``dict(image=float32 [3,S,S] RGB 0..255, wave=float32 [num_samples], pts_s=float, path=str)``.

    ``wave`` is the audio window that ends at the frame's timestamp ``pts_s`` (zeros before
    the audio starts). Images are centre-cropped to a square, then resized to ``spec.image.size``.
    With ``skip_bad=True`` undecodable or silent files are logged and listed in
    ``self.skipped`` as ``(path, reason)`` instead of raising :class:`DataError`.
    """

    def __init__(self, root, spec: ModelSpec, frame_step: int = 1, max_frames_per_file: int | None = None,
                 skip_bad: bool = False):
        self.root = Path(root)
        self.spec = spec
        self.skipped: list[tuple[str, str]] = []
        if not self.root.is_dir():
            what = "is a file, not a folder" if self.root.exists() else "does not exist"
            raise DataError(f"video folder {self.root} {what}", "pass the folder that holds your video clips")
        self.files = sorted(p for p in self.root.rglob("*")
                            if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
        if not self.files:
            raise DataError(f"no video files in {self.root}",
                            f"add clips with sound ending in {', '.join(VIDEO_EXTENSIONS)} (searched recursively)")
        sr, size = spec.audio.sample_rate, spec.image.size
        self._clips: list[tuple[str, np.ndarray, float]] = []  # per usable file: (path, audio, audio_start_s)
        self._index: list[tuple[int, float, np.ndarray]] = []  # per item: (file no., pts_s, uint8 SxSx3)
        for path in self.files:
            try:
                frames, audio, start = decode_av(path, sr, size=size, frame_step=frame_step,
                                                 max_frames=max_frames_per_file)
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
            raise DataError(f"none of the {len(self.files)} video files in {self.root} could be used",
                            "; ".join(f"{Path(p).name}: {r}" for p, r in self.skipped) or "check the files")
        log.info("VideoFolderDataset %s: %d items from %d files (%d skipped)",
                 self.root, len(self._index), len(self._clips), len(self.skipped))

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} out of range for {len(self)} items")
        f, t, img = self._index[i]
        path, audio, start = self._clips[f]
        a = self.spec.audio
        return dict(image=img.transpose(2, 0, 1).astype(np.float32),
                    wave=audio_window(audio, start, t, a.sample_rate, a.num_samples),
                    pts_s=t, path=path)
