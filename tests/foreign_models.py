"""Two audio-visual architectures that are not ours, written as a user would bring them
(``--model tests/foreign_models.py:FUNCTION``): nothing here uses edge_sdk's towers or naming.

- EZ-VSL style (Mo & Morgado, ECCV 2022): ResNet-18 image tower at 224 x 224 giving a 7 x 7
  map, ResNet-18 audio tower on 3.0 s of 16 kHz audio as 64 log-mels; the submodules are called
  ``imgnet`` / ``audnet`` / ``trunk``, so nothing can be found by a name the SDK expects.
  Its contract is a TOML file (:data:`EZVSL_CONTRACT`).
- ImageBind style (Girdhar et al., CVPR 2023): a ViT-S/16 image tower at 224 (a 14 x 14 patch
  map beside the CLS embedding) and an AST-style audio transformer on 2 s of 128 log-mels
  (Gong et al., Interspeech 2021). Its contract is the module's ``contract`` attribute.

``*_small`` are narrow copies for the default test run; ``*_full`` have the real widths
(ResNet-18: 64-512 channels; ViT-S: 384 wide, 12 deep) for the slow tests.
"""

from __future__ import annotations

import torch
from torch import nn

EZVSL_CONTRACT = """
name = "ezvsl-resnet18"
license = "MIT"
source = "tests/foreign_models.py (EZ-VSL style)"

[audio]
sample_rate = 16000
seconds = 3.0
input = "log_mel"

[audio.features]
n_mels = 64
n_fft = 512
hop_length = 160
f_max = 8000

[image]
height = 224
width = 224
value_range = [0, 1]
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]

[outputs]
embed_dim = {dim}
pool = "max"

[towers]
audio = "audnet"
image = "imgnet"
"""


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = None if stride == 1 and cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class ResNet18(nn.Module):
    """torchvision's ResNet-18 layout (7x7 stride-2 stem, max pool, 4 stages of 2 basic blocks), no classifier."""

    def __init__(self, cin: int, widths: tuple[int, ...]):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(cin, widths[0], 7, 2, 3, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        layers, c = [], widths[0]
        for i, w in enumerate(widths):
            layers += [Block(c, w, 1 if i == 0 else 2), Block(w, w, 1)]
            c = w
        self.trunk = nn.Sequential(*layers)
        self.out_channels = c

    def forward(self, x):
        return self.trunk(self.stem(x))


class VisualNet(nn.Module):
    """ResNet-18 -> a 1x1 projection: the [B, D, 7, 7] map EZ-VSL localizes with."""

    def __init__(self, widths, dim):
        super().__init__()
        self.backbone = ResNet18(3, widths)
        self.head = nn.Conv2d(self.backbone.out_channels, dim, 1)

    def forward(self, x):
        return self.head(self.backbone(x))


class AudioNet(nn.Module):
    """ResNet-18 on a [B, 1, 64, T] log-mel -> max over time and frequency -> a linear projection."""

    def __init__(self, widths, dim):
        super().__init__()
        self.backbone = ResNet18(1, widths)
        self.head = nn.Linear(self.backbone.out_channels, dim)

    def forward(self, x):
        return self.head(self.backbone(x).flatten(2).amax(2))


class EZVSL(nn.Module):
    def __init__(self, widths=(64, 128, 256, 512), dim=512):
        super().__init__()
        self.imgnet, self.audnet = VisualNet(widths, dim), AudioNet(widths, dim)


def ezvsl_small() -> EZVSL:
    torch.manual_seed(0)
    return EZVSL((16, 32, 64, 128), 64)


def ezvsl_full() -> EZVSL:
    torch.manual_seed(0)
    return EZVSL()


class Attention(nn.Module):
    """Multi-head self-attention written out (as timm's ViT does): qkv, softmax(q k^T / sqrt(d)) v, proj."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, n, d))


class Layer(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Encoder(nn.Module):
    """Pre-norm transformer blocks (ViT / AST)."""

    def __init__(self, dim: int, depth: int, heads: int):
        super().__init__()
        self.blocks = nn.ModuleList([Layer(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return self.norm(x)


class ViT(nn.Module):
    """ViT-S/16 style: 16x16 patches of a 224 image -> 14 x 14 tokens + CLS -> (CLS embedding, patch map)."""

    def __init__(self, dim: int, depth: int, heads: int, out: int, size: int = 224, patch: int = 16):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, patch)
        self.grid = size // patch
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 1 + self.grid**2, dim) * 0.02)
        self.encoder = Encoder(dim, depth, heads)
        self.head = nn.Linear(dim, out)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)  # [B, N, dim]
        t = self.encoder(torch.cat([self.cls.expand(len(t), -1, -1), t], 1) + self.pos)
        y = self.head(t)
        grid = y[:, 1:].transpose(1, 2).reshape(len(y), -1, self.grid, self.grid)
        return y[:, 0], grid


class AST(nn.Module):
    """Audio Spectrogram Transformer style: 16x16 patches of a [B, 1, 128, T] log-mel -> CLS embedding."""

    def __init__(self, dim: int, depth: int, heads: int, out: int, mels: int = 128, frames: int = 198, patch: int = 16):
        super().__init__()
        self.patch = nn.Conv2d(1, dim, patch, patch)
        n = (mels // patch) * (frames // patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 1 + n, dim) * 0.02)
        self.encoder = Encoder(dim, depth, heads)
        self.head = nn.Linear(dim, out)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = self.encoder(torch.cat([self.cls.expand(len(t), -1, -1), t], 1) + self.pos)
        return self.head(t[:, 0])


class ImageBindStyle(nn.Module):
    def __init__(self, dim=384, depth=12, heads=6, out=512):
        super().__init__()
        self.vision, self.sound = ViT(dim, depth, heads, out), AST(dim, depth, heads, out)
        self.contract = {
            "name": "imagebind-style-vits16",
            "audio": {"sample_rate": 16000, "seconds": 2.0, "input": "log_mel",
                      "features": {"n_mels": 128, "n_fft": 400, "hop_length": 160, "mean": -4.27, "std": 9.14}},
            "image": {"height": 224, "width": 224, "value_range": [0, 1], "mean": [0.48, 0.46, 0.41], "std": [0.27, 0.26, 0.28]},
            "outputs": {"embed_dim": out, "map_stride": [16, 16], "map_offset": [7.5, 7.5]},
            "towers": {"audio": "sound", "image": "vision"},
        }  # fmt: skip


def imagebind_small() -> ImageBindStyle:
    torch.manual_seed(0)
    return ImageBindStyle(96, 2, 3, 64)


def imagebind_full() -> ImageBindStyle:
    torch.manual_seed(0)
    return ImageBindStyle()
