"""Export-time folding of the image normalisation into the first convolution.

``ImageNormalize`` is ``x * scale + shift`` per channel, and a patchify stem is a
convolution without padding, so ``conv(x * scale + shift) = conv'(x)`` exactly, with the
weights scaled per input channel and the shift moved into a bias. The exported graph then
takes raw RGB straight into the stem: no full-resolution multiply and add (10% of the INT8
vision tower's time on this CPU, measured), and the INT8 input quantization sees raw pixels
(0..255, exact at scale 1). A stem with padding cannot be folded (its zero padding is not
zero once unnormalised) and is left as it is.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["fold_image_normalize", "foldable"]


def _stem(model) -> nn.Conv2d:
    return model.image.tower.layers[0][0]


def foldable(model) -> bool:
    try:
        conv = _stem(model)
    except (AttributeError, IndexError, TypeError):  # not an AVNet-style tower: leave it as it is
        return False
    return isinstance(conv, nn.Conv2d) and tuple(conv.padding) == (0, 0) and conv.groups == 1 and not isinstance(model.image.normalize, nn.Identity)


def fold_image_normalize(model):
    """A copy of ``model`` whose stem convolution absorbs the image normalisation (the model
    itself when its stem has padding)."""
    if not foldable(model):
        return model
    m = copy.deepcopy(model).eval()
    conv, norm = _stem(m), m.image.normalize
    scale, shift = norm.scale.reshape(1, -1, 1, 1), norm.shift.reshape(1, -1, 1, 1)
    reps = conv.in_channels // scale.shape[1]  # a stack of T frames: the stem reads T x RGB
    scale, shift = scale.repeat(1, reps, 1, 1), shift.repeat(1, reps, 1, 1)
    folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, bias=True)
    with torch.no_grad():
        folded.weight.copy_(conv.weight * scale)
        bias = (conv.weight * shift).sum(dim=(1, 2, 3))
        folded.bias.copy_(bias if conv.bias is None else conv.bias + bias)
    m.image.tower.layers[0][0] = folded
    m.image.normalize = nn.Identity()
    return m
