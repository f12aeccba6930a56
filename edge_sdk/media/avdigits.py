"""AV-Digits: scenes of handwritten digits with the sound of one of them being spoken.

A scene is an H x W image (the model's input size) with K handwritten digits of distinct classes at random,
non-overlapping positions and scales on a textured background; its sound is a real
recording of one of those digits, at the model's sample rate. Evaluation uses the box of
the spoken digit; the learner only ever sees which sound came with which scene.

Clips of such scenes in time are :mod:`edge_sdk.media.avclips`. Every item is a pure
function of (seed, epoch, index).
Items are numpy arrays (no torch): the trainer, the evaluation, calibration and the
runtime's ``synthetic://av-digits`` source all draw their scenes here.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge_sdk.media.digits import DigitBank

__all__ = ["AVDigits", "render_single", "place_sound", "mask_sound", "paste_digit", "random_color"]


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    noise = np.zeros((h, w), np.float32)
    for cells, weight in ((3, 0.5), (8, 0.3), (24, 0.2)):
        noise += weight * cv2.resize(rng.random((cells, cells), dtype=np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    c1, c2 = rng.uniform(0, 120, 3), rng.uniform(0, 120, 3)
    return c1 + (c2 - c1) * np.clip(noise, 0, 1)[..., None]


def paste_digit(canvas: np.ndarray, glyph: np.ndarray, x: int, y: int, size: int, color: np.ndarray) -> np.ndarray:
    """Alpha-blend a 28x28 glyph scaled to ``size`` at (x, y); return the digit's box.

    The box is the glyph's bounding box of non-zero pixels (the usual MNIST digit box),
    scaled into the scene: integer pixel edges, x0/y0 inclusive, x1/y1 exclusive.
    """
    g = cv2.resize(glyph, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
    h, w = canvas.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + size, w), min(y + size, h)
    a = g[y0 - y : y1 - y, x0 - x : x1 - x, None]
    canvas[y0:y1, x0:x1] = canvas[y0:y1, x0:x1] * (1 - a) + color * a
    ys, xs = np.nonzero(glyph)
    if len(xs) == 0:
        return np.array([x0, y0, x1, y1], np.float32)
    f = size / glyph.shape[0]
    box = [x + np.floor(xs.min() * f), y + np.floor(ys.min() * f), x + np.ceil((xs.max() + 1) * f), y + np.ceil((ys.max() + 1) * f)]
    return np.clip(np.array(box, np.float32), 0, [w, h, w, h])


def _layout(rng: np.random.Generator, h: int, w: int, k: int, lo: int, hi: int) -> list[tuple[int, int, int]]:
    """K non-overlapping squares (x, y, size) inside an h x w canvas."""
    for _ in range(1000):
        boxes = []
        for _ in range(k):
            for _ in range(50):
                size = int(rng.integers(lo, hi + 1))
                if h == w:  # one draw for both (the stream every square scene was generated with)
                    x, y = (int(v) for v in rng.integers(0, w - size + 1, 2))
                else:
                    x, y = (int(v) for v in rng.integers(0, [w - size + 1, h - size + 1]))
                if all(x + size <= bx or bx + bs <= x or y + size <= by or by + bs <= y for bx, by, bs in boxes):
                    boxes.append((x, y, size))
                    break
        if len(boxes) == k:
            return boxes
    raise ValueError(f"cannot place {k} digits of {lo}-{hi} px in a {h} x {w} px image")


def random_color(rng: np.random.Generator) -> np.ndarray:
    c = rng.uniform(150, 255, 3)
    c[rng.integers(3)] = 255.0
    return c


def mask_sound(x: np.ndarray, rng: np.random.Generator, bands: int = 2, spans: int = 2) -> np.ndarray:
    """SpecAugment's masks (Park et al., Interspeech 2019) applied to the waveform, since the
    log-mel front end is inside the model: ``bands`` frequency bands (each up to 6% of the
    spectrum, below the middle) and ``spans`` time spans (each up to 8% of the window) are
    zeroed. A speaker's formants and timing stop being reliable cues; the word's are kept."""
    spectrum = np.fft.rfft(x)
    nb = len(spectrum)
    for _ in range(bands):
        w, f0 = int(rng.uniform(0, 0.06) * nb), int(rng.integers(0, nb // 2))
        spectrum[f0 : f0 + w] = 0
    x = np.fft.irfft(spectrum, len(x)).astype(np.float32)
    for _ in range(spans):
        w = int(rng.uniform(0, 0.08) * len(x))
        t0 = int(rng.integers(0, len(x) - w + 1))
        x[t0 : t0 + w] = 0
    return x


def place_sound(sound: np.ndarray, n: int, rng: np.random.Generator, train: bool, mask: bool = False) -> np.ndarray:
    """Put one utterance into an n-sample window: random offset, gain, speed and noise when
    training, and :func:`mask_sound` when ``mask`` is set too."""
    x = sound
    if train:  # speaker and microphone variation: speed (pitch and tempo) and spectral tilt
        speed = rng.uniform(0.85, 1.15)
        m = max(2, int(len(x) / speed))
        x = np.interp(np.linspace(0, len(x) - 1, m), np.arange(len(x)), x).astype(np.float32)
        tilt = rng.uniform(-0.6, 0.6)
        x = x + tilt * np.concatenate([[0.0], x[:-1]]).astype(np.float32)
    if len(x) > n:
        start = (len(x) - n) // 2
        x = x[start : start + n]
    out = np.zeros(n, np.float32)
    slack = n - len(x)
    offset = int(rng.integers(0, slack + 1)) if train else slack // 2
    peak = np.abs(x).max() + 1e-6
    gain = (10 ** (rng.uniform(-10, 0) / 20) if train else 0.5) / peak
    out[offset : offset + len(x)] = x * gain
    noise = 10 ** (rng.uniform(-4, -2.5) if train else -3.5)
    out += rng.normal(0, noise, n).astype(np.float32)
    return mask_sound(out, rng) if train and mask else out


def render_single(bank: DigitBank, idx: int, s, rng: np.random.Generator) -> np.ndarray:
    """One digit image (``s``: a side, or (height, width)), centred at a mid scale on a
    background: the retrieval gallery item."""
    h, w = (s, s) if np.ndim(s) == 0 else s
    canvas = _background(rng, h, w)
    size = int(min(h, w) * 0.5)
    paste_digit(canvas, bank.images[idx], (w - size) // 2, (h - size) // 2, size, random_color(rng))
    return np.clip(canvas, 0, 255).astype(np.uint8)


class AVDigits:
    """Map-style data set of scenes at a model's input sizes (``contract``: a
    :class:`~edge_sdk.contract.ModelContract`, or a registry spec, which has the same input
    fields); ``set_epoch`` draws a fresh set of scenes each epoch."""

    def __init__(self, bank: DigitBank, contract, length: int, k: int = 3, seed: int = 0, train: bool = True, mask: bool = False):
        self.bank, self.contract, self.length, self.seed, self.train = bank, contract, length, seed, train
        self.mask = mask  # SpecAugment-style masks on training sounds (see mask_sound)
        self.epoch = 0
        self.set_k(k)

    def set_k(self, k: int | list[int]) -> None:
        """Digits per scene, or a list each scene draws its count from (a mix of scene kinds).
        A lone digit is drawn larger (the easy scenes of a curriculum)."""
        ks = [k] if isinstance(k, int) else list(k)
        if not ks or any(not 1 <= x <= 10 for x in ks):
            raise ValueError("k must be 1..10 (digits in a scene have distinct classes)")
        self.ks, self.k = ks, max(ks)

    def _size_range(self, k: int) -> tuple[int, int]:
        s = min(self.contract.image.height, self.contract.image.width)
        return (int(s * 0.22), int(s * 0.40)) if k > 1 else (int(s * 0.3), int(s * 0.6))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def _rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, i])

    def _scene(self, rng: np.random.Generator):
        h, w = self.contract.image.height, self.contract.image.width
        k = self.ks[0] if len(self.ks) == 1 else int(self.ks[rng.integers(len(self.ks))])
        digits = rng.choice(10, k, replace=False)
        layout = _layout(rng, h, w, k, *self._size_range(k))
        canvas = _background(rng, h, w)
        glyphs = [int(rng.choice(self.bank.images_of(d))) for d in digits]
        return canvas, digits, layout, glyphs

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < self.length:
            raise IndexError(i)
        rng = self._rng(i)
        canvas, digits, layout, glyphs = self._scene(rng)
        boxes = np.stack([paste_digit(canvas, self.bank.images[g], x, y, sz, random_color(rng)) for g, (x, y, sz) in zip(glyphs, layout)])
        spoken = int(rng.integers(len(digits)))
        sound = self.bank.sounds[int(rng.choice(self.bank.sounds_of(int(digits[spoken]))))]
        return {
            "image": np.clip(canvas, 0, 255).astype(np.uint8).transpose(2, 0, 1).astype(np.float32),
            "wave": place_sound(sound, self.contract.audio.num_samples, rng, self.train, self.mask),
            "label": np.int64(digits[spoken]),
            "box": boxes[spoken],
            "digits": digits.astype(np.int64),
        }
