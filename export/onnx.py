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
the log-mel front end's DFT basis (132 x 256 floats, 135 KB that INT8 cannot shrink) is
computed by 16 small nodes that ONNX Runtime (and TensorRT's builder) folds into a constant when it loads the graph.
"""

from __future__ import annotations

import ast
import json
import math
import warnings
from pathlib import Path

import torch

__all__ = ["TOWERS", "OPSET", "export_tower", "example_inputs", "input_shapes", "module_nodes", "lean_graph", "scopes_file"]

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
    lean_graph(path)
    return path


def scopes_file(onnx_path: str | Path) -> Path:
    """Where :func:`lean_graph` keeps a graph's node -> module path map."""
    return Path(onnx_path).with_suffix(".scopes.json")


def lean_graph(path: str | Path) -> None:
    """Rewrite an exported graph lean, in place: node metadata to :func:`scopes_file`, the DFT
    basis computed in the graph (:func:`_dft_basis_nodes`)."""
    import onnx

    path = Path(path)
    model = onnx.load(str(path))
    scopes = {n.name: _scopes(n) for n in model.graph.node}
    _dft_basis_nodes(model, scopes)
    for n in model.graph.node:
        del n.metadata_props[:]
        n.doc_string = ""
    model.graph.doc_string = ""
    onnx.save(model, str(path))
    if any(scopes.values()):
        scopes_file(path).write_text(json.dumps(scopes))


def _dft_basis_nodes(model, scopes: dict) -> None:
    """Replace the front end's stored DFT basis [2K, 1, N] (Hann window times cos and -sin of
    2 pi k n / N, :class:`~edge_sdk.models.frontend.LogMel`) by nodes that compute it: k n mod N
    (exact in float32), times 2 pi / N. Left alone unless the initializer matches the
    computed basis to 1e-6."""
    import numpy as np
    from onnx import helper, numpy_helper

    init = next((t for t in model.graph.initializer if t.name.endswith("frontend.dft")), None)
    if init is None:
        return
    stored = numpy_helper.to_array(init)
    two_k, _, n_fft = stored.shape
    n = np.arange(n_fft)
    phase = 2 * np.pi * (np.arange(two_k // 2)[:, None] * n[None] % n_fft) / n_fft
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)
    if np.abs(np.concatenate([np.cos(phase), -np.sin(phase)]) * window - stored[:, 0]).max() > 1e-6:
        return
    name, p = init.name, init.name.rsplit(".", 1)[0] + ".basis/"
    consumer = next(node for node in model.graph.node if name in node.input)
    consts = [numpy_helper.from_array(np.array(v, np.float32), p + k) for k, v in (
        ("zero", 0.0), ("one", 1.0), ("n", n_fft), ("k", two_k // 2), ("step", 2 * math.pi / n_fft), ("half", 0.5))]
    consts.append(numpy_helper.from_array(np.array([1], np.int64), p + "ax1"))
    nodes = [  # float32 throughout (integers below 2^24 are exact): no casts for an FP16 converter to touch
        helper.make_node("Range", [p + "zero", p + "n", p + "one"], [p + "n_idx"]),
        helper.make_node("Range", [p + "zero", p + "k", p + "one"], [p + "k_idx"]),
        helper.make_node("Unsqueeze", [p + "k_idx", p + "ax1"], [p + "k_col"]),
        helper.make_node("Mul", [p + "k_col", p + "n_idx"], [p + "kn"]),
        helper.make_node("Mod", [p + "kn", p + "n"], [p + "kn_mod"], fmod=1),
        helper.make_node("Mul", [p + "kn_mod", p + "step"], [p + "phase"]),
        helper.make_node("Mul", [p + "n_idx", p + "step"], [p + "n_phase"]),
        helper.make_node("Cos", [p + "n_phase"], [p + "n_cos"]),
        helper.make_node("Mul", [p + "n_cos", p + "half"], [p + "n_cos_half"]),
        helper.make_node("Sub", [p + "half", p + "n_cos_half"], [p + "window"]),
        helper.make_node("Cos", [p + "phase"], [p + "cos"]),
        helper.make_node("Sin", [p + "phase"], [p + "sin"]),
        helper.make_node("Neg", [p + "sin"], [p + "neg_sin"]),
        helper.make_node("Concat", [p + "cos", p + "neg_sin"], [p + "rows"], axis=0),
        helper.make_node("Mul", [p + "rows", p + "window"], [p + "windowed"]),
        helper.make_node("Unsqueeze", [p + "windowed", p + "ax1"], [name]),
    ]
    for i, node in enumerate(nodes):
        node.name = f"{p}{node.op_type}_{i}"
        scopes[node.name] = scopes.get(consumer.name, [])
    model.graph.initializer.remove(init)
    model.graph.initializer.extend(consts)
    for node in reversed(nodes):
        model.graph.node.insert(0, node)


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
