"""Preprocessing as model layers, so exported models take raw waveform and raw RGB.

The log-mel front end computes the STFT as a strided ``Conv1d`` whose fixed kernels are
the Hann-windowed DFT basis (only the bins below ``f_max``), then power, a mel matmul and
a log: ops that ONNX, TensorRT and XNNPACK all run, with no ``torch.stft``/complex types.
ONNX graphs compute that basis from a few nodes at load (:mod:`edge_sdk.export.frontend_graph`);
ExecuTorch programs cannot, so they use :class:`TwoStageMel`, a two-stage DFT whose
constants (32 KB) replace the basis and the mel filters (146 KB).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from edge_sdk.spec import AudioSpec, ImageSpec

__all__ = ["LogMel", "TwoStageMel", "ImageNormalize", "mel_filterbank", "mel_edges"]


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
        self.spec = spec
        self.two_stage = None

    def use_two_stage(self) -> bool:
        """Compute the mel power with :class:`TwoStageMel` from now on, dropping the stored
        basis (a program exports every buffer a module holds); False, and no change, when
        :meth:`TwoStageMel.split` finds no split of ``n_fft``."""
        if self.two_stage is not None:
            return True
        if TwoStageMel.split(self.spec.n_fft) is None:
            return False
        self.two_stage = TwoStageMel(self.spec, self.mel.numpy())
        del self.dft, self.mel
        return True

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled(wave.device.type):  # bf16 training: the DFT and the log stay fp32
            with torch.autocast(wave.device.type, enabled=False):
                return self.forward(wave.float())
        if self.two_stage is not None:
            return torch.log(self.two_stage(wave) + 1e-6)[:, None]
        stft = nn.functional.conv1d(wave[:, None, :], self.dft, stride=self.hop)  # [B, 2K, T]
        re, im = stft[:, : self.n_bins], stft[:, self.n_bins :]
        power = re * re + im * im
        mel = torch.matmul(self.mel, power)  # [B, n_mels, T]
        return torch.log(mel + 1e-6)[:, None]


class TwoStageMel(nn.Module):
    """[B, num_samples] waveform -> [B, n_mels, T] mel power, through a two-stage
    (Cooley-Tukey) DFT instead of :class:`LogMel`'s stored basis.

    With ``n_fft = P * Q``, sample ``n = Q n1 + n2`` and bin ``k = k1 + P k2``, each
    Hann-windowed frame is transformed by P-point DFTs over ``n1`` (one [P, 2P] matmul), a
    twiddle ``exp(-2 pi i n2 k1 / n_fft)``, then Q-point DFTs over ``n2`` for the needed ``k2``
    only (two [Q, 2 K2] matmuls); the squared real and imaginary parts meet the mel filters
    in one last matmul whose rows are laid out as the second stage writes its bins.
    For the shipped specs (256 = 16 x 16, 66 bins) that is 32 KB of constants (the filters,
    laid out for re^2 and im^2 and padded to whole second-stage rows, are 26 KB of it) in
    place of a 135 KB basis and 11 KB of filters, which an ExecuTorch program stores in float.
    XNNPACK runs every op but the framing ``unfold``; being more and smaller ops, the front
    end takes about 0.02 ms more per call at batch 1 (measured: 0.184 vs 0.164 ms).
    """

    @staticmethod
    def split(n_fft: int) -> tuple[int, int] | None:
        """``(P, Q)`` with ``P * Q = n_fft`` and P the largest factor up to sqrt(n_fft); None
        when that is below 4 (a prime ``n_fft``, or 2 x a prime: little to save)."""
        p = max(d for d in range(1, math.isqrt(n_fft) + 1) if n_fft % d == 0)
        return (p, n_fft // p) if p >= 4 else None

    def __init__(self, spec: AudioSpec, mel: np.ndarray):
        super().__init__()
        p, q = self.split(spec.n_fft)
        n_mels, n_bins = mel.shape
        k2 = -(-n_bins // p)  # second-stage outputs needed to reach every kept bin
        self.p, self.q, self.k2, self.n_fft, self.hop = p, q, k2, spec.n_fft, spec.hop_length
        n = np.arange(spec.n_fft)
        window = (0.5 - 0.5 * np.cos(2 * np.pi * n / spec.n_fft)).reshape(p, q).T  # [n2, n1]
        first = 2 * np.pi * np.outer(np.arange(p), np.arange(p)) / p  # [n1, k1]
        twiddle = 2 * np.pi * np.outer(np.arange(q), np.arange(p)) / spec.n_fft  # [n2, k1]
        second = 2 * np.pi * np.outer(np.arange(q), np.arange(k2)) / q  # [n2, k2]
        c, s = np.cos(second), -np.sin(second)
        filters = np.zeros((n_mels, p * k2))
        filters[:, :n_bins] = mel
        filters = filters.reshape(n_mels, k2, p).transpose(2, 1, 0)  # [k1, k2, mel]: bin k1 + P k2
        consts = {
            "window": window,
            "first": np.concatenate([np.cos(first), -np.sin(first)], axis=1),  # [n1, (re|im, k1)]
            "twiddle_re": np.cos(twiddle),
            "twiddle_im": -np.sin(twiddle),
            "second_re": np.concatenate([c, s], axis=1),  # [n2, (re|im, k2)]: a complex product, re and im
            "second_im": np.concatenate([-s, c], axis=1),
            "filters": np.stack([filters, filters], axis=1).reshape(p * 2 * k2, n_mels),  # re^2 and im^2 alike
        }
        for name, value in consts.items():
            self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        p, q, k2 = self.p, self.q, self.k2
        t = (wave.shape[1] - self.n_fft) // self.hop + 1
        # Matmuls on 2-D views: a batched matmul would broadcast its constant with ops XNNPACK does not take.
        frames = wave.unfold(1, self.n_fft, self.hop).reshape(-1, t, p, q).transpose(2, 3) * self.window
        a = torch.mm(frames.reshape(-1, p), self.first).reshape(-1, t, q, 2 * p)  # [B, T, n2, (re|im, k1)]
        re, im = a[..., :p], a[..., p:]
        # Two matmuls and an add, not a concat: the XNNPACK quantizer annotates every concat,
        # ignoring its module filters, so a concat here would put this float front end in INT8.
        b_re = (re * self.twiddle_re - im * self.twiddle_im).transpose(2, 3).reshape(-1, q)  # [(B, T, k1), n2]
        b_im = (re * self.twiddle_im + im * self.twiddle_re).transpose(2, 3).reshape(-1, q)
        x = torch.mm(b_re, self.second_re) + torch.mm(b_im, self.second_im)  # [(B, T, k1), (re|im, k2)]
        mel = torch.mm((x * x).reshape(-1, p * 2 * k2), self.filters)  # [(B, T), mel]
        return mel.reshape(-1, t, mel.shape[1]).transpose(1, 2)


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
