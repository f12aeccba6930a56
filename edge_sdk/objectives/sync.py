"""Temporal synchrony (Owens & Efros, "Audio-Visual Scene Analysis with Self-Supervised
Multisensory Features", ECCV 2018): the same clip with its audio shifted in time is the
negative. Needs clip batches (``wave_shifted`` [B, M, N], see ``AVDigitClips``).

The score of a (frame, window) pair is the localized similarity (max over positions), and
the loss is a softmax over the aligned window and its M shifted versions.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["TemporalSync"]


class TemporalSync(nn.Module):
    def __init__(self, model: nn.Module, temperature: float = 0.07):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    def forward(self, out, batch, model) -> torch.Tensor:
        if "wave_shifted" not in batch:
            raise ValueError('the sync objective needs clip data: set [data] kind = "clips" in the recipe')
        b, m, n = batch["wave_shifted"].shape
        shifted = model.audio(batch["wave_shifted"].reshape(b * m, n)).reshape(b, m, -1)
        audio = torch.cat([out["audio_emb"][:, None], shifted], 1)  # [B, 1+M, D]
        scores = torch.einsum("bkd,bdhw->bkhw", audio, out["image_map"]).flatten(2).amax(-1)
        logits = scores * self.log_scale.clamp(max=math.log(100.0)).exp()
        return F.cross_entropy(logits, torch.zeros(b, dtype=torch.long, device=logits.device))
