"""AVNet: an audio tower and an image tower that meet in one embedding space.

Inputs are raw (waveform [B, N] in [-1, 1]; RGB [B, 3, S, S] in [0, 255]); outputs are
L2-normalised ``audio_emb`` [B, D], ``image_emb`` [B, D] and ``image_map`` [B, D, h, w],
the per-position image embedding used for sound-source localization (the dense map of
Arandjelovic & Zisserman, "Objects that Sound", 2018).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from edge_sdk.models.frontend import ImageNormalize, LogMel
from edge_sdk.models.towers import ConvTower
from edge_sdk.spec import ModelSpec

__all__ = ["AVNet", "OUTPUT_NAMES"]

OUTPUT_NAMES = ("audio_emb", "image_emb", "image_map")


def global_max_pool(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[B, C, H, W] -> [B, C]: a max pool over the whole (H, W) = ``size`` map, with the
    kernel a constant (as every exporter wants); XNNPACK, ONNX and TensorRT run it natively."""
    return F.max_pool2d(x, kernel_size=size).flatten(1)


def l2_normalize(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``F.normalize`` with a broadcast division: the same numbers, but exported graphs get
    no ``Expand`` that materialises the norm at the map's full size (7% of the INT8 vision
    tower's time in ONNX Runtime, measured). The norm is spelled as a sum of squares:
    ExecuTorch 1.5's XNNPACK delegate handed ``linalg.vector_norm`` a channels-last tensor
    in PT2E INT8 programs and failed at run time (error 0x10)."""
    return x / (x * x).sum(dim, keepdim=True).sqrt().clamp_min(1e-12)


class AudioEncoder(nn.Module):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.frontend = LogMel(spec.audio)
        self.tower = ConvTower(spec.audio_tower, 1)
        with torch.no_grad():  # the tower's output grid for one window, fixed by the spec
            self.grid = tuple(self.tower.eval()(self.frontend(torch.zeros(1, spec.audio.num_samples))).shape[-2:])
        self.tower.train()
        # "time" pooling keeps every time cell (max over frequency only): when a sound starts
        # within the window survives into the embedding, which synchrony needs
        self.pool = spec.audio_pool
        width = self.tower.out_channels * (self.grid[1] if self.pool == "time" else 1)
        self.proj = nn.Linear(width, spec.embed_dim)

    def normalized_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """[B, N] waveform -> [B, 1, mels, frames]: the log-mel the tower reads."""
        mel = self.frontend(wave)
        # Per-utterance mean normalisation of each mel band (CMN), then of the variance:
        # removes the level and the stationary spectral colour of speaker and microphone.
        mel = mel - mel.mean(dim=3, keepdim=True)
        return mel / (mel.std(dim=(2, 3), keepdim=True) + 1e-5)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        # Max pooling: the word fills a fraction of the window, the digit a fraction of the
        # image; mean pooling drowns both in background and stalls contrastive learning.
        cells = self.tower(self.normalized_mel(wave))
        time = self.pool == "time"  # [B, C * time cells], or [B, C]
        feat = F.max_pool2d(cells, kernel_size=(self.grid[0], 1)).flatten(1) if time else global_max_pool(cells, self.grid)
        return l2_normalize(self.proj(feat), dim=-1)


class ImageEncoder(nn.Module):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.normalize = ImageNormalize(spec.image)
        self.frames = spec.image.frames
        self.tower = ConvTower(spec.image_tower, 3 * self.frames)  # a stack of frames: fused in the first conv
        self.proj = nn.Conv2d(self.tower.out_channels, spec.embed_dim, 1)
        self.grid = (spec.map_size, spec.map_size)

    def normalized(self, image: torch.Tensor) -> torch.Tensor:
        """RGB 0..255 ([B, 3, S, S], or [B, T, 3, S, S] for a stack) -> the tower's input [B, 3T, S, S]."""
        if self.frames == 1:
            return self.normalize(image)
        s = image.shape[-1]
        return self.normalize(image.reshape(-1, 3, s, s)).reshape(-1, 3 * self.frames, s, s)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.proj(self.tower(self.normalized(image)))  # [B, D, h, w]
        image_emb = l2_normalize(global_max_pool(fmap, self.grid), dim=-1)
        return image_emb, l2_normalize(fmap, dim=1)


class AVNet(nn.Module):
    """Our registry's architecture (``spec``); ``map_offset`` is where a trained model's map cells
    answer (measured after training, stored with the checkpoint), and ``contract`` its inputs
    and outputs as every later stage reads them."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        self.map_offset: tuple[float, float] = (0.0, 0.0)
        self.audio = AudioEncoder(spec)
        self.image = ImageEncoder(spec)

    @property
    def contract(self):
        return self.spec.contract(self.map_offset)

    def forward(self, wave: torch.Tensor, image: torch.Tensor) -> dict[str, torch.Tensor]:
        image_emb, image_map = self.image(image)
        return {"audio_emb": self.audio(wave), "image_emb": image_emb, "image_map": image_map}
