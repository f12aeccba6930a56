"""Video frames cut to a model's input: the centre of a picture at the model's aspect ratio,
resized to its ``height`` x ``width`` RGB (``size``: one number for a square), from an RGB
array (:func:`center_crop_resize`), from the three planes of a YUV 4:2:0 picture without
converting the whole picture (:func:`yuv420_square`), or from a decoded PyAV frame
(:func:`av_square`).

Training (:class:`~edge_sdk.data.video.VideoFolderDataset`), calibration and the runtime's
sources all cut frames here, so a model sees the same pixels in every stage. numpy and
OpenCV only (a PyAV frame is passed in, PyAV is never imported); no torch.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["center_crop_resize", "yuv420_square", "av_square", "YUV420", "hw", "crop_box", "still_stack"]


def hw(size) -> tuple[int, int]:
    """``(height, width)`` of a model input size: one number (a square) or a pair."""
    return (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))


def crop_box(h: int, w: int, out_h: int, out_w: int) -> tuple[int, int, int, int]:
    """``(y, x, ch, cw)``: the largest centred region of an ``h`` x ``w`` picture with the aspect
    ratio of ``out_h`` x ``out_w`` (the whole short side, for a square)."""
    if w * out_h >= h * out_w:  # wider than the model's input: full height, centre columns
        ch, cw = h, max(1, round(h * out_w / out_h))
    else:
        ch, cw = max(1, round(w * out_h / out_w)), w
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def _shrink(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """An image (any channels) to ``out_h`` x ``out_w``: exact 2x2 halvings while both sides stay
    at least the target's (OpenCV's INTER_AREA is fast only for an integer ratio), then area the
    rest of the way; a smaller image is enlarged bilinearly."""
    h, w = img.shape[:2]
    if (h, w) == (out_h, out_w):
        return np.ascontiguousarray(img)
    if h < out_h or w < out_w:
        return cv2.resize(img, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    while h % 2 == 0 and w % 2 == 0 and h // 2 >= out_h and w // 2 >= out_w:
        h, w = h // 2, w // 2
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    return img if (h, w) == (out_h, out_w) else cv2.resize(img, (out_w, out_h), interpolation=cv2.INTER_AREA)


def center_crop_resize(rgb: np.ndarray, size) -> np.ndarray:
    """Centre-crop an HxWx3 image to the aspect ratio of ``size`` (a number: a square; or
    ``(height, width)``), then resize it to ``size`` (area averaging when shrinking).

    The crop is halved first (exact 2x2 averages) while it stays at least ``size``, then
    area-resized the rest of the way: 720 -> 96 px takes 0.24 ms instead of 1.1 ms in one
    step, within 8 levels (mean 0.2) of it (measured on the runtime benchmark's 720p clip;
    the runtime does this for every frame).
    """
    out_h, out_w = hw(size)
    y, x, ch, cw = crop_box(*rgb.shape[:2], out_h, out_w)
    return _shrink(rgb[y : y + ch, x : x + cw], out_h, out_w)


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


def yuv420_square(y: np.ndarray, u: np.ndarray, v: np.ndarray, size, *, bt709: bool = False, full_range: bool = False) -> np.ndarray:
    """What :func:`center_crop_resize` gives on the RGB conversion of a YUV 4:2:0 picture (its
    three uint8 planes, chroma at half width and height), without converting the whole
    picture: the centre crops of the planes are shrunk first and only the model's ``size``
    pixels are converted. A 720p frame takes 0.37 instead of 1.0 ms (RGB conversion of the
    frame, then the crop), within a mean 1.2 levels of it (chroma is averaged before the
    conversion instead of after; measured on the runtime benchmark's clip and
    ``../shared/data/video``)."""
    out_h, out_w = hw(size)
    y0, x0, ch, cw = crop_box(*y.shape, out_h, out_w)
    c0, c1 = y0 // 2, x0 // 2
    planes = [y[y0 : y0 + ch, x0 : x0 + cw], u[c0 : c0 + ch // 2, c1 : c1 + cw // 2], v[c0 : c0 + ch // 2, c1 : c1 + cw // 2]]
    yuv = cv2.merge([_shrink(p, out_h, out_w) for p in planes])
    return cv2.transform(yuv, _YUV_TO_RGB[bool(bt709), bool(full_range)])  # rounds and saturates to uint8


YUV420 = ("yuv420p", "yuvj420p")  # PyAV frame formats :func:`av_square` cuts from the planes


def av_square(frame, size) -> np.ndarray:
    """A decoded PyAV video frame's centre at the model's ``size`` (a number, or (height, width)), RGB uint8: from its
    YUV 4:2:0 planes (:func:`yuv420_square`, BT.709 when the frame says so, full range for
    ``yuvj420p``, as swscale would convert it), other formats through a whole RGB conversion."""
    if frame.format.name not in YUV420:
        return center_crop_resize(frame.to_ndarray(format="rgb24"), size)
    h, w, (py, pu, pv) = frame.height, frame.width, frame.planes
    y = np.frombuffer(py, np.uint8).reshape(-1, py.line_size)[:h, :w]
    u, v = (np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[: (h + 1) // 2, : (w + 1) // 2] for p in (pu, pv))
    return yuv420_square(y, u, v, size, bt709=frame.colorspace == 1, full_range=frame.format.name == "yuvj420p")


def still_stack(images: np.ndarray, frames: int) -> np.ndarray:
    """Still pictures [B, 3, H, W] as the visual input of a model that takes ``frames`` per input:
    unchanged for one, else [B, T, 3, H, W], each still seen T times (nothing moves)."""
    return images if frames == 1 else np.repeat(images[:, None], frames, 1)
