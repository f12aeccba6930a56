"""The PyTorch reference every bundle holds: the model's weights as ``model.safetensors``.

They are what every other row's parity is measured against, ``--backend torch`` of
``edge-sdk eval`` and ``edge-sdk run``, and the eager rows of ``edge-sdk bench``; the runtime
opens them through the ``torch`` backend plugin (:mod:`edge_sdk.models.torch_runner`).
"""

from __future__ import annotations

from pathlib import Path

from edge_sdk.export.base import Exporter, artifact

__all__ = ["TorchExporter", "write_weights"]


def write_weights(model, out: Path) -> dict:
    """``out/model.safetensors`` (for our models, the spec in its metadata, as ``save_model`` writes
    it; for a user's, the wrapped model's state, which its factory rebuilds); its artifact record."""
    from edge_sdk.checkpoint import save_tensors

    path = Path(out) / "model.safetensors"
    save_tensors(
        path, model.state_dict(), getattr(model, "spec", None)
    )  # ours keep their spec in the file; a user's model its contract in the manifest
    return artifact(path, "av", "safetensors", "torch", "fp32")


class TorchExporter(Exporter):
    name, format, backend, precisions, graphs = "torch", "safetensors", "torch", ("fp32",), ("av",)
    requires, extra = ("torch", "safetensors"), "train"

    def write(self, job, precision):
        return [write_weights(job.model, job.out)]
