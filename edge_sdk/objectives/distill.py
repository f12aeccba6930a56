"""Label-free distillation of a teacher AVNet into a student, combinable by recipe.

Each loss is built with ``(student, teacher, **params)`` and reads the frozen teacher's outputs for the same batch from ``batch["teacher"]``
(the trainer fills it when the recipe has a ``[distill] teacher``):

- :class:`EmbedCosine` -- each student embedding, through a linear projection to the
  teacher's width, is pulled to the teacher's embedding by cosine distance (FitNets'
  projection hint, Romero et al. 2015, on the final embeddings as in SEED, Fang et al. 2021).
- :class:`RelationKD` -- the student's in-batch audio-to-image similarity distribution
  (softmax over the batch, both directions, global and multiple-instance similarities)
  matches the teacher's by KL divergence (relational KD, Park et al., CVPR 2019;
  CLIP-KD's interactive contrastive distillation, Yang et al., CVPR 2024).
- :class:`MapKD` -- the student's localization heatmap (softmax over positions of the
  sound's similarity to each image cell) matches the teacher's by KL divergence
  (attention transfer, Zagoruyko & Komodakis, ICLR 2017).

Relation and map losses compare similarities, not features, so they work across
embedding widths (``student_xs`` has 64 dimensions, the teacher 128).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from edge_sdk.objectives.contrastive import mil_similarity

__all__ = ["EmbedCosine", "RelationKD", "MapKD", "DISTILL_OBJECTIVES"]


def _kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) over the last axis, averaged over rows."""
    return F.kl_div(F.log_softmax(student_logits, -1), F.log_softmax(teacher_logits, -1), log_target=True, reduction="batchmean")


class EmbedCosine(nn.Module):
    def __init__(self, model: nn.Module, teacher: nn.Module):
        super().__init__()
        d, dt = model.spec.embed_dim, teacher.spec.embed_dim
        self.audio_proj = nn.Linear(d, dt)
        self.image_proj = nn.Linear(d, dt)

    def forward(self, out, batch, model) -> torch.Tensor:
        t = batch["teacher"]
        cos_a = F.cosine_similarity(self.audio_proj(out["audio_emb"]), t["audio_emb"], dim=-1)
        cos_i = F.cosine_similarity(self.image_proj(out["image_emb"]), t["image_emb"], dim=-1)
        return (2 - cos_a.mean() - cos_i.mean()) / 2


class RelationKD(nn.Module):
    def __init__(self, model: nn.Module, teacher: nn.Module, temperature: float = 0.05):
        super().__init__()
        self.temperature = temperature

    def forward(self, out, batch, model) -> torch.Tensor:
        t, tau = batch["teacher"], self.temperature
        loss = out["audio_emb"].new_zeros(())
        for sim in (lambda o: o["audio_emb"] @ o["image_emb"].t(), lambda o: mil_similarity(o["audio_emb"], o["image_map"])):
            s_sim, t_sim = sim(out) / tau, sim(t) / tau
            loss = loss + _kl(s_sim, t_sim) + _kl(s_sim.t(), t_sim.t())
        return loss / 4


class MapKD(nn.Module):
    def __init__(self, model: nn.Module, teacher: nn.Module, temperature: float = 0.05):
        super().__init__()
        self.temperature = temperature

    def forward(self, out, batch, model) -> torch.Tensor:
        t = batch["teacher"]

        def heat(o):
            return torch.einsum("bd,bdhw->bhw", o["audio_emb"], o["image_map"]).flatten(1) / self.temperature

        return _kl(heat(out), heat(t))


DISTILL_OBJECTIVES = {"kd_embed": EmbedCosine, "kd_relation": RelationKD, "kd_map": MapKD}
