"""Preprocessing as model layers, so exported models take raw waveform and raw RGB.

The log-mel front end computes the STFT as a strided ``Conv1d`` whose fixed kernels are
the Hann-windowed DFT basis (only the bins below ``f_max``), then power, a mel matmul and
a log: ops that ONNX, TensorRT and XNNPACK all run, with no ``torch.stft``/complex types.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from edge_sdk.spec import AudioSpec, ImageSpec

__all__ = ["LogMel", "ImageNormalize", "mel_filterbank", "mel_edges"]


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_edges(spec: AudioSpec) -> np.ndarray:
    """The ``n_mels + 2`` HTK-mel band edges in Hz: filter i rises from edge i, peaks at
    edge i + 1 and falls to edge i + 2."""
    return _mel_to_hz(np.linspace(_hz_to_mel(spec.f_min), _hz_to_mel(spec.f_max), spec.n_mels + 2))


def mel_filterbank(spec: AudioSpec, n_bins: int) -> np.ndarray:
    """HTK-mel triangular filters [n_mels, n_bins] over the first ``n_bins`` FFT bins."""
    bin_hz = np.arange(n_bins) * spec.sample_rate / spec.n_fft
    edges = mel_edges(spec)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (bin_hz[None] - lo) / (mid - lo)
    down = (hi - bin_hz[None]) / (hi - mid)
    fb = np.clip(np.minimum(up, down), 0.0, None)
    # A filter narrower than one bin may catch none: give it its nearest bin.
    for i in np.flatnonzero(fb.sum(1) == 0):
        fb[i, int(np.argmin(np.abs(bin_hz - mid[i, 0])))] = 1.0
    return (fb / fb.sum(1, keepdims=True)).astype(np.float32)


class LogMel(nn.Module):
    """[B, num_samples] waveform -> [B, 1, n_mels, num_frames] log-mel power."""

    def __init__(self, spec: AudioSpec):
        super().__init__()
        n_bins = int(math.floor(spec.f_max * spec.n_fft / spec.sample_rate)) + 2
        n_bins = min(n_bins, spec.n_fft // 2 + 1)
        n = np.arange(spec.n_fft)
        window = 0.5 - 0.5 * np.cos(2 * np.pi * n / spec.n_fft)
        k = np.arange(n_bins)[:, None]
        phase = 2 * np.pi * k * n[None] / spec.n_fft
        basis = np.concatenate([np.cos(phase), -np.sin(phase)]) * window[None]
        self.n_bins = n_bins
        self.hop = spec.hop_length
        self.register_buffer("dft", torch.from_numpy(basis.astype(np.float32))[:, None, :], persistent=False)
        self.register_buffer("mel", torch.from_numpy(mel_filterbank(spec, n_bins)), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled(wave.device.type):  # bf16 training: the DFT and the log stay fp32
            with torch.autocast(wave.device.type, enabled=False):
                return self.forward(wave.float())
        spec = nn.functional.conv1d(wave[:, None, :], self.dft, stride=self.hop)  # [B, 2K, T]
        re, im = spec[:, : self.n_bins], spec[:, self.n_bins :]
        power = re * re + im * im
        mel = torch.matmul(self.mel, power)  # [B, n_mels, T]
        return torch.log(mel + 1e-6)[:, None]


class ImageNormalize(nn.Module):
    """[B, 3, H, W] RGB in [0, 255] -> normalised float, as the spec says."""

    def __init__(self, spec: ImageSpec):
        super().__init__()
        mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self.register_buffer("scale", 1.0 / std, persistent=False)
        self.register_buffer("shift", -mean / std, persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image * self.scale + self.shift
