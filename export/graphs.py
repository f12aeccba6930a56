"""ONNX export of a model's graphs, front end baked in.

Each tower is its own graph, so an app can run audio and vision at different rates, and
the whole model is one more graph for apps that run both together:

- ``audio``: ``wave`` [B, num_samples] float32 -> ``audio_emb`` [B, D]
- ``image``: ``image`` [B, 3, S, S] float32 RGB in [0, 255] -> ``image_emb`` [B, D], ``image_map`` [B, D, h, w]
- ``av``: ``wave``, ``image`` -> ``audio_emb``, ``image_emb``, ``image_map``

The batch axis is dynamic. Float graphs come from the ``torch.export`` (dynamo) exporter:
batch norms folded into initializers, which ONNX Runtime's QDQ quantizer needs to fuse
Conv+bias into ``QLinearConv``. Model Optimizer's fake-quant models export through the
TorchScript exporter (``dynamo=False``), the path its Q/DQ symbolics support.

Every graph is then made lean (:func:`lean_graph`): the exporter's per-node metadata (stack
traces with the build machine's paths, FX nodes: 41 KB of the 134 KB INT8 image tower) is
dropped, each node's module path kept beside the graph in ``{graph}.scopes.json`` (which
:func:`module_nodes` reads to keep chosen layers in float; the bundle does not ship it), and
the log-mel front end's constant matrices (the DFT basis, 132 x 256 floats, 135 KB, and the
mel filters, 10 KB, that INT8 cannot shrink) are computed by small nodes that ONNX Runtime
(and TensorRT's builder) fold into constants when they load the graph.
"""

from __future__ import annotations

import ast
import json
import logging
import warnings
from pathlib import Path

import torch

__all__ = ["TOWERS", "OPSET", "export_tower", "example_inputs", "module_nodes", "lean_graph", "scopes_file"]

OPSET = 18
TOWERS = {
    "audio": {"inputs": ["wave"], "outputs": ["audio_emb"]},
    "image": {"inputs": ["image"], "outputs": ["image_emb", "image_map"]},
    "av": {"inputs": ["wave", "image"], "outputs": ["audio_emb", "image_emb", "image_map"]},
}


def example_inputs(spec, graph: str, batch: int = 1) -> tuple[torch.Tensor, ...]:
    """Zero inputs of a graph's shapes (for tracing; never used to validate)."""
    shapes = spec.input_shapes
    return tuple(torch.zeros(batch, *shapes[name]) for name in TOWERS[graph]["inputs"])


def export_tower(model, tower: str, path: str | Path, opset: int = OPSET, dynamo: bool = True) -> Path:
    """Write one graph of an AVNet (a tower, or ``av`` for the whole model; ``dynamo=False``
    for a Model Optimizer fake-quant copy) as ONNX."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = (model if tower == "av" else getattr(model, tower)).eval()
    names = TOWERS[tower]
    example = example_inputs(model.spec, tower, 2)
    # the exporter's notices (deprecations; "torchvision is not installed. Skipping torchvision::..."
    # for ops no edge_sdk model has) would bury the SDK's own output
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            batch = torch.export.Dim("batch")
            torch.onnx.export(
                module,
                example,
                str(path),
                input_names=names["inputs"],
                output_names=names["outputs"],
                dynamic_shapes=tuple({0: batch} for _ in example),
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False,
            )  # one self-contained file per graph
        else:
            with torch.inference_mode():
                torch.onnx.export(
                    module,
                    example,
                    str(path),
                    input_names=names["inputs"],
                    output_names=names["outputs"],
                    dynamic_axes={n: {0: "batch"} for n in names["inputs"] + names["outputs"]},
                    opset_version=opset,
                    dynamo=False,
                )
    lean_graph(path, model.spec)
    return path


def scopes_file(onnx_path: str | Path) -> Path:
    """Where :func:`lean_graph` keeps a graph's node -> module path map."""
    return Path(onnx_path).with_suffix(".scopes.json")


def lean_graph(path: str | Path, spec=None) -> None:
    """Rewrite an exported graph lean, in place: node metadata to :func:`scopes_file`, the
    front end's DFT basis and (given the model's ``spec``) mel filters computed in the graph
    (:mod:`~edge_sdk.export.frontend_graph`). The exporter's ``value_info`` (intermediate
    shapes, the batch axis named) stays: 4 KB, and ONNX Runtime's TensorRT provider wants
    every subgraph input's shape known."""
    import onnx

    from edge_sdk.export.frontend_graph import dft_basis_nodes, mel_filter_nodes

    path = Path(path)
    model = onnx.load(str(path))
    scopes = {n.name: _scopes(n) for n in model.graph.node}
    dft_basis_nodes(model, scopes)
    if spec is not None:
        mel_filter_nodes(model, spec.audio, scopes)
    for n in model.graph.node:
        del n.metadata_props[:]
        n.doc_string = ""
    model.graph.doc_string = ""
    onnx.save(model, str(path))
    if any(scopes.values()):
        scopes_file(path).write_text(json.dumps(scopes))


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
    side = scopes_file(onnx_path)
    known = json.loads(side.read_text()) if side.exists() else {}
    scoped = [(n.name, set(known.get(n.name) or _scopes(n))) for n in graph.node if ops is None or n.op_type in ops]
    out = {}
    for m in modules:
        if m == "":
            out[m] = [name for name, scopes in scoped if not any(_in_tower(s) for s in scopes if s)]
            continue
        alias = {m} | ({m[:-2] + ".1"} if m.endswith(".0") else set())
        out[m] = [name for name, scopes in scoped if scopes & alias]
    return out
