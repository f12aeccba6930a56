"""Conv towers for images and log-mel spectrograms.

Two block families: ``basic`` (ResNet basic block, He et al. 2016) for teachers, dense
3x3 convs that INT8 kernels run fast; ``dw`` (MobileNetV2 inverted residual, Sandler et
al. 2018) for edge students. Stem: 3x3 stride 2; each stage after the first halves the
resolution. Output: the last stage's feature map.
"""

from __future__ import annotations

from torch import nn

from edge_sdk.spec import TowerSpec

__all__ = ["ConvTower"]


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _patchify(cin: int, cout: int, stride: int) -> nn.Sequential:
    """Non-overlapping ``stride`` x ``stride`` patches to ``cout`` channels (ConvNeXt's stem)."""
    return nn.Sequential(nn.Conv2d(cin, cout, stride, stride, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int = 1):
        super().__init__()
        self.body = nn.Sequential(_conv_bn(cin, cout, 3, stride), _conv_bn(cout, cout, 3, act=False))
        self.skip = nn.Identity() if stride == 1 and cin == cout else _conv_bn(cin, cout, 1, stride, act=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.body(x) + self.skip(x))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int = 4):
        super().__init__()
        mid = cin * expand
        self.body = nn.Sequential(_conv_bn(cin, mid, 1), _conv_bn(mid, mid, 3, stride, groups=mid), _conv_bn(mid, cout, 1, act=False))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


_BLOCKS = {"basic": BasicBlock, "dw": InvertedResidual}


class ConvTower(nn.Module):
    def __init__(self, spec: TowerSpec, in_channels: int):
        super().__init__()
        if spec.block not in _BLOCKS:
            raise ValueError(f"unknown block {spec.block!r}; use one of {sorted(_BLOCKS)}")
        block = _BLOCKS[spec.block]
        stem = _conv_bn(in_channels, spec.stem, 3, 2) if spec.stem_stride == 2 else _patchify(in_channels, spec.stem, spec.stem_stride)
        layers: list[nn.Module] = [stem]
        cin = spec.stem
        for i, (cout, depth) in enumerate(zip(spec.channels, spec.depths)):
            for j in range(depth):
                layers.append(block(cin, cout, 2 if (i > 0 and j == 0) else 1, spec.expand))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.out_channels = cin

    def forward(self, x):
        return self.layers(x)
