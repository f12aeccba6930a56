"""From a model's ``image_map`` to a heatmap over the image, and where it peaks.

Torch-free (numpy): evaluation, training plots and the runtime's ``localize``
task all use it, so a heatmap means the same everywhere.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["upsample_map", "heatmaps", "contract_heatmaps", "INTERPOLATION"]

# Bicubic, not bilinear: a bilinear upsampling peaks exactly on a cell centre (8 px apart for
# the teacher), so an object between two centres is pointed at from beside it. Bicubic
# interpolation puts the peak between cells where the map says so. Chosen on training-split
# scenes (pointing, three teachers: 0.930 -> 0.973, 0.875 -> 0.900, 0.815 -> 0.940); the
# evaluation reports the bilinear figure too (``pointing_acc_bilinear``).
INTERPOLATION = ("cubic", "linear")


def _weights(t: np.ndarray, kind: str) -> tuple[np.ndarray, range]:
    """Interpolation weights for fractional positions ``t`` and the taps they apply to."""
    if kind == "linear":
        return np.stack([1 - t, t], 1), range(2)
    a = -0.75  # Keys' cubic convolution with OpenCV's parameter
    d = np.stack([1 + t, t, 1 - t, 2 - t], 1)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, far), range(-1, 3)


@functools.lru_cache(maxsize=64)
def _matrix(n_out: int, n_in: int, offset: float, stride: float, kind: str) -> np.ndarray:
    """[n_out, n_in]: output pixel p reads input cell (p - offset) / stride, edges replicated."""
    u = (np.arange(n_out) - offset) / stride
    i0 = np.floor(u).astype(int)
    w, taps = _weights(u - i0, kind)
    m = np.zeros((n_out, n_in), np.float32)
    for k, tap in enumerate(taps):
        np.add.at(m, (np.arange(n_out), np.clip(i0 + tap, 0, n_in - 1)), w[:, k])
    return m


def _hw(size) -> tuple[int, int]:
    return (int(size), int(size)) if np.ndim(size) == 0 else (int(size[0]), int(size[1]))


def upsample_map(sim: np.ndarray, size, offset=(0, 0), interpolation: str = "cubic", stride=None) -> np.ndarray:
    """[h, w] map -> the model's input size (a number, or (height, width)), with each cell at the
    pixel its features look at: cell (i, j) on ``(stride[0] * i + offset[0], stride[1] * j + offset[1])``
    (the contract's map geometry; ``stride`` defaults to the input size over the grid).

    For our towers cell j has its receptive field centred on pixel ``stride * j`` (3x3 stride-2
    convolutions, padding 1); a trained model may answer ``offset`` = (dy, dx) pixels from there,
    which :func:`~edge_sdk.objectives.zoom_equivariance.estimate_map_offset` measures without
    labels. Separable interpolation as two small matrix products (the runtime calls this every
    frame: 7 us where ``cv2.warpAffine``'s bicubic took 118 us).
    """
    if interpolation not in INTERPOLATION:
        raise ValueError(f"interpolation must be one of {INTERPOLATION}")
    (out_h, out_w), (h, w) = _hw(size), sim.shape
    sy, sx = stride if stride is not None else (out_h / h, out_w / w)
    rows = _matrix(out_h, h, float(offset[0]), float(sy), interpolation)
    cols = _matrix(out_w, w, float(offset[1]), float(sx), interpolation)
    return rows @ sim.astype(np.float32) @ cols.T


def heatmaps(audio_emb: np.ndarray, image_map: np.ndarray, size, offset=(0, 0), interpolation: str = "cubic", stride=None) -> np.ndarray:
    """Cosine similarity of each audio embedding with its image's positions, upsampled to ``size``."""
    sim = np.einsum("bd,bdhw->bhw", audio_emb, image_map)
    return np.stack([upsample_map(s, size, offset, interpolation, stride) for s in sim])


def contract_heatmaps(contract, audio_emb: np.ndarray, image_map: np.ndarray, interpolation: str = "cubic") -> np.ndarray:
    """:func:`heatmaps` placed as a model contract's map geometry says (over its height x width)."""
    m = contract.map
    size = (contract.image.height, contract.image.width)
    return heatmaps(audio_emb, image_map, size, m.offset if m else (0, 0), interpolation, m.stride if m else None)
