"""ONNX export of a model's graphs, front end baked in.

Each tower is its own graph, so an app can run audio and vision at different rates, and
the whole model is one more graph for apps that run both together:

- ``audio``: ``wave`` [B, num_samples] float32 -> ``audio_emb`` [B, D]
- ``image``: ``image`` [B, 3, S, S] float32 RGB in [0, 255] -> ``image_emb`` [B, D], ``image_map`` [B, D, h, w]
- ``av``: ``wave``, ``image`` -> ``audio_emb``, ``image_emb``, ``image_map``

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

__all__ = ["TOWERS", "OPSET", "export_tower", "example_inputs", "input_shapes", "module_nodes"]

OPSET = 18
TOWERS = {
    "audio": {"inputs": ["wave"], "outputs": ["audio_emb"]},
    "image": {"inputs": ["image"], "outputs": ["image_emb", "image_map"]},
    "av": {"inputs": ["wave", "image"], "outputs": ["audio_emb", "image_emb", "image_map"]},
}


def input_shapes(spec) -> dict[str, tuple[int, ...]]:
    """Each input's shape without the batch axis, from the spec."""
    return {"wave": (spec.audio.num_samples,), "image": (3, spec.image.size, spec.image.size)}


def example_inputs(spec, graph: str, batch: int = 1) -> tuple[torch.Tensor, ...]:
    """Zero inputs of a graph's shapes (for tracing; never used to validate)."""
    shapes = input_shapes(spec)
    return tuple(torch.zeros(batch, *shapes[name]) for name in TOWERS[graph]["inputs"])


def export_tower(model, tower: str, path: str | Path, opset: int = OPSET, dynamo: bool = True) -> Path:
    """Write one graph of an AVNet (a tower, or ``av`` for the whole model; ``dynamo=False``
    for a Model Optimizer fake-quant copy) as ONNX."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = (model if tower == "av" else getattr(model, tower)).eval()
    names = TOWERS[tower]
    example = example_inputs(model.spec, tower, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter deprecation and registration notices
        if dynamo:
            batch = torch.export.Dim("batch")
            torch.onnx.export(module, example, str(path), input_names=names["inputs"], output_names=names["outputs"],
                              dynamic_shapes=tuple({0: batch} for _ in example), opset_version=opset, dynamo=True,
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


def _in_tower(scope: str) -> bool:
    """Whether a module path lies in a conv tower or projection (``tower.x``, ``audio.proj``, ...)."""
    parts = scope.split(".")
    if parts[0] in ("audio", "image"):
        parts = parts[1:]
    return bool(parts) and parts[0] in ("tower", "proj")


def module_nodes(onnx_path: str | Path, modules: list[str], ops=("Conv", "Gemm", "MatMul")) -> dict[str, list[str]]:
    """Names of the ``ops`` nodes (all nodes when ``ops`` is None) each module (a path
    inside the exported module, or "" for nodes outside every conv tower and projection)
    exported to.

    A conv followed by a batch norm is exported as one Conv carrying the norm's scope, so
    ``x.0`` (the conv of a conv-bn pair) also matches nodes scoped ``x.1``.
    """
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    scoped = [(n.name, set(_scopes(n))) for n in graph.node if ops is None or n.op_type in ops]
    out = {}
    for m in modules:
        if m == "":
            out[m] = [name for name, scopes in scoped if not any(_in_tower(s) for s in scopes if s)]
            continue
        alias = {m} | ({m[:-2] + ".1"} if m.endswith(".0") else set())
        out[m] = [name for name, scopes in scoped if scopes & alias]
    return out
