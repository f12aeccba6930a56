"""Video frames cut to a model's input: the centre square of a picture, resized to the
model's ``size`` x ``size`` RGB, from an RGB array (:func:`center_crop_resize`), from the
three planes of a YUV 4:2:0 picture without converting the whole picture
(:func:`yuv420_square`), or from a decoded PyAV frame (:func:`av_square`).

Training (:class:`~edge_sdk.data.video.VideoFolderDataset`), calibration and the runtime's
sources all cut frames here, so a model sees the same pixels in every stage. numpy and
OpenCV only (a PyAV frame is passed in, PyAV is never imported); no torch.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["center_crop_resize", "yuv420_square", "av_square", "YUV420"]


def _shrink_square(sq: np.ndarray, size: int) -> np.ndarray:
    """An s x s image (any channels) to ``size`` x ``size``: exact 2x2 halvings while it stays at
    least ``size`` (OpenCV's INTER_AREA is fast only for an integer ratio), then area the rest
    of the way; a smaller square is enlarged bilinearly."""
    s = sq.shape[0]
    if s <= size:
        return np.ascontiguousarray(sq) if s == size else cv2.resize(sq, (size, size), interpolation=cv2.INTER_LINEAR)
    while s % 2 == 0 and s // 2 >= size:
        s //= 2
        sq = cv2.resize(sq, (s, s), interpolation=cv2.INTER_AREA)
    return sq if s == size else cv2.resize(sq, (size, size), interpolation=cv2.INTER_AREA)


def center_crop_resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop an HxWx3 image to a square, then resize it to ``size`` x ``size`` (area
    averaging when shrinking).

    The square is halved first (exact 2x2 averages) while it stays at least ``size``, then
    area-resized the rest of the way: 720 -> 96 px takes 0.24 ms instead of 1.1 ms in one
    step, within 8 levels (mean 0.2) of it (measured on the runtime benchmark's 720p clip;
    the runtime does this for every frame).
    """
    h, w = rgb.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return _shrink_square(rgb[y : y + s, x : x + s], size)


def _yuv_to_rgb(bt709: bool, full_range: bool) -> np.ndarray:
    """The 3x4 matrix taking (Y, U, V, 1) to (R, G, B): BT.601 or BT.709, limited (16-235) or
    full range -- swscale (PyAV's ``to_ndarray``) takes BT.601 unless the frame says BT.709."""
    kr, kb = (0.2126, 0.0722) if bt709 else (0.299, 0.114)
    kg = 1 - kr - kb
    sy, sc, y0 = (1.0, 1.0, 0.0) if full_range else (255 / 219, 255 / 224, 16.0)
    m = np.array([[sy, 0, 2 * (1 - kr) * sc, 0], [sy, -2 * (1 - kb) * kb / kg * sc, -2 * (1 - kr) * kr / kg * sc, 0], [sy, 2 * (1 - kb) * sc, 0, 0]])
    m[:, 3] = -y0 * m[:, 0] - 128 * (m[:, 1] + m[:, 2])
    return m.astype(np.float32)


_YUV_TO_RGB = {(bt709, full): _yuv_to_rgb(bt709, full) for bt709 in (False, True) for full in (False, True)}


def yuv420_square(y: np.ndarray, u: np.ndarray, v: np.ndarray, size: int, *, bt709: bool = False, full_range: bool = False) -> np.ndarray:
    """What :func:`center_crop_resize` gives on the RGB conversion of a YUV 4:2:0 picture (its
    three uint8 planes, chroma at half width and height), without converting the whole
    picture: the centre squares of the planes are shrunk first and only ``size`` x ``size``
    pixels are converted. A 720p frame takes 0.37 instead of 1.0 ms (RGB conversion of the
    frame, then the crop), within a mean 1.2 levels of it (chroma is averaged before the
    conversion instead of after; measured on the runtime benchmark's clip and
    ``../shared/data/video``)."""
    h, w = y.shape
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    c0, c1, cs = y0 // 2, x0 // 2, s // 2
    yuv = cv2.merge(
        [
            _shrink_square(y[y0 : y0 + s, x0 : x0 + s], size),
            _shrink_square(u[c0 : c0 + cs, c1 : c1 + cs], size),
            _shrink_square(v[c0 : c0 + cs, c1 : c1 + cs], size),
        ]
    )
    return cv2.transform(yuv, _YUV_TO_RGB[bool(bt709), bool(full_range)])  # rounds and saturates to uint8


YUV420 = ("yuv420p", "yuvj420p")  # PyAV frame formats :func:`av_square` cuts from the planes


def av_square(frame, size: int) -> np.ndarray:
    """A decoded PyAV video frame's centre square at ``size`` x ``size`` RGB uint8: from its
    YUV 4:2:0 planes (:func:`yuv420_square`, BT.709 when the frame says so, full range for
    ``yuvj420p``, as swscale would convert it), other formats through a whole RGB conversion."""
    if frame.format.name not in YUV420:
        return center_crop_resize(frame.to_ndarray(format="rgb24"), size)
    h, w, (py, pu, pv) = frame.height, frame.width, frame.planes
    y = np.frombuffer(py, np.uint8).reshape(-1, py.line_size)[:h, :w]
    u, v = (np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[: (h + 1) // 2, : (w + 1) // 2] for p in (pu, pv))
    return yuv420_square(y, u, v, size, bt709=frame.colorspace == 1, full_range=frame.format.name == "yuvj420p")
