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

log = logging.getLogger(__name__)

__all__ = ["TOWERS", "OPSET", "capture", "export_tower", "example_inputs", "module_nodes", "frontend_nodes", "lean_graph", "scopes_file"]

OPSET = 18
TOWERS = {
    "audio": {"inputs": ["wave"], "outputs": ["audio_emb"]},
    "image": {"inputs": ["image"], "outputs": ["image_emb", "image_map"]},
    "av": {"inputs": ["wave", "image"], "outputs": ["audio_emb", "image_emb", "image_map"]},
}


def example_inputs(contract, graph: str, batch: int = 1) -> tuple[torch.Tensor, ...]:
    """Zero inputs of a graph's shapes, from the model's contract (for tracing; never used to validate)."""
    shapes = contract.input_shapes
    return tuple(torch.zeros(batch, *shapes[name]) for name in TOWERS[graph]["inputs"])


def export_tower(model, tower: str, path: str | Path, opset: int = OPSET, dynamo: bool = True) -> Path:
    """Write one graph of an AVNet (a tower, or ``av`` for the whole model; ``dynamo=False``
    for a Model Optimizer fake-quant copy) as ONNX."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = (model if tower == "av" else getattr(model, tower)).eval()
    names = TOWERS[tower]
    example = example_inputs(model.contract, tower, 2)
    # the exporter's notices (deprecations; "torchvision is not installed. Skipping torchvision::..."
    # for ops no edge_sdk model has) would bury the SDK's own output
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(
                capture(module, example, f"the {tower} tower"),
                (),
                str(path),
                input_names=names["inputs"],
                output_names=names["outputs"],
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False,
            )  # one self-contained file per graph
        else:
            _trace(module, example, path, names, opset)
            if not _runs_at_batch(path, model.contract, tower, 3):
                # the trace read the batch as a number (len(x), x.shape[0] in a Python int): a graph
                # for batch 1 that the runners feed one item at a time, said rather than broken
                log.warning("%s: the %s tower's traced graph fixes its batch size (len(x)?); exported for batch 1", path.name, tower)
                _trace(module, example_inputs(model.contract, tower, 1), path, names, opset, fixed=True)
    frontends = [m.spec for m in module.modules() if type(m).__name__ in ("LogMel", "_FeatureFrontEnd")]
    lean_graph(path, frontends[0] if frontends else None)
    return path


def _trace(module, example, path: Path, names: dict, opset: int, fixed: bool = False) -> None:
    """The TorchScript exporter (Model Optimizer's Q/DQ symbolics need it); ``fixed``: batch 1 only."""
    axes = {} if fixed else {n: {0: "batch"} for n in names["inputs"] + names["outputs"]}
    with torch.inference_mode():
        torch.onnx.export(module, example, str(path), input_names=names["inputs"], output_names=names["outputs"],
                          dynamic_axes=axes, opset_version=opset, dynamo=False)  # fmt: skip


def _runs_at_batch(path: Path, contract, tower: str, batch: int) -> bool:
    """Whether ONNX Runtime runs the graph at ``batch`` (a traced graph can hide a fixed batch)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {name: x.numpy() for name, x in zip(TOWERS[tower]["inputs"], example_inputs(contract, tower, batch))}
    try:
        session.run(None, feeds)
    except Exception:  # noqa: BLE001 - ORT's own failure types: a shape that does not fit
        return False
    return True


def capture(module: torch.nn.Module, example: tuple[torch.Tensor, ...], what: str) -> torch.export.ExportedProgram:
    """``torch.export`` a module with a dynamic batch axis: non-strict first (no dynamo), then
    strict, whose dynamo keeps ``len(x)`` symbolic where non-strict reads it as an int. A model
    that fixes the batch size in both is refused, naming the line, rather than exported for
    one batch size (the ONNX exporter's draft-export fallback would do that silently)."""
    from edge_sdk.errors import ModelFileError

    batch = torch.export.Dim("batch", min=1, max=4096)
    shapes = tuple({0: batch} for _ in example)
    first = None
    for strict in (False, True):
        try:
            return torch.export.export(module, example, dynamic_shapes=shapes, strict=strict)
        except Exception as e:  # noqa: BLE001 - torch raises many types; the first is reported
            first = first or e
    detail = " ".join(str(first).split())[:400]
    raise ModelFileError(
        f"cannot export {what} with a dynamic batch axis: {detail} -- the model's code fixes the batch "
        "size (a reshape or expand with a number, or an int read from a shape): write x.shape[0] "
        "or -1 there, then export again"
    ) from first


def scopes_file(onnx_path: str | Path) -> Path:
    """Where :func:`lean_graph` keeps a graph's node -> module path map."""
    return Path(onnx_path).with_suffix(".scopes.json")


def lean_graph(path: str | Path, frontend=None) -> None:
    """Rewrite an exported graph lean, in place: node metadata to :func:`scopes_file`, the
    front end's DFT basis and (given the front end's ``frontend`` AudioSpec) mel filters computed in the graph
    (:mod:`~edge_sdk.export.frontend_graph`). The exporter's ``value_info`` (intermediate
    shapes, the batch axis named) stays: 4 KB, and ONNX Runtime's TensorRT provider wants
    every subgraph input's shape known."""
    import onnx

    from edge_sdk.export.frontend_graph import dft_basis_nodes, mel_filter_nodes

    path = Path(path)
    model = onnx.load(str(path))
    name_batch_axis(model.graph)
    scopes = {n.name: _scopes(n) for n in model.graph.node}
    dft_basis_nodes(model, scopes)
    if frontend is not None:
        mel_filter_nodes(model, getattr(frontend, "audio", frontend), scopes)
    for n in model.graph.node:
        del n.metadata_props[:]
        n.doc_string = ""
    model.graph.doc_string = ""
    onnx.save(model, str(path))
    if any(scopes.values()):
        scopes_file(path).write_text(json.dumps(scopes))


def name_batch_axis(graph) -> None:
    """Call the inputs' first axis ``batch`` everywhere (``torch.export`` names it ``s0``, ``s6``...)."""
    first = graph.input[0].type.tensor_type.shape.dim
    symbol = first[0].dim_param if len(first) else ""
    if not symbol or symbol == "batch":
        return
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param == symbol:
                dim.dim_param = "batch"


def _scopes(node) -> list[str]:
    for p in node.metadata_props:
        if p.key == "pkg.torch.onnx.name_scopes":
            return list(ast.literal_eval(p.value))
    return []


def _node_scopes(onnx_path: str | Path, ops) -> list[tuple[str, set[str]]]:
    """``(node name, module paths)`` of a graph's ``ops`` nodes (all nodes when ``ops`` is None)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    side = scopes_file(onnx_path)
    known = json.loads(side.read_text()) if side.exists() else {}
    return [(n.name, set(known.get(n.name) or _scopes(n))) for n in graph.node if ops is None or n.op_type in ops]


def frontend_nodes(onnx_path: str | Path) -> list[str]:
    """Every node of the SDK's own audio front end (a module path with a ``frontend`` part: the
    log-mel computed inside the graph, for our towers and for a user's model that declares
    log-mel features). What the model's layers are is not guessed from their names: this is the
    one part of a graph the SDK itself put there."""
    return [name for name, scopes in _node_scopes(onnx_path, None) if any("frontend" in s.split(".") for s in scopes if s)]


def module_nodes(onnx_path: str | Path, modules: list[str], ops=("Conv", "Gemm", "MatMul")) -> dict[str, list[str]]:
    """Names of the ``ops`` nodes (all nodes when ``ops`` is None) each module (a path inside the
    exported module, as the sensitivity analysis names layers) exported to.

    A conv followed by a batch norm is exported as one Conv carrying the norm's scope, so
    ``x.0`` (the conv of a conv-bn pair) also matches nodes scoped ``x.1``.
    """
    scoped = _node_scopes(onnx_path, ops)
    out = {}
    for m in modules:
        alias = {m} | ({m[:-2] + ".1"} if m.endswith(".0") else set())
        out[m] = [name for name, scopes in scoped if scopes & alias]
    return out
