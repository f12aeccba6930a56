"""The face every model runner shows, whatever runs it: :class:`Towers`.

A runner holds a model's two towers and takes numpy batches: ``embed_audio(waves) -> [B, D]``,
``embed_image(images) -> ([B, D], [B, D, h, w])`` and ``embed_both``, with ``contract`` (the
model's inputs and outputs, :class:`~edge_sdk.contract.ModelContract`, which also says where
the map's cells look). Evaluation,
export validation, the benchmark and the live pipeline take any runner: ONNX Runtime,
TensorRT and ExecuTorch (:mod:`edge_sdk.runtime.backends`) and PyTorch
(:mod:`edge_sdk.models.torch_runner`) alike.

Inputs are checked against the contract first (shape, dtype, NaN/inf; a few microseconds): a
DataError says what the input should be, where a runtime's own error names neither.
Torch-free: this is the one piece the training side and the runtime share.
"""

from __future__ import annotations

import logging

import numpy as np

from edge_sdk.contract import ModelContract
from edge_sdk.errors import DataError

__all__ = ["Towers"]

log = logging.getLogger(__name__)


class Towers:
    """Base of every runner. Subclasses implement ``run_audio(x) -> [audio_emb]`` and
    ``run_image(x) -> [image_emb, image_map]`` on one contiguous float32 batch of at most
    ``batch_size`` items, and set ``concurrent`` when the two towers may run side by side
    (their runs release the GIL)."""

    concurrent = False

    def __init__(self, contract: ModelContract | None, batch_size: int = 64):
        self.contract, self.batch_size = contract, batch_size
        self.warned: set[str] = set()  # inputs whose scale looked wrong once (said once each)
        self.pool = None  # the audio tower's thread, made on the first side-by-side call

    @property
    def map_offset(self) -> tuple[float, float]:
        """Where cell (0, 0) of the map looks, in model pixels (see :class:`~edge_sdk.contract.MapContract`)."""
        return self.contract.map.offset if self.contract is not None and self.contract.map is not None else (0.0, 0.0)

    def run_audio(self, x: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def run_image(self, x: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def batched(self, run, x: np.ndarray) -> list[np.ndarray]:
        """``run`` over ``x`` in chunks of ``batch_size``, outputs concatenated."""
        outs = [run(np.ascontiguousarray(x[i : i + self.batch_size], dtype=np.float32)) for i in range(0, len(x), self.batch_size)]
        return outs[0] if len(outs) == 1 else [np.concatenate(parts) for parts in zip(*outs)]

    def checked(self, x, name: str) -> np.ndarray:
        """``x`` if it is what the graph input ``name`` (``wave`` or ``image``) takes, else a
        DataError that says what it takes (the runtimes' own errors name neither)."""
        x = np.asarray(x)
        dims = tuple(self.contract.input_shapes[name]) if self.contract is not None else x.shape[1:]
        kinds = "f" if name == "wave" else "fu"  # int16 PCM would be 32768 times too loud; uint8 pixels are fine
        if x.ndim != len(dims) + 1 or x.shape[1:] != dims or not len(x) or x.dtype.kind not in kinds:
            what, fix = self.contract_hint(name, x)
            raise DataError(f"{name} must be float32 [B, {', '.join(map(str, dims))}]{what}; got {x.shape} {x.dtype}", fix)
        if x.dtype.kind != "f":
            return x
        flat = x.reshape(-1)
        ms = float(np.dot(flat, flat)) / flat.size  # one BLAS pass (0.13 ms for 32 images): NaN and inf carry into it
        if not np.isfinite(ms):
            item = int(np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(1))[0])
            raise DataError(
                f"{name} holds NaN/inf (batch item {item})",
                "check the source of the input; np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0) replaces them",
            )
        if name not in self.warned:
            if name == "image" and 0 < ms <= 1 and 0 < x.max() <= 1 and (x != np.round(x)).any():  # dark 0..255 frames are whole numbers
                self.warned.add(name)
                log.warning("images in 0..1: the model takes RGB in 0..255 (multiply by 255); their embeddings are meaningless")
            elif name == "wave" and ms > 1.5**2:
                self.warned.add(name)
                log.warning("waves at RMS %.0f: the model takes float audio in [-1, 1] (int16 PCM: divide by 32768)", ms**0.5)
        return x

    def contract_hint(self, name: str, x: np.ndarray) -> tuple[str, str]:
        """What the contract's input ``name`` is, and the likeliest fix for ``x``."""
        if self.contract is None:
            return "", "pass a non-empty float32 batch"
        a, i = self.contract.audio, self.contract.image
        if x.ndim and not len(x):
            fix = "the batch is empty: give at least one item"
        elif name == "wave":
            fix = (
                "convert the PCM to float in [-1, 1] (int16: x / 32768)"
                if x.dtype.kind != "f"
                else f"cut or pad each wave to {a.num_samples} samples at {a.sample_rate} Hz; one wave is wave[None]"
            )
        else:
            fix = (
                "the images are channels last: pass images.transpose(0, 3, 1, 2)"
                if x.ndim == 4 and x.shape[-1] == 3
                else f"centre-crop and resize to {i.height} x {i.width} (height x width) RGB; one image is image[None]"
            )
        what = f"{a.window_seconds:g} s at {a.sample_rate / 1000:g} kHz, mono in [-1, 1]" if name == "wave" else "RGB 0..255, channels first"
        return f" ({what})", fix

    def embed_audio(self, waves: np.ndarray) -> np.ndarray:
        return self.batched(self.run_audio, self.checked(waves, "wave"))[0]

    def embed_image(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        emb, fmap = self.batched(self.run_image, self.checked(images, "image"))
        return emb, fmap

    def embed_both(self, waves: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``audio_emb, image_emb, image_map`` of paired inputs; the towers run side by side where
        the backend allows it."""
        if not self.concurrent:
            return (self.embed_audio(waves), *self.embed_image(images))
        if self.pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(1, thread_name_prefix="edge_sdk-audio")
        audio = self.pool.submit(self.embed_audio, waves)
        emb, fmap = self.embed_image(images)
        return audio.result(), emb, fmap
