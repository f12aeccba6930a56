"""Calibration sets: real audio-visual pairs that INT8 ranges are measured on.

A calibration set is a folder. Two kinds are read:

- ``.npz`` pairs (what ``edge-sdk calib`` writes from AV-Digits training scenes, and what
  the runtime records live): each file holds ``wave`` (float32 mono in [-1, 1]),
  ``image`` (uint8 H x W x 3 RGB) and ``sample_rate`` (the format is
  :mod:`edge_sdk.media.pairs`);
- video files with sound (mp4, webm, mkv, ...), decoded into (frame, audio window) pairs
  with :class:`~edge_sdk.data.video.VideoFolderDataset`.

The set's hash (sha256 over file names and bytes, in sorted order) is recorded with every
quantized model, so a result can be traced to the exact data it was calibrated on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_sdk.errors import DataError
from edge_sdk.media.image import still_stack
from edge_sdk.media.pairs import MIN_CLIPS, hash_files, read_pairs, write_pair
from edge_sdk.outputs import LOCK_NAME, fresh_folder, writing

__all__ = ["CalibSet", "load_calib_set", "write_calib_set", "write_clip_pairs", "write_folder_pairs"]


@dataclass
class CalibSet:
    waves: np.ndarray  # [n, num_samples] float32
    images: np.ndarray  # [n, 3, S, S] float32 in [0, 255]
    sha256: str
    source: str

    def __len__(self) -> int:
        return len(self.waves)

    def describe(self) -> dict:
        return {"source": self.source, "pairs": len(self), "sha256": self.sha256}


def write_calib_set(out: str | Path, spec, n: int = 256, fsdd=None, mnist=None, seed: int = 11, test_speakers: tuple[str, ...] = ("george",)) -> Path:
    """Write ``n`` AV-Digits *training* scenes (never test speakers or images) as .npz pairs; for
    a model that takes a stack of frames, the stacks of pulsing clips (:mod:`edge_sdk.media.avclips`)
    with the sound that ends at their last frame, so the stem's temporal channels are calibrated
    on motion, not on stills."""
    from edge_sdk.media.avclips import AVDigitClips
    from edge_sdk.media.avdigits import AVDigits
    from edge_sdk.media.digits import load_bank, synthetic_bank

    out = Path(out)
    if out.is_dir() and any(p.name != LOCK_NAME for p in out.iterdir()):
        raise DataError(f"{out} is not empty", "choose a new folder for the calibration set")
    sr = spec.audio.sample_rate
    bank = load_bank(fsdd, mnist, "train", sr, tuple(test_speakers)) if fsdd and mnist else synthetic_bank("train", sr)
    stack = int(getattr(spec.image, "frames", 1)) > 1
    ds = AVDigitClips(bank, spec, n, k=2, seed=seed, train=False) if stack else AVDigits(bank, spec, n, seed=seed, train=False)
    with fresh_folder(out, "--out"):  # locked while written; removed again if writing fails (a full disk, Ctrl-C)
        for i in range(n):
            it = ds[i]
            image = np.moveaxis(it["image"], -3, -1).astype(np.uint8)  # [H, W, 3] or [T, H, W, 3]
            with writing(out, "--out"):
                write_pair(out / f"scene_{i:05d}.npz", it["wave"].astype(np.float32), image, sr)
    return out


def _write_pairs(out: Path, pairs, sample_rate: int, prefix: str) -> Path:
    """``(wave, image HxWx3 uint8)`` pairs into the new folder ``out`` as .npz files, atomically each."""
    if out.is_dir() and any(p.name != LOCK_NAME for p in out.iterdir()):
        raise DataError(f"{out} is not empty", "choose a new folder for the calibration set")
    with fresh_folder(out, "--out"):  # locked while written; removed again if writing fails (a full disk, Ctrl-C)
        for i, (wave, image) in enumerate(pairs):
            with writing(out, "--out"):
                write_pair(out / f"{prefix}_{i:05d}.npz", np.asarray(wave, np.float32), np.asarray(image, np.uint8), sample_rate)
    return out


def write_clip_pairs(out: str | Path, contract, videos: str | Path, n: int = 256) -> Path:
    """``n`` pairs cut from a folder of the user's clips with sound, evenly over them, at the model
    contract's sizes: each frame with the window of sound that ends at it (as the runtime cuts them)."""
    waves, images = _read_videos(Path(videos), contract, n)
    if not len(waves):
        raise DataError(f"{videos}: no frames with sound could be cut", "give a folder of video files with an audio track")
    return _write_pairs(Path(out), zip(waves, images.transpose(0, 2, 3, 1).astype(np.uint8)), contract.audio.sample_rate, "clip")


def write_folder_pairs(out: str | Path, contract, images: str | Path, sounds: str | Path, n: int = 256) -> Path:
    """``n`` pairs from a folder of images and a folder of sounds (any file PyAV reads): each
    image, cut to the contract's size, with a window of sound; both are walked evenly, so a
    set of few of one and many of the other still covers both."""
    import cv2

    from edge_sdk.media.image import center_crop_resize

    pictures = sorted(p for p in Path(images).rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp"))
    windows = _sound_windows(Path(sounds), contract)
    if not pictures or not len(windows):
        raise DataError(f"calibration needs images in {images} and sounds in {sounds}", "give a folder of .png/.jpg images and one of audio files")
    size = (contract.image.height, contract.image.width)
    picked = [(windows[i * len(windows) // n], pictures[i * len(pictures) // n]) for i in range(n)]
    pairs = []
    for wave, path in picked:
        bgr = cv2.imread(str(path))
        if bgr is None:
            raise DataError(f"{path}: not a readable image", "remove it or convert it to PNG/JPEG")
        pairs.append((wave, center_crop_resize(bgr[:, :, ::-1], size)))
    return _write_pairs(Path(out), pairs, contract.audio.sample_rate, "pair")


def _sound_windows(root: Path, contract) -> np.ndarray:
    """Every window of the contract's length, half a window apart, from the sound files under ``root``."""
    from edge_sdk.data.video import decode_audio

    sr, n = contract.audio.sample_rate, contract.audio.num_samples
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        audio = decode_audio(path, sr)
        audio = np.pad(audio, (0, max(0, n - len(audio))))
        out += [audio[s : s + n] for s in range(0, len(audio) - n + 1, max(1, n // 2))]
    return np.stack(out) if out else np.zeros((0, n), np.float32)


def load_calib_set(folder: str | Path, spec, min_clips: int = MIN_CLIPS, max_pairs: int = 512) -> CalibSet:
    """Read and check a calibration folder against the model's preprocessing contract."""
    from edge_sdk.data.video import VIDEO_EXTENSIONS

    root = Path(folder)
    if not root.is_dir():
        raise DataError(
            f"calibration folder {root} does not exist", "create one with `edge-sdk calib --out DIR` or pass a folder of clips with sound"
        )
    npz = sorted(root.glob("*.npz"))
    videos = sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
    if npz:
        files = _spread(npz, max_pairs)  # evenly over the set: pairs appended later (another room, another day) count too
        waves, images = read_pairs(files, spec)
        source = f"{root} ({len(npz)} .npz pairs)" if len(files) == len(npz) else f"{root} ({len(files)} of {len(npz)} .npz pairs, evenly spaced)"
    elif videos:
        waves, images = _read_videos(root, spec, max_pairs)
        files, source = videos, f"{root} ({len(videos)} video files)"
    else:
        raise DataError(
            f"calibration folder {root} holds no .npz pairs or video files",
            f"put at least {min_clips} pairs there (`edge-sdk calib --out {root}`) or clips with sound",
        )
    if len(waves) < min_clips:
        raise DataError(
            f"calibration set {root} has {len(waves)} pairs; at least {min_clips} are needed",
            "add pairs (`edge-sdk calib --n 256 --out DIR`) or longer clips",
        )
    return CalibSet(np.ascontiguousarray(waves), np.ascontiguousarray(images), hash_files(files, root), source)


def _spread(files: list[Path], n: int) -> list[Path]:
    """At most ``n`` of ``files``, evenly spaced, in order."""
    return files if len(files) <= n else [files[i * len(files) // n] for i in range(n)]


def _read_videos(root: Path, spec, max_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    from edge_sdk.data.video import VideoFolderDataset

    try:
        ds = VideoFolderDataset(root, spec)
    except DataError as e:
        raise DataError(
            f"calibration folder {root}: {e.problem}",
            "calibration clips need pictures and sound: remove or re-encode that file, or use .npz pairs (edge-sdk calib)",
        ) from None
    idx = np.linspace(0, len(ds) - 1, min(max_pairs, len(ds))).astype(int) if len(ds) else []
    items = [ds[int(i)] for i in idx]
    frames = int(getattr(spec.image, "frames", 1))  # a model that sees time: each frame as a still stack
    if not items:
        return np.zeros((0, spec.audio.num_samples), np.float32), still_stack(
            np.zeros((0, 3, spec.image.height, spec.image.width), np.float32), frames
        )
    return np.stack([it["wave"] for it in items]), still_stack(np.stack([it["image"] for it in items]), frames)
