"""Audio-only BYOL (Niizumi et al., "BYOL for Audio", IJCNN 2021), as an auxiliary loss.

Two augmented views of each waveform (random time shift, gain, background mix-in and
noise, standing in for BYOL-A's mixup and random-resize-crop); an online branch (audio
encoder, projector, predictor) predicts the projection of a slow EMA copy of the encoder
(the target) for the other view. No negatives. Call :meth:`update_target` after each step.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["BYOLAudio"]


def _mlp(d_in: int, d_out: int, hidden: int = 256) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, d_out))


def _augment(wave: torch.Tensor) -> torch.Tensor:
    b, n = wave.shape
    shift = torch.randint(-n // 8, n // 8 + 1, (b,), device=wave.device)
    idx = (torch.arange(n, device=wave.device)[None] - shift[:, None]) % n
    x = wave.gather(1, idx)
    gain = 10 ** (torch.empty(b, 1, device=wave.device).uniform_(-6, 6) / 20)
    mix = torch.empty(b, 1, device=wave.device).uniform_(0, 0.3)
    x = gain * (x + mix * x.roll(1, 0))
    return x + 1e-3 * torch.randn_like(x)


class BYOLAudio(nn.Module):
    def __init__(self, model: nn.Module, momentum: float = 0.99):
        super().__init__()
        self.momentum = momentum
        self.projector = _mlp(model.spec.embed_dim, 128)
        self.predictor = _mlp(128, 128)
        self.target = copy.deepcopy(nn.ModuleList([model.audio, self.projector]))  # (encoder, projector)
        self.target.requires_grad_(False)

    def forward(self, out, batch, model) -> torch.Tensor:
        target = self.target
        v1, v2 = _augment(batch["wave"]), _augment(batch["wave"])
        online = [self.predictor(self.projector(model.audio(v))) for v in (v1, v2)]
        with torch.no_grad():
            goal = [target[1](target[0](v)) for v in (v2, v1)]
        return sum(2 - 2 * F.cosine_similarity(p, g.detach(), dim=-1).mean() for p, g in zip(online, goal)) / 2

    @torch.no_grad()
    def update_target(self, model) -> None:
        target = self.target
        online = nn.ModuleList([model.audio, self.projector])
        for t, o in zip(target.parameters(), online.parameters()):
            t.lerp_(o, 1 - self.momentum)
        for t, o in zip(target.buffers(), online.buffers()):
            t.copy_(o)
