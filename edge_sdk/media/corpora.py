"""Readers for the two real datasets AV-Digits is built from, with errors that name the fix,
and where the project keeps them (:func:`default_data_dir`).

- Free Spoken Digit Dataset (Jakobovski et al., CC BY-SA 4.0): ``{digit}_{speaker}_{index}.wav``,
  mono 16-bit PCM (8 kHz in the original).
- MNIST (LeCun, Cortes, Burges; CC BY-SA 3.0): IDX files ``images-idx3-ubyte.gz`` and
  ``labels-idx1-ubyte.gz`` (big-endian header, magic 2051 / 2049).

A recording's samples are read with :func:`edge_sdk.media.audio.read_wav`. numpy and the
standard library only; no torch.
"""

from __future__ import annotations

import gzip
import re
import struct
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_sdk.errors import DataError

__all__ = ["Recording", "load_fsdd", "load_mnist", "default_data_dir"]

_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


def default_data_dir() -> Path | None:
    """``../shared/data`` beside the project checkout, if it exists (the project's real data)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent.parent / "shared" / "data"
        if (parent / "pyproject.toml").exists() and cand.is_dir():
            return cand
    return None


@dataclass(frozen=True)
class Recording:
    digit: int
    speaker: str
    index: int
    path: Path


def load_fsdd(root: str | Path) -> tuple[list[Recording], int]:
    """List the recordings of an FSDD folder; all must share one sample rate and be mono."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"FSDD folder {root} does not exist", "pass --fsdd DIR, a folder of {digit}_{speaker}_{index}.wav files")
    recs = []
    for p in sorted(root.iterdir()):
        m = _NAME.match(p.name)
        if m:
            recs.append(Recording(int(m[1]), m[2], int(m[3]), p))
    if not recs:
        raise DataError(
            f"FSDD folder {root} has no {{digit}}_{{speaker}}_{{index}}.wav files",
            "point --fsdd at the recordings/ folder of the Free Spoken Digit Dataset",
        )
    rate = None
    for r in recs:
        try:
            with wave.open(str(r.path), "rb") as w:
                this_rate, ch = w.getframerate(), w.getnchannels()
        except (wave.Error, EOFError) as e:
            raise DataError(f"{r.path}: not a readable PCM WAV ({e})", "delete or re-download that file") from None
        if ch != 1:
            raise DataError(f"{r.path}: {ch} channels, FSDD recordings are mono", f"convert it: sox {r.path.name} -c 1 out.wav")
        rate = rate or this_rate
        if this_rate != rate:
            raise DataError(
                f"{r.path}: sample rate {this_rate} Hz, the rest of the folder is {rate} Hz", f"convert it: sox {r.path.name} -r {rate} out.wav"
            )
    return recs, rate


def _read_idx(path: Path, magic: int) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable gzip IDX file ({e})", "re-download the MNIST file") from None
    ndim = magic & 0xFF
    if len(data) < 4 + 4 * ndim or struct.unpack(">I", data[:4])[0] != magic:
        raise DataError(f"{path}: wrong IDX magic (expected {magic})", "images go in images-idx3-ubyte.gz, labels in labels-idx1-ubyte.gz")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path}: truncated IDX file ({body.size} of {int(np.prod(shape))} bytes)", "re-download the MNIST file")
    return body.reshape(shape)


def load_mnist(root: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read MNIST images [n, 28, 28] uint8 and labels [n] from an IDX folder."""
    root = Path(root)
    images, labels = root / "images-idx3-ubyte.gz", root / "labels-idx1-ubyte.gz"
    for p in (images, labels):
        if not p.is_file():
            raise DataError(f"MNIST file {p} does not exist", "pass --mnist DIR holding images-idx3-ubyte.gz and labels-idx1-ubyte.gz")
    x, y = _read_idx(images, 2051), _read_idx(labels, 2049)
    if len(x) != len(y):
        raise DataError(f"{root}: {len(x)} images but {len(y)} labels", "use the images and labels file of the same MNIST set")
    if y.max() > 9:
        raise DataError(f"{labels}: labels outside 0-9", "that is not an MNIST label file")
    return x, y.astype(np.int64)
