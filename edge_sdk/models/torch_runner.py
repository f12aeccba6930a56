"""PyTorch as a runner: a model's towers run eagerly in FP32 on numpy batches, with the same
face as every exported backend (:class:`~edge_sdk.runner.Towers`).

Evaluation and training plots run a model in memory through :class:`TorchTowers`; a
bundle's ``model.safetensors`` (never a pickle) is opened by :func:`open_weights`, which
this package registers as the runtime's ``torch`` backend (the ``edge_sdk.backends`` entry
point in pyproject.toml), so the runtime itself never imports model code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edge_sdk.errors import ModelFileError
from edge_sdk.runner import Towers

__all__ = ["TorchTowers", "open_weights"]


class TorchTowers(Towers):
    """A model in memory (``model.audio``, ``model.image``; ``model.spec``), run in batches
    under ``torch.inference_mode``."""

    def __init__(self, model: torch.nn.Module, map_offset=(0, 0), batch_size: int = 64, spec=None):
        super().__init__(spec if spec is not None else model.spec, map_offset, batch_size)
        self.model = model.eval()

    @staticmethod
    def call(fn, x: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            out = fn(torch.from_numpy(x))
        return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]

    def run_audio(self, x):
        return self.call(self.model.audio, x)

    def run_image(self, x):
        return self.call(self.model.image, x)


def open_weights(choice, spec, map_offset=(0, 0), *, threads: int = 0, batch_size: int = 64) -> TorchTowers:
    """The runtime's ``torch`` backend: a bundle's ``model.safetensors`` (``choice.files["av"]``)
    loaded into the architecture its spec names, checked tensor by tensor."""
    from edge_sdk.checkpoint import load_tensors
    from edge_sdk.models.avnet import AVNet

    if threads:
        torch.set_num_threads(threads)
    weights = Path(choice.files["av"])
    model = AVNet(spec).eval()
    try:
        model.load_state_dict(load_tensors(weights))
    except RuntimeError as e:
        raise ModelFileError(
            f"{weights}: the weights do not fit spec {spec.name} ({str(e).splitlines()[0][:160]})", "the bundle is inconsistent: re-export it"
        ) from None
    return TorchTowers(model, map_offset, batch_size, spec=spec)
