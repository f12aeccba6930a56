"""Contrastive audio-visual objectives over the batch.

- :class:`GlobalInfoNCE`: symmetric InfoNCE between audio and globally pooled image
  embeddings (CLIP, Radford et al. 2021; ImageBind, Girdhar et al. 2023).
- :class:`MILContrastive`: the audio-to-image similarity is the maximum over image
  positions (multiple-instance learning: the sound comes from somewhere in the picture),
  then symmetric InfoNCE over the batch (Arandjelovic & Zisserman, "Objects that Sound",
  ECCV 2018; Mo & Morgado, "EZ-VSL", ECCV 2022).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["GlobalInfoNCE", "MILContrastive", "mil_similarity"]


def mil_similarity(audio_emb: torch.Tensor, image_map: torch.Tensor) -> torch.Tensor:
    """[Ba, D] x [Bi, D, h, w] -> [Ba, Bi]: max over positions of the cosine similarity."""
    return torch.einsum("ad,idhw->aihw", audio_emb, image_map).flatten(2).amax(-1)


class _SymmetricNCE(nn.Module):
    def __init__(self, model: nn.Module, temperature: float = 0.07, learn_temperature: bool = True):
        super().__init__()
        scale = torch.tensor(math.log(1.0 / temperature))
        self.log_scale = nn.Parameter(scale) if learn_temperature else nn.Buffer(scale)

    def nce(self, sim: torch.Tensor) -> torch.Tensor:
        logits = sim * self.log_scale.clamp(max=math.log(100.0)).exp()
        target = torch.arange(len(sim), device=sim.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


class GlobalInfoNCE(_SymmetricNCE):
    def forward(self, out, batch, model) -> torch.Tensor:
        return self.nce(out["audio_emb"] @ out["image_emb"].t())


class MILContrastive(_SymmetricNCE):
    def forward(self, out, batch, model) -> torch.Tensor:
        return self.nce(mil_similarity(out["audio_emb"], out["image_map"]))
