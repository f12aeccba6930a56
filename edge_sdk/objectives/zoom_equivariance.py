"""Zoom equivariance of the localization map (after Wang et al., "Self-supervised
Equivariant Attention Mechanism for Weakly Supervised Semantic Segmentation", CVPR 2020).

Multiple-instance objectives only ask that *some* position match the sound, so a network
is free to answer a little beside the object (we measured a teacher whose heatmaps sat a
cell up-left of every digit). An offset fixed in input pixels cannot survive a zoom: the
map of the zoomed-in centre of the image must equal the zoomed-in centre of the map. The
loss is one minus the cosine between the two, on half the batch.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ZoomEquivariance"]


class ZoomEquivariance(nn.Module):
    def __init__(self, model: nn.Module, zoom: int = 2, fraction: float = 0.5):
        super().__init__()
        self.zoom, self.fraction = zoom, fraction

    def forward(self, out, batch, model) -> torch.Tensor:
        image, fmap = batch["image"], out["image_map"]
        n = max(1, int(len(image) * self.fraction))
        s, h = image.shape[-1], fmap.shape[-1]
        lo = s // 2 - s // (2 * self.zoom)
        crop = image[:n, :, lo : lo + s // self.zoom, lo : lo + s // self.zoom]
        _, zoomed = model.image(F.interpolate(crop, size=(s, s), mode="bilinear", align_corners=False))
        # Zoomed cell i is centred on original pixel lo + i * stride / zoom; original cell j on
        # pixel j * stride (3x3 stride-2 convs): sample the original map there.
        stride = s / h
        cells = (lo + torch.arange(h, device=image.device) * stride / self.zoom) / stride
        g = 2 * cells / (h - 1) - 1
        grid = torch.stack(torch.meshgrid(g, g, indexing="xy"), -1)[None].expand(n, -1, -1, -1)
        target = F.grid_sample(fmap[:n], grid.to(fmap.dtype), mode="bilinear", align_corners=True)
        return 1 - F.cosine_similarity(zoomed, target, dim=1).mean()
