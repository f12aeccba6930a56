"""AV-Digits clips: scenes in time, whose spoken digit pulses with its own loudness.

A clip is an AV-Digits scene filmed at ``fps`` while the digit it shows is spoken again and
again (takes of several recordings, gaps between them) on a sound track that runs well
before and after the frames: every audio window the synchrony objective or the offset
estimate asks for, shifted by up to ``pad_s`` seconds, is full of speech. In every frame the
spoken digit's scale follows the loudness of the last 50 ms of the track, so *when* the
digit grows tells when the sound was loud: audio-visual synchrony is learnable from a stack
of frames (Owens & Efros, ECCV 2018), and not from one frame.

For a model whose contract takes a stack (``image.frames`` = T > 1, ``frame_rate`` apart),
the training view's ``image`` is the T frames ending at the chosen one, ``[T, 3, H, W]``;
otherwise one frame. Items are numpy arrays and a pure function of (seed, epoch, index).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_sdk.media.avdigits import AVDigits, paste_digit, place_sound, random_color

__all__ = ["AVDigitClips", "ENVELOPE_S", "EVAL_SHIFTS", "speech_track"]

ENVELOPE_S = 0.05  # the loudness a frame shows: RMS of the track's last 50 ms
EVAL_SHIFTS = (-0.6, -0.3, 0.3, 0.6)  # sync_acc's shifted candidates: chance 1 / 5


@dataclass
class _Clip:
    rng: np.random.Generator
    track: np.ndarray
    first: int  # sample where frame 0's window ends (frame 0's time)
    loud: np.ndarray  # loudness at every ``hop`` samples, 0..1
    hop: int
    canvas: np.ndarray
    digits: np.ndarray
    layout: list
    glyphs: list
    colors: list
    spoken: int


def speech_track(bank, digit: int, total: int, sample_rate: int, rng: np.random.Generator, train: bool) -> np.ndarray:
    """``total`` samples of takes of ``digit`` one after another, 0.05-0.4 s apart."""
    track = np.zeros(total, np.float32)
    takes = bank.sounds_of(digit)
    pos = int(rng.integers(0, max(1, total // 20)))
    while pos < total:
        sound = bank.sounds[int(rng.choice(takes))]
        take = place_sound(sound, len(sound) + 2, rng, train)  # the take with its augmentation, no padding to speak of
        end = min(total, pos + len(take))
        track[pos:end] += take[: end - pos]
        pos = end + int(rng.uniform(0.05, 0.4) * sample_rate)
    return track


class AVDigitClips(AVDigits):
    """``frames`` frames at ``fps`` (the contract's ``frame_rate`` for a stack model). ``shifts``:
    the synchrony negatives' offsets in seconds (None: four drawn per item, 0.08-0.8 s either
    way, log-uniform: near ones teach precision, far ones the coarse answer)."""

    def __init__(self, bank, contract, length: int, k: int = 3, seed: int = 0, train: bool = True, frames: int = 12,
                 fps: float = 10.0, shifts: tuple[float, ...] | None = EVAL_SHIFTS, pad_s: float = 1.3):  # fmt: skip
        super().__init__(bank, contract, length, k, seed, train)
        self.stack = int(getattr(contract.image, "frames", 1))
        self.fps = float(contract.image.frame_rate) if self.stack > 1 else float(fps)
        self.frames, self.shifts, self.pad_s = max(int(frames), self.stack), shifts, pad_s

    def clip(self, i: int) -> _Clip:
        """Clip ``i``'s scene and sound track (frame 0's time is track sample ``first``): what
        :meth:`render` draws at any time, e.g. a video file's frames at its own rate."""
        if not 0 <= i < self.length:
            raise IndexError(i)
        rng = self._rng(i)
        sr, n = self.contract.audio.sample_rate, self.contract.audio.num_samples
        pad, span = int(self.pad_s * sr), int((self.frames - 1) / self.fps * sr)
        canvas, digits, layout, glyphs = self._scene(rng)
        spoken = int(rng.integers(len(digits)))
        track = speech_track(self.bank, int(digits[spoken]), pad + n + span + pad, sr, rng, self.train)
        track += rng.normal(0, 10**-3.5, len(track)).astype(np.float32)
        hop, win = max(1, sr // 100), max(1, int(ENVELOPE_S * sr))
        power = np.concatenate([[0.0], np.cumsum(track.astype(np.float64) ** 2)])
        ends = np.arange(win, len(track) + 1, hop)
        rms = np.sqrt((power[ends] - power[ends - win]) / win)
        loud = np.zeros(len(track) // hop + 1)
        loud[ends // hop] = rms / (rms.max() + 1e-9)
        colors = [random_color(rng) for _ in digits]
        return _Clip(rng, track, pad + n, loud, hop, canvas, digits, layout, glyphs, colors, spoken)

    def render(self, c: _Clip, end: int) -> tuple[np.ndarray, np.ndarray]:
        """The frame whose time is track sample ``end``: [3, H, W] float32 RGB, and the spoken digit's box."""
        env = float(c.loud[min(len(c.loud) - 1, end // c.hop)])
        img, box = c.canvas.copy(), None
        for j, (g, (x, y, sz)) in enumerate(zip(c.glyphs, c.layout)):
            grow = int(round(sz * 0.45 * env)) if j == c.spoken else 0
            b = paste_digit(img, self.bank.images[g], x - grow // 2, y - grow // 2, sz + grow, c.colors[j])
            box = b if j == c.spoken else box
        return np.clip(img, 0, 255).astype(np.uint8).transpose(2, 0, 1).astype(np.float32), box

    def frame_end(self, c: _Clip) -> np.ndarray:
        sr = self.contract.audio.sample_rate
        return c.first + (np.arange(self.frames) * sr / self.fps).astype(np.int64)

    def item(self, i: int) -> dict:
        """The whole clip: ``frames`` [F, 3, H, W], ``track``, ``frame_end`` [F] (each frame's time
        as a track sample), ``boxes`` [F, 4]."""
        c = self.clip(i)
        ends = self.frame_end(c)
        frames, boxes = zip(*(self.render(c, int(e)) for e in ends))
        return {"frames": np.stack(frames), "track": c.track, "frame_end": ends, "label": np.int64(c.digits[c.spoken]),
                "boxes": np.stack(boxes), "digits": c.digits.astype(np.int64)}  # fmt: skip

    def stack_at(self, frames: np.ndarray, t: int) -> np.ndarray:
        """The model's visual input for frame ``t`` of a clip's frames: the frame, or the stack ending at it."""
        return frames[t] if self.stack == 1 else frames[t - self.stack + 1 : t + 1]

    def __getitem__(self, i: int) -> dict:
        c = self.clip(i)
        n, sr = self.contract.audio.num_samples, self.contract.audio.sample_rate
        t = int(c.rng.integers(self.stack - 1, self.frames))
        end = int(self.frame_end(c)[t])
        step = sr / self.fps
        views = [self.render(c, int(end - (self.stack - 1 - j) * step)) for j in range(self.stack)]
        image = views[-1][0] if self.stack == 1 else np.stack([v[0] for v in views])
        shifts = self.shifts
        if shifts is None:
            shifts = tuple(float(s) for s in c.rng.choice([-1, 1], 4) * np.exp(c.rng.uniform(np.log(0.08), np.log(0.8), 4)))
        shifted = np.stack([c.track[end + int(s * sr) - n : end + int(s * sr)] for s in shifts])
        return {"image": image, "wave": c.track[end - n : end].copy(), "wave_shifted": shifted, "label": np.int64(c.digits[c.spoken]),
                "box": views[-1][1], "digits": c.digits.astype(np.int64)}  # fmt: skip
