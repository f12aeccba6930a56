"""Where a model's map cells look, measured from the module, and a declared contract checked
against the module it describes.

The map's geometry (cell (i, j) looks at pixel ``(stride_y * i + offset_y, stride_x * j +
offset_x)`` of the model's input) is measured by back-propagating each of a few cells to the
input image: the gradient's centre of mass (of its squared magnitude, which the cell's own
receptive field dominates in a CNN and the residual stream of its own patch in a ViT) is
where the cell looks, and a least-squares line through those centres gives stride and offset.
A declared geometry more than a quarter of a stride (and 2 px) away from the measured one is
refused, naming both; so are an embedding size or a map grid the module does not produce.
"""

from __future__ import annotations

import numpy as np
import torch

from edge_sdk.contract import MapContract, ModelContract
from edge_sdk.contract_file import ContractFile
from edge_sdk.errors import ConfigError

__all__ = ["measure_map", "resolve_contract", "check_outputs"]

_FIX = "fix [outputs] in the contract (or drop map_stride / map_offset to use what is measured)"


def check_outputs(model, contract) -> tuple[int, int]:
    """Run ``model`` once on inputs of ``contract``'s shapes; the map's grid (h, w). The outputs'
    embedding sizes must be ``contract.embed_dim`` (ConfigError naming what the module gave)."""
    shapes = contract.input_shapes
    wave, image = torch.zeros(2, *shapes["wave"]), torch.full((2, *shapes["image"]), 128.0)
    try:
        with torch.inference_mode():
            out = model.eval()(wave, image)
    except Exception as e:  # noqa: BLE001 - the user's module may raise anything on the wrong shape
        raise ConfigError(f"the model does not run on the contract's inputs (wave {list(shapes['wave'])}, image "
                          f"{list(shapes['image'])}): {type(e).__name__}: {str(e)[:200]}",
                          "declare the window ([audio] sample_rate, seconds, features) and image size the model takes") from None  # fmt: skip
    d = contract.embed_dim
    got = {k: tuple(out[k].shape) for k in ("audio_emb", "image_emb", "image_map")}
    if got["audio_emb"] != (2, d) or got["image_emb"] != (2, d) or len(got["image_map"]) != 4 or got["image_map"][1] != d:
        raise ConfigError(f"the contract says embed_dim = {d}, the module gives audio_emb {got['audio_emb'][1:]}, "
                          f"image_emb {got['image_emb'][1:]}, image_map {got['image_map'][1:]}",
                          "declare [outputs] embed_dim as the towers' output size, or project both towers to one size")  # fmt: skip
    return got["image_map"][2], got["image_map"][3]


def _cells(n: int) -> list[int]:
    """Up to three cells along an axis, inside the border where there are enough (padding pulls border cells inward)."""
    if n <= 3:
        return list(range(n))
    return sorted({round(n / 4), n // 2, round(3 * n / 4)})


def measure_map(image_side, height: int, width: int, grid: tuple[int, int], seed: int = 0) -> tuple[tuple, tuple, float]:
    """``(stride, offset, residual_px)`` of a map, from the gradients of a few cells (see the module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(1, 3, height, width, generator=gen) * 255).requires_grad_(True)
    fmap = image_side(x)[1]
    rows, cols, centres = _cells(grid[0]), _cells(grid[1]), []
    for i in rows:
        for j in cols:
            (g,) = torch.autograd.grad(fmap[0, :, i, j].sum(), x, retain_graph=True)
            mass = (g[0] ** 2).sum(0).double().numpy()
            total = mass.sum()
            if not np.isfinite(total) or total <= 0:
                raise ConfigError(f"map cell ({i}, {j}) does not depend on the image", "check that image_map comes from the image tower")
            ys, xs = np.arange(height), np.arange(width)
            centres.append((i, j, float((mass.sum(1) * ys).sum() / total), float((mass.sum(0) * xs).sum() / total)))
    c = np.array(centres)
    stride, offset, residual = [], [], 0.0
    for index, centre, n in ((0, 2, grid[0]), (1, 3, grid[1])):
        if n == 1:
            stride.append(float((height, width)[index])), offset.append(float(c[:, centre].mean()))
            continue
        a = np.stack([c[:, index], np.ones(len(c))], 1)
        (s, o), *_ = np.linalg.lstsq(a, c[:, centre], rcond=None)
        stride.append(float(s)), offset.append(float(o))
        residual = max(residual, float(np.abs(a @ np.array([s, o]) - c[:, centre]).max()))
    return tuple(stride), tuple(offset), residual


def resolve_contract(model, declared: ContractFile) -> ModelContract:
    """The full contract of a wrapped model: the declared inputs and outputs checked against it,
    and the map's geometry declared (and checked) or measured."""
    contract = declared.contract(None)
    grid = check_outputs(model, contract)
    if declared.localize is False or grid == (1, 1):
        return contract
    img = declared.image
    stride, offset, residual = measure_map(model.image, img.height, img.width, grid)
    if declared.map_stride is None and declared.map_offset is None:
        return contract.with_map(MapContract(grid, _round(stride), _round(offset), "measured"))
    want_stride = declared.map_stride or stride
    want_offset = declared.map_offset or offset
    for what, want, got in (("map_stride", want_stride, stride), ("map_offset", want_offset, offset)):
        for axis in (0, 1):
            if abs(want[axis] - got[axis]) > max(0.25 * stride[axis], 2.0) + residual:
                raise ConfigError(f"the contract declares [outputs] {what} = {list(want)}, the module's cells look at "
                                  f"stride {list(_round(stride))}, offset {list(_round(offset))} (measured)", _FIX)  # fmt: skip
    return contract.with_map(MapContract(grid, tuple(map(float, want_stride)), tuple(map(float, want_offset)), "declared"))


def _round(v) -> tuple[float, float]:
    return tuple(round(float(x), 2) for x in v)
