"""From a model's ``image_map`` to a heatmap over the image, and where it peaks.

Torch-free (numpy and OpenCV): evaluation, training plots and the runtime's ``localize``
task all use it, so a heatmap means the same everywhere.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["upsample_map", "heatmaps", "INTERPOLATION"]

# Bicubic, not bilinear: a bilinear upsampling peaks exactly on a cell centre (8 px apart for
# the teacher), so an object between two centres is pointed at from beside it. Bicubic
# interpolation puts the peak between cells where the map says so. Chosen on training-split
# scenes (pointing, three teachers: 0.930 -> 0.973, 0.875 -> 0.900, 0.815 -> 0.940); the
# evaluation reports the bilinear figure too (``pointing_acc_bilinear``).
INTERPOLATION = {"cubic": cv2.INTER_CUBIC, "linear": cv2.INTER_LINEAR}


def upsample_map(sim: np.ndarray, size: int, offset: tuple[int, int] = (0, 0), interpolation: str = "cubic") -> np.ndarray:
    """[h, w] map -> [size, size] image, with each cell at the pixel its features are centred on.

    Cell j of the towers' map has its receptive field centred on pixel ``stride * j`` (3x3
    stride-2 convolutions, padding 1); a trained model may answer ``offset`` = (dy, dx)
    pixels from there, which :func:`~edge_sdk.objectives.zoom_equivariance.estimate_map_offset`
    measures without labels.
    """
    m = np.array([[size / sim.shape[1], 0, offset[1]], [0, size / sim.shape[0], offset[0]]], np.float32)
    return cv2.warpAffine(sim.astype(np.float32), m, (size, size), flags=INTERPOLATION[interpolation], borderMode=cv2.BORDER_REPLICATE)


def heatmaps(audio_emb: np.ndarray, image_map: np.ndarray, size: int, offset: tuple[int, int] = (0, 0),
             interpolation: str = "cubic") -> np.ndarray:
    """Cosine similarity of each audio embedding with its image's positions, upsampled to size x size."""
    sim = np.einsum("bd,bdhw->bhw", audio_emb, image_map)
    return np.stack([upsample_map(s, size, offset, interpolation) for s in sim])
