"""A bank of labelled digit sounds and digit images, split by speaker and by image.

The labels are never shown to the learner: they exist to build scenes (which sound goes
with which picture) and to evaluate. ``load_bank`` reads the real folders of the Free
Spoken Digit Dataset (Jakobovski et al.) and MNIST (LeCun et al.) through
:mod:`edge_sdk.media.corpora`; ``synthetic_bank`` generates procedural shapes and tone
patterns, so everything runs on a machine without the data folder. No torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import soxr

from edge_sdk.errors import DataError
from edge_sdk.media.audio import read_wav
from edge_sdk.media.corpora import load_fsdd, load_mnist

__all__ = ["DigitBank", "load_bank", "synthetic_bank", "DEFAULT_TEST_SPEAKERS", "MNIST_TRAIN_IMAGES"]

DEFAULT_TEST_SPEAKERS = ("george",)
MNIST_TRAIN_IMAGES = 6000  # the first 6,000 images train, the rest test


@dataclass
class DigitBank:
    images: np.ndarray  # [n, 28, 28] uint8
    image_labels: np.ndarray  # [n]
    sounds: list[np.ndarray]  # float32 mono at the model's rate
    sound_labels: np.ndarray  # [m]
    speakers: list[str]  # [m]
    source: str

    def check(self) -> DigitBank:
        for what, labels in (("images", self.image_labels), ("sounds", self.sound_labels)):
            missing = sorted(set(range(10)) - set(labels.tolist()))
            if missing:
                raise DataError(
                    f"{self.source}: no {what} of digit(s) {missing} in this split", "use the full FSDD and MNIST sets, or other --test-speakers"
                )
        return self

    def images_of(self, digit: int) -> np.ndarray:
        return np.flatnonzero(self.image_labels == digit)

    def sounds_of(self, digit: int) -> np.ndarray:
        return np.flatnonzero(self.sound_labels == digit)


def load_bank(fsdd: str | Path, mnist: str | Path, split: str, sample_rate: int, test_speakers: tuple[str, ...] = DEFAULT_TEST_SPEAKERS) -> DigitBank:
    """Real data: speakers in ``test_speakers`` and MNIST images past 6,000 are the test split."""
    if split not in ("train", "test"):
        raise ValueError("split must be 'train' or 'test'")
    recs, rate = load_fsdd(fsdd)
    known = sorted({r.speaker for r in recs})
    unknown = set(test_speakers) - set(known)
    if unknown or not test_speakers or set(test_speakers) == set(known):
        raise DataError(
            f"test speakers {sorted(test_speakers)} do not split the speakers {known}", "name one or more speakers of the folder, not all of them"
        )
    keep = [r for r in recs if (r.speaker in test_speakers) == (split == "test")]
    sounds = []
    for r in keep:
        x, _, _ = read_wav(r.path)
        sounds.append(soxr.resample(x[:, 0], rate, sample_rate).astype(np.float32) if rate != sample_rate else x[:, 0])
    images, labels = load_mnist(mnist)
    if len(images) <= MNIST_TRAIN_IMAGES:
        raise DataError(
            f"{mnist}: {len(images)} MNIST images, need more than {MNIST_TRAIN_IMAGES} for a train/test split",
            "use the MNIST test file (10,000 images) or its 8,000-image subset",
        )
    part = slice(0, MNIST_TRAIN_IMAGES) if split == "train" else slice(MNIST_TRAIN_IMAGES, None)
    return DigitBank(images[part], labels[part], sounds, np.array([r.digit for r in keep]), [r.speaker for r in keep], f"FSDD+MNIST {split}").check()


_SHAPES = ("circle", "vbar", "hbar", "triangle", "square", "plus", "x", "ring", "eight", "diamond")


def _draw_shape(kind: int, rng: np.random.Generator) -> np.ndarray:
    img = np.zeros((28, 28), np.uint8)
    t = int(rng.integers(2, 4))
    c, r = 14 + rng.integers(-1, 2, 2), int(rng.integers(7, 10))
    cx, cy = int(c[0]), int(c[1])
    shape = _SHAPES[kind]
    if shape == "circle":
        cv2.circle(img, (cx, cy), r, 255, -1)
    elif shape == "ring":
        cv2.circle(img, (cx, cy), r, 255, t)
        cv2.circle(img, (cx, cy), 2, 255, -1)
    elif shape == "eight":
        cv2.circle(img, (cx, cy - r // 2), r // 2, 255, t)
        cv2.circle(img, (cx, cy + r // 2), r // 2, 255, t)
    elif shape in ("vbar", "hbar"):
        w = t + 1
        p0, p1 = ((cx - w, cy - r), (cx + w, cy + r)) if shape == "vbar" else ((cx - r, cy - w), (cx + r, cy + w))
        cv2.rectangle(img, p0, p1, 255, -1)
    elif shape == "square":
        cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), 255, t)
    elif shape in ("triangle", "diamond"):
        pts = [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)] if shape == "triangle" else [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
        cv2.polylines(img, [np.array(pts, np.int32)], True, 255, t)
    elif shape == "plus":
        cv2.line(img, (cx - r, cy), (cx + r, cy), 255, t)
        cv2.line(img, (cx, cy - r), (cx, cy + r), 255, t)
    else:
        cv2.line(img, (cx - r, cy - r), (cx + r, cy + r), 255, t)
        cv2.line(img, (cx - r, cy + r), (cx + r, cy - r), 255, t)
    return img


def _tone(kind: int, pitch: float, rng: np.random.Generator, rate: int) -> np.ndarray:
    """Class = a two-note pattern; a 'speaker' = a pitch factor; takes vary in length."""
    dur = rng.uniform(0.25, 0.45)
    n = int(dur * rate)
    t = np.arange(n) / rate
    f1, f2 = (250 + 90 * kind) * pitch, (250 + 90 * ((kind * 3 + 5) % 10)) * pitch
    f = np.where(t < dur / 2, f1, f2)
    x = np.sin(2 * np.pi * np.cumsum(f) / rate) + 0.3 * np.sin(4 * np.pi * np.cumsum(f) / rate)
    env = np.sin(np.pi * t / dur) ** 0.5
    return (0.5 * env * x).astype(np.float32)


def synthetic_bank(split: str, sample_rate: int, per_class: int = 60, seed: int = 0) -> DigitBank:
    """Procedural stand-in for FSDD+MNIST: 10 shapes, 10 tone patterns, 4 'speakers' (pitches)."""
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    pitches = {"train": (0.9, 1.0, 1.1), "test": (1.05,)}[split]
    images = np.stack([_draw_shape(k, rng) for k in range(10) for _ in range(per_class)])
    image_labels = np.repeat(np.arange(10), per_class)
    sounds, labels, speakers = [], [], []
    for k in range(10):
        for p in pitches:
            for _ in range(max(1, per_class // 6)):
                sounds.append(_tone(k, p, rng, sample_rate))
                labels.append(k)
                speakers.append(f"pitch{p}")
    return DigitBank(images, image_labels, sounds, np.array(labels), speakers, f"synthetic {split}").check()
