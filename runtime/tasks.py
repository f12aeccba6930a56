"""Live tasks computed from the model's three outputs for one video frame.

- ``localize``: sound-source localization -- the heatmap ``audio_emb . image_map``, its
  peak in frame pixels and its score (Arandjelovic & Zisserman, "Objects that Sound").
- ``sync``: audio-visual correspondence and synchrony -- the MIL score of the aligned
  window (does this sound belong to this picture), and the A/V offset in milliseconds
  whose window scores best, averaged over a sliding window of frames (a lip-sync check,
  after Owens & Efros 2018).
- ``retrieval``: the nearest items of a gallery folder (images and/or sounds, embedded once
  with the same bundle) for the live audio and the live picture.
- ``speaker``: active speaker -- faces found with OpenCV's Haar cascade, each scored by
  the best correspondence inside its box.

A task says which audio windows it needs (``shifts_ms``: window ends relative to the frame)
and turns embeddings into ``(values, heatmap)``.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np

from edge_sdk.errors import ConfigError
from edge_sdk.heatmap import upsample_map

__all__ = ["TASKS", "make_task", "Geometry"]


class Geometry:
    """Where map cells land in the captured frame: the frame's centre at the model's aspect ->
    the model's ``size`` (height, width) -> map cells, each looking at model pixel
    ``stride * j + offset`` (the contract's map geometry; the stride defaults to size / grid)."""

    def __init__(self, frame_hw: tuple[int, int], size, grid_hw: tuple[int, int], offset=(0, 0), stride=None):
        from edge_sdk.media.image import crop_box, hw

        self.size = hw(size)
        self.y0, self.x0, ch, _ = crop_box(*frame_hw, *self.size)
        self.scale = ch / self.size[0]  # frame pixels per model pixel (the same on both axes: the aspect is kept)
        self.stride = tuple(stride) if stride is not None else (self.size[0] / grid_hw[0], self.size[1] / grid_hw[1])
        self.offset = offset

    def model_to_frame(self, ym: float, xm: float) -> tuple[float, float]:
        """A pixel of the model's input -> (x, y) in the captured frame."""
        return self.x0 + xm * self.scale, self.y0 + ym * self.scale

    def cell_to_frame(self, iy: int, ix: int) -> tuple[float, float]:
        return self.model_to_frame(self.stride[0] * iy + self.offset[0], self.stride[1] * ix + self.offset[1])

    def box_to_cells(self, box) -> tuple[slice, slice]:
        """Map cells whose centres fall in a frame box (x0, y0, x1, y1)."""
        x0, y0, x1, y1 = box

        def rng(a0, a1, origin, stride, off):
            lo = int(np.ceil(((a0 - origin) / self.scale - off) / stride))
            hi = int(np.floor(((a1 - origin) / self.scale - off) / stride)) + 1
            return slice(max(lo, 0), max(hi, lo + 1))

        return rng(y0, y1, self.y0, self.stride[0], self.offset[0]), rng(x0, x1, self.x0, self.stride[1], self.offset[1])


class Task:
    name = ""
    shifts_ms: tuple[float, ...] = (0.0,)
    needs_map = False  # whether the task places results in the image (the model must have a localization map)

    def setup(self, towers, contract) -> None:
        """Called once with the runner (a gallery embeds itself here)."""

    def __call__(self, frame, audio_emb: np.ndarray, image_emb: np.ndarray, image_map: np.ndarray, geom: Geometry):
        raise NotImplementedError


def _sim(a: np.ndarray, fmap: np.ndarray) -> np.ndarray:
    return (a @ fmap.reshape(len(a), -1)).reshape(fmap.shape[1:])


class Localize(Task):
    name = "localize"
    needs_map = True

    def __call__(self, frame, audio_emb, image_emb, image_map, geom):
        sim = _sim(audio_emb[0], image_map)
        # The peak of the upsampled heatmap (as in evaluation), not of the coarse cells.
        heat = upsample_map(sim, geom.size, geom.offset, stride=geom.stride)
        x, y = geom.model_to_frame(*divmod(int(heat.argmax()), heat.shape[1]))
        cells = np.sort(sim, axis=None)  # a few dozen cells: sorting beats np.median's machinery
        n = cells.size
        top, median = float(cells[-1]), float(cells[(n - 1) // 2] + cells[n // 2]) / 2
        return {"peak_xy": [round(x, 1), round(y, 1)], "score": round(top, 4), "confidence": round(top - median, 4)}, sim


class Sync(Task):
    """Window ends from -``max_ms`` to +``max_ms`` around the frame, every ``step_ms``: the
    best-scoring end, averaged over the last ``frames`` frames, is the audio's offset (positive:
    the sound comes late), as ``edge-sdk eval``'s ``offset_mae_ms`` estimates it. Its confidence
    is how far that score stands above the curve's median, in standard deviations of the curve:
    0 for a flat curve (nothing moves or nothing is heard); an exact oracle read offsets made
    with ffmpeg at 1.5-2.2 (a broad peak), so it ranks estimates rather than being a probability."""

    name = "sync"

    def __init__(self, max_ms: float = 700.0, step_ms: float = 50.0, frames: int = 50, threshold: float = 0.5):
        k = int(max_ms // step_ms)
        self.shifts_ms = tuple(float(i * step_ms) for i in range(-k, k + 1))
        self.history: deque = deque(maxlen=frames)
        self.threshold = threshold

    def __call__(self, frame, audio_emb, image_emb, image_map, geom):
        sims = np.einsum("kd,dhw->khw", audio_emb, image_map)  # one map per shifted window
        scores = sims.reshape(len(sims), -1).max(1)
        self.history.append(scores)
        mean = np.mean(self.history, axis=0)
        zero = self.shifts_ms.index(0.0)
        best = int(mean.argmax())
        return {
            "score": round(float(scores[zero]), 4),
            "belongs": bool(scores[zero] >= self.threshold),
            "offset_ms": self.shifts_ms[best],
            "offset_confidence": round(float((mean[best] - np.median(mean)) / (mean.std() + 1e-6)), 2),
            "window_frames": len(self.history),
        }, sims[zero]


class Retrieval(Task):
    """Nearest gallery items: images for the live sound, sounds for the live picture."""

    name = "retrieval"
    _IMAGES, _SOUNDS = (".png", ".jpg", ".jpeg", ".bmp"), (".wav",)

    def __init__(self, gallery: str | None = None, top: int = 3):
        if not gallery or not Path(gallery).is_dir():
            raise ConfigError(
                "the retrieval task needs a gallery folder" + (f" ({gallery!r} is not one)" if gallery else ""),
                "pass --gallery DIR (task_opts={'gallery': DIR}) with images and/or .wav sounds",
            )
        self.folder, self.top = Path(gallery), top
        self.items: list[tuple[str, str]] = []
        self.image_embs = self.sound_embs = None

    def setup(self, towers, contract) -> None:
        import cv2

        from edge_sdk.media.image import center_crop_resize, still_stack

        images, sounds, names_i, names_s = [], [], [], []
        for p in sorted(self.folder.rglob("*")):
            if p.suffix.lower() in self._IMAGES:
                bgr = cv2.imread(str(p))
                if bgr is None:
                    continue
                images.append(
                    center_crop_resize(bgr[:, :, ::-1], (contract.image.height, contract.image.width)).transpose(2, 0, 1).astype(np.float32)
                )
                names_i.append(str(p))
            elif p.suffix.lower() in self._SOUNDS:
                import soxr

                from edge_sdk.media.audio import read_wav

                x, rate, _ = read_wav(p)
                wave = soxr.resample(x.mean(1), rate, contract.audio.sample_rate) if rate != contract.audio.sample_rate else x.mean(1)
                n = contract.audio.num_samples
                wave = np.pad(wave, (0, max(0, n - len(wave))))[:n]
                sounds.append(wave.astype(np.float32))
                names_s.append(str(p))
        if not images and not sounds:
            raise ConfigError(f"gallery {self.folder} has no images or sounds", "add .png/.jpg images or .wav/.mp3 sounds")
        self.names_i, self.names_s = names_i, names_s
        # a model that sees time sees a still picture as a stack of it
        self.image_embs = towers.embed_image(still_stack(np.stack(images), contract.image.frames))[0] if images else None
        self.sound_embs = towers.embed_audio(np.stack(sounds)) if sounds else None

    def __call__(self, frame, audio_emb, image_emb, image_map, geom):
        values = {}
        if self.image_embs is not None:
            s = self.image_embs @ audio_emb[0]
            values["images_for_sound"] = [{"item": self.names_i[i], "score": round(float(s[i]), 4)} for i in np.argsort(-s)[: self.top]]
        if self.sound_embs is not None:
            s = self.sound_embs @ image_emb
            values["sounds_for_image"] = [{"item": self.names_s[i], "score": round(float(s[i]), 4)} for i in np.argsort(-s)[: self.top]]
        return values, _sim(audio_emb[0], image_map)


class Speaker(Task):
    """Faces (OpenCV's frontal-face Haar cascade, shipped with opencv) scored by A/V correspondence."""

    name = "speaker"
    needs_map = True

    def __init__(self, min_face: int = 40):
        import cv2

        xml = Path(getattr(getattr(cv2, "data", None), "haarcascades", "")) / "haarcascade_frontalface_default.xml"
        if not hasattr(cv2, "CascadeClassifier") or not xml.is_file():
            raise ConfigError(
                f"the speaker task needs OpenCV's Haar face cascade, which OpenCV {cv2.__version__} does not ship",
                "pip install 'opencv-python-headless<5' (OpenCV 5 wheels dropped CascadeClassifier)",
            )
        self.detector = cv2.CascadeClassifier(str(xml))
        self.min_face = min_face

    def __call__(self, frame, audio_emb, image_emb, image_map, geom):
        import cv2

        sim = _sim(audio_emb[0], image_map)
        gray = cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY)
        faces = self.detector.detectMultiScale(gray, 1.1, 5, minSize=(self.min_face, self.min_face))
        out = []
        for x, y, w, h in faces:
            cy, cx = geom.box_to_cells((x, y, x + w, y + h))
            cells = sim[cy, cx]  # none for a face outside the model's square: no score (None, never NaN in JSON)
            out.append({"box": [int(x), int(y), int(x + w), int(y + h)], "score": round(float(cells.max()), 4) if cells.size else None})
        scored = [i for i, face in enumerate(out) if face["score"] is not None]
        speaker = max(scored, key=lambda i: out[i]["score"]) if scored else None
        return {"faces": out, "speaker": speaker}, sim


TASKS = {"localize": Localize, "sync": Sync, "retrieval": Retrieval, "speaker": Speaker}


def make_task(name: str, **opts) -> Task:
    name = {"retrieve": "retrieval"}.get(name, name)  # the demo's verb
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}", f"use one of: {', '.join(TASKS)}")
    return TASKS[name](**opts)
