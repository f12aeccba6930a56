"""What every picture sink shows: a frame with its heatmap, the task's values and a label
drawn over it (the annotated video, the MJPEG preview, the window, the demos' snapshot)."""

from __future__ import annotations

import numpy as np

from edge_sdk.runtime.frames import Result

__all__ = ["annotate"]


def annotate(r: Result, label: str = "", min_side: int = 0) -> np.ndarray:
    """The frame (RGB) with the heatmap blended over the model's square, the task's values and
    ``label`` (e.g. backend and FPS) at the bottom. A frame smaller than ``min_side`` is first
    enlarged by a whole factor (nearest neighbour), so the text stays readable."""
    import cv2

    img = r.frame.image
    f = max(1, -(-min_side // max(img.shape[:2])))
    img = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_NEAREST) if f > 1 else img.copy()
    h, w = img.shape[:2]
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    if r.heatmap is not None:
        hm = r.heatmap.astype(np.float32)
        hm = (hm - hm.min()) / (np.ptp(hm) + 1e-9)
        colour = cv2.applyColorMap(cv2.resize((hm * 255).astype(np.uint8), (side, side)), cv2.COLORMAP_JET)[:, :, ::-1]
        img[y0 : y0 + side, x0 : x0 + side] = cv2.addWeighted(img[y0 : y0 + side, x0 : x0 + side], 0.55, colour, 0.45, 0)
    v = r.values
    if "peak_xy" in v:
        cv2.circle(img, tuple(int(c * f) for c in v["peak_xy"]), max(4, side // 40), (255, 255, 255), 2)
    for face in v.get("faces", []):
        x0, y0, x1, y1 = (int(c * f) for c in face["box"])
        cv2.rectangle(img, (x0, y0), (x1, y1), (0, 255, 0), 2)
    words = {"score": "score {}", "offset_ms": "offset {:+.0f} ms", "offset_confidence": "({} sd)", "belongs": "belongs {}"}
    text = "  ".join(f.format(v[k]) for k, f in words.items() if k in v) + f"  {r.latency_ms:.0f} ms"
    cv2.putText(img, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
    if label:
        cv2.putText(img, label, (8, h - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1)
    return img
