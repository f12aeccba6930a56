"""Audio-visual correspondence (Arandjelovic & Zisserman, "Look, Listen and Learn", ICCV 2017).

A binary classifier on fused (audio, image) embeddings decides whether a pair came from
the same scene. Negatives pair each image with the sound of another scene in the batch.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["AVCorrespondence"]


class AVCorrespondence(nn.Module):
    def __init__(self, model: nn.Module, hidden: int = 128):
        super().__init__()
        d = model.spec.embed_dim
        self.head = nn.Sequential(nn.Linear(3 * d, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))

    def logits(self, audio_emb: torch.Tensor, image_emb: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([audio_emb, image_emb, audio_emb * image_emb], -1)).squeeze(-1)

    def forward(self, out, batch, model) -> torch.Tensor:
        a, v = out["audio_emb"], out["image_emb"]
        pos = self.logits(a, v)
        neg = self.logits(a.roll(1, 0), v)
        y = torch.cat([torch.ones_like(pos), torch.zeros_like(neg)])
        return F.binary_cross_entropy_with_logits(torch.cat([pos, neg]), y)
