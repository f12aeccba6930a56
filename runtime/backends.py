"""Inference backends: run a model's two towers from exported files on numpy batches.

Every backend has the same face as the PyTorch evaluator: ``spec``, ``map_offset``,
``embed_audio(waves) -> [B, D]`` and ``embed_image(images) -> ([B, D], [B, D, h, w])``,
so ``edge-sdk eval``, the benchmark and the live pipeline run any of them unchanged.

- :class:`OrtTowers` -- ONNX Runtime (FP32, FP16 or Q/DQ INT8 graphs); no torch needed.
- :class:`ExecuTorchTowers` -- ExecuTorch ``.pte`` programs through ``executorch.runtime``
  (its Python bindings take torch tensors, so this one imports torch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_sdk.errors import ModelFileError
from edge_sdk.spec import ModelSpec

__all__ = ["OrtTowers", "ExecuTorchTowers"]


class _Towers:
    def __init__(self, spec: ModelSpec, map_offset=(0, 0), batch_size: int = 64):
        self.spec, self.map_offset, self.batch_size = spec, tuple(map_offset), batch_size

    def _batched(self, run, x: np.ndarray) -> list[np.ndarray]:
        outs = [run(np.ascontiguousarray(x[i : i + self.batch_size], dtype=np.float32)) for i in range(0, len(x), self.batch_size)]
        return [np.concatenate(parts) for parts in zip(*outs)]

    def embed_audio(self, waves: np.ndarray) -> np.ndarray:
        return self._batched(self._run_audio, waves)[0]

    def embed_image(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        emb, fmap = self._batched(self._run_image, images)
        return emb, fmap


class OrtTowers(_Towers):
    """Two ONNX graphs (``audio``: wave -> audio_emb; ``image``: image -> image_emb, image_map)."""

    def __init__(self, audio: str | Path, image: str | Path, spec: ModelSpec, map_offset=(0, 0),
                 providers: list[str] | None = None, threads: int = 0, batch_size: int = 64):
        import onnxruntime as ort

        super().__init__(spec, map_offset, batch_size)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        providers = providers or ["CPUExecutionProvider"]
        self.sessions = {}
        for tower, path in (("audio", audio), ("image", image)):
            try:
                self.sessions[tower] = ort.InferenceSession(str(path), opts, providers=providers)
            except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
                raise ModelFileError(f"{path}: ONNX Runtime cannot load it ({str(e).splitlines()[0][:200]})",
                                     "the file is damaged or needs a newer onnxruntime: re-export it, or upgrade onnxruntime") from None

    def _run_audio(self, x):
        return self.sessions["audio"].run(["audio_emb"], {"wave": x})

    def _run_image(self, x):
        return self.sessions["image"].run(["image_emb", "image_map"], {"image": x})


class ExecuTorchTowers(_Towers):
    """Two ExecuTorch programs, one per tower, each taking batch 1 (as a phone app runs them)."""

    def __init__(self, audio: str | Path, image: str | Path, spec: ModelSpec, map_offset=(0, 0), batch_size: int = 1):
        from executorch.runtime import Runtime

        super().__init__(spec, map_offset, batch_size)
        runtime = Runtime.get()
        self.methods = {}
        for tower, path in (("audio", audio), ("image", image)):
            try:
                self.methods[tower] = runtime.load_program(Path(path)).load_method("forward")
            except Exception as e:  # noqa: BLE001 - the bindings raise RuntimeError/ValueError
                raise ModelFileError(f"{path}: ExecuTorch cannot load it ({str(e).splitlines()[0][:200]})",
                                     "re-export the .pte with this executorch version (edge-sdk export --format executorch)") from None

    def _execute(self, tower: str, x: np.ndarray) -> list[np.ndarray]:
        import torch

        # x is C-contiguous (NCHW), the dim order programs are exported with: ExecuTorch does not
        # check it, and a channels-last input gave silently wrong results. Outputs are copied
        # out of the program's planned memory, which the next call overwrites.
        return [np.array(o.numpy(), copy=True) for o in self.methods[tower].execute([torch.from_numpy(x)])]

    def _run_audio(self, x):
        return self._execute("audio", x)

    def _run_image(self, x):
        return self._execute("image", x)
