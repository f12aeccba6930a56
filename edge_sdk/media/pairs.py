"""The calibration pair file: one (frame, audio window) pair as a model takes it, in one
``.npz`` -- ``wave`` (float32 mono in [-1, 1], the model's window), ``image`` (uint8 H x W x 3
RGB at the model's size) and ``sample_rate``. ``edge-sdk calib`` writes them from AV-Digits
training scenes and ``edge-sdk calibrate`` records them live on the target device
(:func:`write_pair`, atomically); INT8 calibration reads them (:func:`read_pairs`) and
records the set's hash (:func:`hash_files`) with every quantized model.

Reading a folder of pairs or of video clips into a calibration set is
:func:`edge_sdk.quant.calib.load_calib_set`. numpy only; no torch.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from edge_sdk.errors import DataError
from edge_sdk.media.image import still_stack

__all__ = ["MIN_CLIPS", "read_pairs", "write_pair", "hash_files"]

MIN_CLIPS = 32  # fewer pairs give unstable activation ranges (percentile/entropy need a histogram)


def write_pair(path: str | Path, wave: np.ndarray, image: np.ndarray, sample_rate: int) -> Path:
    """Write one pair to ``path`` (``.npz``; ``wave`` stored as float32, ``image`` as uint8),
    whole or not at all: into ``path.tmp`` in the same folder, renamed over ``path`` once
    written, so a kill mid-write leaves no half file and an error or Ctrl-C no temporary one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:  # a file object: np.savez adds no ".npz" to the temporary name
            np.savez(fh, wave=np.asarray(wave, np.float32), image=np.asarray(image, np.uint8), sample_rate=np.int64(sample_rate))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def hash_files(files: list[Path], root: Path) -> str:
    """sha256 over the files' names (relative to ``root``) and bytes, in sorted order."""
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()


def read_pairs(files: list[Path], contract) -> tuple[np.ndarray, np.ndarray]:
    """Read pair files, checked against the model's contract (sample rate, window, image size,
    finite values, images in 0..255) -> (waves [n, num_samples] float32, images [n, 3, S, S]
    float32). ``contract``: a :class:`~edge_sdk.contract.ModelContract` (or a registry spec, with
    the same input fields). For a model that takes T frames per input, a pair holds a stack
    [T, H, W, 3] (``edge-sdk calib`` writes clips' stacks) or one frame, seen as a still stack;
    images are then [n, T, 3, S, S]. Raises :class:`DataError` naming the file."""
    a, h, w = contract.audio, contract.image.height, contract.image.width
    t = int(getattr(contract.image, "frames", 1))
    waves, images, unit = [], [], []
    for f in files:
        try:
            with np.load(f, allow_pickle=False) as z:
                wave, image, rate = z["wave"], z["image"], int(z["sample_rate"])
        except Exception as e:  # noqa: BLE001 - zip, key and value errors all mean a bad file
            raise DataError(
                f"{f}: not a calibration pair ({e.__class__.__name__}: {e})",
                "each .npz needs wave, image and sample_rate; regenerate it with `edge-sdk calib`",
            ) from None
        if rate != a.sample_rate:
            raise DataError(
                f"{f}: audio at {rate} Hz, the model takes {a.sample_rate} Hz", f"record or resample the calibration set at {a.sample_rate} Hz"
            )
        if wave.shape != (a.num_samples,):
            raise DataError(f"{f}: wave has shape {wave.shape}, expected ({a.num_samples},)", f"store {a.window_seconds:g} s windows of mono audio")
        if image.shape != (h, w, 3) and not (t > 1 and image.shape == (t, h, w, 3)):
            stack = f" or a stack of {t} ({t}, {h}, {w}, 3)" if t > 1 else ""
            raise DataError(f"{f}: image has shape {image.shape}, expected ({h}, {w}, 3){stack}", f"store {h} x {w} (height x width) RGB frames")
        if not (np.isfinite(wave).all() and np.isfinite(image).all()):
            raise DataError(
                f"{f}: its {'wave' if not np.isfinite(wave).all() else 'image'} holds NaN or inf", "re-record or regenerate this pair (or delete it)"
            )
        waves.append(wave.astype(np.float32))
        frames = np.moveaxis(image, -1, -3).astype(np.float32)  # [3, H, W] or [T, 3, H, W]
        images.append(frames if frames.ndim == 4 or t == 1 else still_stack(frames[None], t)[0])
        unit.append(image.dtype.kind == "f" and image.max() <= 1.0)  # a dark float frame may be; a whole set should not
    if unit and all(unit):
        raise DataError(
            f"{files[0].parent}: every image is within 0..1; the model takes RGB in 0..255, as the camera gives",
            "store uint8 frames (or floats scaled to 0..255): calibrating on 0..1 images would set wrong ranges",
        )
    return np.stack(waves), np.stack(images)
