"""Zoom equivariance of the localization map (after Wang et al., "Self-supervised
Equivariant Attention Mechanism for Weakly Supervised Semantic Segmentation", CVPR 2020).

Multiple-instance objectives only ask that *some* position match the sound, so a network
is free to answer a little beside the object (we measured a teacher whose heatmaps sat a
cell up-left of every digit). An offset fixed in input pixels cannot survive a zoom: the
map of the zoomed-in centre of the image must equal the zoomed-in centre of the map.

- :class:`ZoomEquivariance`: that as a loss (one minus the cosine), on part of the batch.
- :func:`estimate_map_offset`: the same consistency used to *measure*, without labels,
  the pixel (offset) on which a trained model's map cells are centred: cell j sits on
  pixel ``stride * j + offset``. The heatmap upsampling then uses it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ZoomEquivariance", "estimate_map_offset"]


def _zoom_in(image: torch.Tensor, zoom: int) -> tuple[torch.Tensor, int]:
    s = image.shape[-1]
    lo = s // 2 - s // (2 * zoom)
    crop = image[..., lo : lo + s // zoom, lo : lo + s // zoom]  # [B, 3, h, w], or a stack [B, T, 3, h, w]
    zoomed = F.interpolate(crop.flatten(1, -3), size=(s, s), mode="bilinear", align_corners=False)
    return zoomed.view(*image.shape[:-2], s, s), lo


def _sample_at_zoomed_cells(fmap: torch.Tensor, s: int, lo: int, zoom: int, offset=(0.0, 0.0)) -> torch.Tensor:
    """The original map read where each zoomed cell is centred.

    Zoomed cell i sits on zoomed pixel ``p = stride * i + o``, i.e. original pixel
    ``lo + (p + 0.5) / zoom - 0.5`` (half-pixel resize); original cell j sits on pixel
    ``stride * j + o``.
    """
    h = fmap.shape[-1]
    stride = s / h
    i = torch.arange(h, device=fmap.device, dtype=fmap.dtype)
    axes = [((lo + (stride * i + o + 0.5) / zoom - 0.5) - o) / stride for o in offset]  # (y, x) in cells
    gy, gx = (2 * a / (h - 1) - 1 for a in axes)
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1)[None].expand(len(fmap), -1, -1, -1)
    return F.grid_sample(fmap, grid, mode="bilinear", align_corners=True)


class ZoomEquivariance(nn.Module):
    def __init__(self, model: nn.Module, zoom: int = 2, fraction: float = 0.5):
        super().__init__()
        self.zoom, self.fraction = zoom, fraction

    def forward(self, out, batch, model) -> torch.Tensor:
        n = max(1, int(len(batch["image"]) * self.fraction))
        zoomed_in, lo = _zoom_in(batch["image"][:n], self.zoom)
        _, zoomed = model.image(zoomed_in)
        target = _sample_at_zoomed_cells(out["image_map"][:n], batch["image"].shape[-1], lo, self.zoom)
        return 1 - F.cosine_similarity(zoomed, target, dim=1).mean()


@torch.no_grad()
def estimate_map_offset(model: nn.Module, images: torch.Tensor, zoom: int = 2, radius: int = 8) -> tuple[int, int]:
    """(dy, dx) in pixels, within ``radius``, that makes the model's map most zoom-consistent."""
    model.eval()
    _, fmap = model.image(images)
    zoomed_in, lo = _zoom_in(images, zoom)
    _, zoomed = model.image(zoomed_in)
    s = images.shape[-1]
    score = {
        (dy, dx): F.cosine_similarity(zoomed, _sample_at_zoomed_cells(fmap, s, lo, zoom, (dy, dx)), dim=1).mean().item()
        for dy in range(-radius, radius + 1)
        for dx in range(-radius, radius + 1)
    }
    return max(score, key=score.get)
