"""Masked audio-visual modelling (after Georgescu et al., "Audiovisual Masked Autoencoders",
ICCV 2023, and Bachmann et al., "MultiMAE", ECCV 2022), for conv towers.

Patches of the normalised image and of the log-mel are masked (set to their mean, zero),
both towers encode what is left, and a light decoder (two 1x1 convs, used only in training)
reconstructs every masked patch from the *joint* encoding: each image cell sees its own
features plus the audio's pooled features, and each audio cell its own plus the image's.
A patch is one cell of the tower's output grid (the image tower's stride, 8 px for the
teacher; the audio tower's stride in mels and frames), so no position leaks its own
content. Targets are normalised per patch (MAE's normalised pixels); the loss is the mean
squared error over masked patches only, image and audio averaged.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["MaskedAV"]


def _mask(b: int, cells: tuple[int, int], ratio: float, device) -> torch.Tensor:
    """[B, h, w] booleans, exactly ``round(ratio * h * w)`` of them True per item."""
    h, w = cells
    n = max(1, round(ratio * h * w))
    order = torch.rand(b, h * w, device=device).argsort(1)
    mask = torch.zeros(b, h * w, dtype=torch.bool, device=device)
    mask.scatter_(1, order[:, :n], True)
    return mask.view(b, h, w)


def _patches(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[B, C, H, W] -> [B, h * w, C * ph * pw] per-patch targets, each normalised (zero mean, unit variance)."""
    p = F.unfold(x, kernel_size=size, stride=size).transpose(1, 2)
    return (p - p.mean(-1, keepdim=True)) / (p.var(-1, keepdim=True) + 1e-6).sqrt()


def _decoder(cin: int, cout: int, width: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, width, 1), nn.GELU(), nn.Conv2d(width, cout, 1))


class MaskedAV(nn.Module):
    """``ratio`` of the patches masked in each modality, on ``fraction`` of the batch."""

    def __init__(self, model: nn.Module, ratio: float = 0.6, fraction: float = 0.5, width: int = 128):
        super().__init__()
        self.ratio, self.fraction = ratio, fraction
        image, audio = model.image, model.audio
        s = model.spec.image.size
        self.image_patch = (s // model.spec.map_size,) * 2
        mel = audio.normalized_mel(torch.zeros(1, model.spec.audio.num_samples))
        self.audio_patch = (model.spec.audio_tower.stride,) * 2
        self.audio_grid = tuple(-(-n // model.spec.audio_tower.stride) for n in mel.shape[-2:])  # the log-mel padded to whole patches
        ci, ca = image.tower.out_channels, audio.tower.out_channels
        self.image_decoder = _decoder(ci + ca, 3 * image.frames * self.image_patch[0] * self.image_patch[1], width)
        self.audio_decoder = _decoder(ca + ci, self.audio_patch[0] * self.audio_patch[1], width)

    def forward(self, out, batch, model) -> torch.Tensor:
        b = max(2, int(len(batch["wave"]) * self.fraction))
        image = model.image.normalized(batch["image"][:b])
        mel = model.audio.normalized_mel(batch["wave"][:b])
        fh, fw = (g * p for g, p in zip(self.audio_grid, self.audio_patch))
        mel = F.pad(mel, (0, fw - mel.shape[-1], 0, fh - mel.shape[-2]))  # whole patches: one tower cell each
        grid_i = (image.shape[-2] // self.image_patch[0], image.shape[-1] // self.image_patch[1])
        mask_i, mask_a = _mask(b, grid_i, self.ratio, image.device), _mask(b, self.audio_grid, self.ratio, image.device)
        keep_i = (~F.interpolate(mask_i[:, None].float(), scale_factor=self.image_patch, mode="nearest").bool()).to(image.dtype)
        keep_a = (~F.interpolate(mask_a[:, None].float(), scale_factor=self.audio_patch, mode="nearest").bool()).to(mel.dtype)
        fi, fa = model.image.tower(image * keep_i), model.audio.tower(mel * keep_a)
        gi, ga = fi.amax((2, 3), keepdim=True), fa.amax((2, 3), keepdim=True)
        ri = self.image_decoder(torch.cat([fi, ga.expand(-1, -1, *fi.shape[-2:])], 1))  # [b, C ph pw, h, w]
        ra = self.audio_decoder(torch.cat([fa, gi.expand(-1, -1, *fa.shape[-2:])], 1))
        loss_i = self._masked_mse(ri, _patches(image.float(), self.image_patch), mask_i)
        loss_a = self._masked_mse(ra, _patches(mel.float(), self.audio_patch), mask_a)
        return 0.5 * (loss_i + loss_a)

    @staticmethod
    def _masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pred = pred.flatten(2).transpose(1, 2).float()  # [b, cells, values]
        err = ((pred - target) ** 2).mean(-1)  # [b, cells]
        m = mask.flatten(1).float()
        return (err * m).sum() / m.sum()
