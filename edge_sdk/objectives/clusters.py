"""Cross-modal clustering with balanced assignments (after Chen et al., "Multimodal Clustering
Networks", CVPR 2021, and Caron et al.'s SwAV, NeurIPS 2020; Sinkhorn-Knopp balancing as in
Asano et al., "Self-labelling via simultaneous clustering and representation learning").

K learned prototypes live in the joint embedding space. For each pair, the audio embedding
and the image embedding *where that sound is* (the map cells weighted by their similarity
to the sound: a scene shows several digits, one of them spoken) are scored against every
prototype; one assignment per pair is computed from both modalities together, balanced
over the batch by Sinkhorn-Knopp iterations (every cluster gets its share: no collapse),
and each modality is trained to predict that shared assignment. Pairs that sound and look
alike fall into the same cluster, across the batch, which InfoNCE alone treats as negatives.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["CrossModalClusters", "sinkhorn"]


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iters: int = 3) -> torch.Tensor:
    """[B, K] scores -> [B, K] soft assignments whose rows sum to 1 and whose columns are
    balanced (each cluster about B / K of the mass)."""
    q = torch.exp((scores - scores.max()) / epsilon).t()  # [K, B]
    q /= q.sum()
    k, b = q.shape
    for _ in range(iters):
        q /= q.sum(1, keepdim=True) * k
        q /= q.sum(0, keepdim=True) * b
    return (q * b).t()


def localized_image_emb(audio_emb: torch.Tensor, image_map: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """[B, D] x [B, D, h, w] -> [B, D]: each image's map cells averaged, weighted by a softmax of
    their similarity to its own sound (the embedding of where the sound is), normalised."""
    sim = torch.einsum("bd,bdhw->bhw", audio_emb, image_map).flatten(1)
    w = torch.softmax(sim / temperature, 1)
    return F.normalize(torch.einsum("bn,bdn->bd", w, image_map.flatten(2)), dim=-1)


class CrossModalClusters(nn.Module):
    def __init__(self, model: nn.Module, clusters: int = 64, temperature: float = 0.1, epsilon: float = 0.05, iters: int = 3):
        super().__init__()
        self.temperature, self.epsilon, self.iters = temperature, epsilon, iters
        g = torch.Generator().manual_seed(0)
        self.prototypes = nn.Parameter(F.normalize(torch.randn(clusters, model.spec.embed_dim, generator=g), dim=1))

    def forward(self, out, batch, model) -> torch.Tensor:
        protos = F.normalize(self.prototypes.float(), dim=1)
        audio = out["audio_emb"].float()
        image = localized_image_emb(audio.detach(), out["image_map"].float())
        sa, si = audio @ protos.t(), image @ protos.t()
        q = sinkhorn((sa.detach() + si.detach()) / 2, self.epsilon, self.iters)  # one assignment for the pair
        ce = lambda s: -(q * F.log_softmax(s / self.temperature, 1)).sum(1).mean()  # noqa: E731
        return 0.5 * (ce(sa) + ce(si))
