"""ONNX export of the two towers, front end baked in.

Each tower is its own graph, so an app can run audio and vision at different rates:

- ``audio``: ``wave`` [B, num_samples] float32 -> ``audio_emb`` [B, D]
- ``image``: ``image`` [B, 3, S, S] float32 RGB in [0, 255] -> ``image_emb`` [B, D], ``image_map`` [B, D, h, w]

The batch axis is dynamic. Float graphs come from the ``torch.export`` (dynamo) exporter:
batch norms folded into initializers, which ONNX Runtime's QDQ quantizer needs to fuse
Conv+bias into ``QLinearConv``; each node keeps its module path in the metadata
``pkg.torch.onnx.name_scopes``, which :func:`module_nodes` reads to keep chosen layers in
float. Model Optimizer's fake-quant models export through the TorchScript exporter
(``dynamo=False``), the path its Q/DQ symbolics support.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import torch

__all__ = ["TOWERS", "OPSET", "export_tower", "tower_inputs", "module_nodes"]

OPSET = 18
TOWERS = {
    "audio": {"inputs": ["wave"], "outputs": ["audio_emb"]},
    "image": {"inputs": ["image"], "outputs": ["image_emb", "image_map"]},
}


def tower_inputs(spec, tower: str, batch: int = 1) -> torch.Tensor:
    """A zero input of the tower's shape (for tracing; never used to validate)."""
    if tower == "audio":
        return torch.zeros(batch, spec.audio.num_samples)
    return torch.zeros(batch, 3, spec.image.size, spec.image.size)


def export_tower(model, tower: str, path: str | Path, opset: int = OPSET, dynamo: bool = True) -> Path:
    """Write one tower of an AVNet (``dynamo=False`` for a Model Optimizer fake-quant copy) as ONNX."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = getattr(model, tower).eval()
    names = TOWERS[tower]
    example = (tower_inputs(model.spec, tower, 2),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter deprecation and registration notices
        if dynamo:
            torch.onnx.export(module, example, str(path), input_names=names["inputs"], output_names=names["outputs"],
                              dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=opset, dynamo=True,
                              external_data=False, verbose=False)  # one self-contained file per graph
        else:
            with torch.inference_mode():
                torch.onnx.export(module, example, str(path), input_names=names["inputs"], output_names=names["outputs"],
                                  dynamic_axes={n: {0: "batch"} for n in names["inputs"] + names["outputs"]},
                                  opset_version=opset, dynamo=False)
    return path


def _scopes(node) -> list[str]:
    for p in node.metadata_props:
        if p.key == "pkg.torch.onnx.name_scopes":
            return list(ast.literal_eval(p.value))
    return []


def module_nodes(onnx_path: str | Path, modules: list[str], ops=("Conv", "Gemm", "MatMul")) -> dict[str, list[str]]:
    """Names of the ``ops`` nodes (all nodes when ``ops`` is None) each module (a path
    inside the tower, or "" for nodes outside every submodule) exported to.

    A conv followed by a batch norm is exported as one Conv carrying the norm's scope, so
    ``x.0`` (the conv of a conv-bn pair) also matches nodes scoped ``x.1``.
    """
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    scoped = [(n.name, set(_scopes(n))) for n in graph.node if ops is None or n.op_type in ops]
    out = {}
    for m in modules:
        if m == "":
            out[m] = [name for name, scopes in scoped if not scopes - {"", "_empty_nn_module_stack_from_metadata_hook"} or
                      not any(s.split(".")[0] in ("tower", "proj") for s in scopes if s)]
            continue
        alias = {m} | ({m[:-2] + ".1"} if m.endswith(".0") else set())
        out[m] = [name for name, scopes in scoped if scopes & alias]
    return out
