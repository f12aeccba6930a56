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
from edge_sdk.media.pairs import MIN_CLIPS, hash_files, read_pairs, write_pair
from edge_sdk.spec import ModelSpec

__all__ = ["CalibSet", "load_calib_set", "write_calib_set"]


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


def write_calib_set(
    out: str | Path, spec: ModelSpec, n: int = 256, fsdd=None, mnist=None, seed: int = 11, test_speakers: tuple[str, ...] = ("george",)
) -> Path:
    """Write ``n`` AV-Digits *training* scenes (never test speakers or images) as .npz pairs."""
    from edge_sdk.media.avdigits import AVDigits
    from edge_sdk.media.digits import load_bank, synthetic_bank

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out} is not empty", "choose a new folder for the calibration set")
    sr = spec.audio.sample_rate
    bank = load_bank(fsdd, mnist, "train", sr, tuple(test_speakers)) if fsdd and mnist else synthetic_bank("train", sr)
    ds = AVDigits(bank, spec, n, seed=seed, train=False)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        it = ds[i]
        write_pair(out / f"scene_{i:05d}.npz", it["wave"].astype(np.float32), it["image"].transpose(1, 2, 0).astype(np.uint8), sr)
    return out


def load_calib_set(folder: str | Path, spec: ModelSpec, min_clips: int = MIN_CLIPS, max_pairs: int = 512) -> CalibSet:
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


def _read_videos(root: Path, spec: ModelSpec, max_pairs: int) -> tuple[np.ndarray, np.ndarray]:
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
    if not items:
        return np.zeros((0, spec.audio.num_samples), np.float32), np.zeros((0, 3, spec.image.size, spec.image.size), np.float32)
    return np.stack([it["wave"] for it in items]), np.stack([it["image"] for it in items])
