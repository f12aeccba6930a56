"""Sound as a model takes it: PCM WAV files read to float32 (:func:`read_wav`), a decoded
media file's audio track converted to mono at the model's rate as it streams
(:class:`AudioTrack`), and the window of a track that ends at a video frame's time
(:func:`audio_window`), the A/V alignment every stage uses (a frame goes with the audio that
ENDS at its timestamp).

numpy, soxr and the standard library; PyAV only as the caller's decoded frames. No torch.
"""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import soxr

from edge_sdk.errors import DataError

__all__ = ["read_wav", "audio_window", "AudioTrack", "GAP_S"]

GAP_S = 0.02  # a decoded audio track whose pts jump by more than this has a gap, filled with silence


def read_wav(path: str | Path) -> tuple[np.ndarray, int, int]:
    """Read a PCM WAV -> (float32 samples [n, channels] in [-1, 1], sample rate, channels)."""
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as w:
            rate, channels, width, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
            raw = w.readframes(n)
    except (wave.Error, EOFError, struct.error) as e:
        raise DataError(f"{path}: not a readable PCM WAV ({e})", "re-download the file or convert it: sox in.wav -b 16 out.wav") from None
    if width not in (1, 2, 4) or n == 0 or len(raw) < n * width * channels:
        raise DataError(f"{path}: truncated or unsupported WAV ({width * 8}-bit, {n} frames)", "convert it to 16-bit PCM: sox in.wav -b 16 out.wav")
    dtype = {1: np.uint8, 2: "<i2", 4: "<i4"}[width]
    x = np.frombuffer(raw[: n * width * channels], dtype=dtype).astype(np.float32)
    x = (x - 128.0) / 128.0 if width == 1 else x / float(2 ** (8 * width - 1))
    return x.reshape(n, channels), rate, channels


def audio_window(audio: np.ndarray, audio_start_s: float, end_s: float, sample_rate: int, num_samples: int) -> np.ndarray:
    """The ``num_samples`` of ``audio`` ending at time ``end_s``, zero-padded where outside the track."""
    end = int(round((end_s - audio_start_s) * sample_rate))
    start = end - num_samples
    out = np.zeros(num_samples, np.float32)
    lo, hi = max(start, 0), min(end, audio.size)
    if hi > lo:
        out[lo - start : hi - start] = audio[lo:hi]
    return out


class AudioTrack:
    """One pass through a file's audio track, as PyAV decodes it: each frame converted to planar
    float at its own rate, averaged to mono (stays in [-1, 1]; swresample's downmix uses 0.707
    gains), holes in the track's timestamps filled with silence, and resampled once to
    ``sample_rate`` by a streaming soxr HQ resampler (delay-compensated).

    ``av`` is the PyAV module; ``frame`` the track's first decoded frame and ``stream`` its stream
    (for the start time when the frame has none)."""

    def __init__(self, av, frame, stream, sample_rate: int):
        self.rate, self.sample_rate = frame.sample_rate, sample_rate
        self.convert = av.AudioResampler(format="fltp", rate=self.rate)  # planar float, same layout and rate
        self.start = frame.time if frame.time is not None else float((stream.start_time or 0) * stream.time_base)
        self.resampler = soxr.ResampleStream(self.rate, sample_rate, 1, dtype="float32", quality="HQ")
        self.n_in = self.n_out = 0

    def push(self, frame) -> np.ndarray:
        """Resampled samples for one decoded frame (``None`` flushes the resampler at the end)."""
        chunks = []
        if frame is not None and frame.time is not None:  # fill real holes in the track with silence
            hole = int(round((frame.time - self.start) * self.rate)) - self.n_in
            if hole > GAP_S * self.rate:
                chunks.append(np.zeros(hole, np.float32))
        chunks += [out.to_ndarray().mean(axis=0).astype(np.float32) for out in self.convert.resample(frame)]
        x = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        self.n_in += x.size
        return self.resampler.resample_chunk(x, last=frame is None)

    def time_in(self) -> float:
        """File time of the end of what was pushed so far."""
        return self.start + self.n_in / self.rate

    def time_out(self) -> float:
        """File time of the next output sample (``n_out`` counts what the caller used)."""
        return self.start + self.n_out / self.sample_rate
