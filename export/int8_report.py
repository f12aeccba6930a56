"""What an INT8 artifact really runs in INT8, counted, so a precision label is never a guess.

For an ONNX Q/DQ graph (ONNX Runtime's or Model Optimizer's) every Conv, ConvTranspose, Gemm
and MatMul is a layer; it runs INT8 when its activation input (and, for a learned weight, the
weight) comes through a DequantizeLinear (perhaps behind a Transpose or Reshape), which is
what ONNX Runtime fuses into QLinearConv / QGemm / QLinearMatMul and TensorRT into INT8
kernels. Each layer's multiply-accumulates at
batch 1 come from ONNX shape inference. The SDK's own log-mel front end is counted apart
(float by design in every recipe); every other float layer carries the reason it stayed
float (a stem faster in FP32, the sensitivity analysis, a product of two activations that the
recipe leaves float) or is reported as "not quantized".

:func:`verdict` is the honesty rule: an artifact is labelled ``int8`` only when at least
:data:`MIN_INT8_SHARE` of its layers' MACs run INT8, or every float layer is named with a reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["ACTIVATION_MATMUL", "MIN_INT8_SHARE", "NOT_QUANTIZED", "onnx_int8_accounting", "verdict", "MAC_OPS"]

MIN_INT8_SHARE = 0.8
MAC_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
NOT_QUANTIZED = "not quantized"  # the reason of a float layer nothing explains
ACTIVATION_MATMUL = "a product of two activations (attention): the quantizer has no INT8 kernel for it here"
# ops that only move a tensor's elements: a DequantizeLinear behind them still feeds the layer
# INT8 (TorchScript exports a Linear as DequantizeLinear -> Transpose -> MatMul; TensorRT and
# ONNX Runtime fold the Transpose into the quantized weight)
LAYOUT_OPS = ("Transpose", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Flatten")


def _batch_one(model):
    """A copy of ``model`` with every graph input's first dimension set to 1, shapes inferred."""
    import onnx
    from onnx import shape_inference

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for i in m.graph.input:
        dims = i.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_param")
            dims[0].dim_value = 1
    return shape_inference.infer_shapes(m)


def _macs(node, shapes: dict[str, list[int]], producer: dict) -> int:
    """Multiply-accumulates of one layer at batch 1 (0 where a shape is unknown)."""
    out = shapes.get(node.output[0])
    if not out or any(d <= 0 for d in out):
        return 0
    if node.op_type in ("Conv", "ConvTranspose"):
        w = shapes.get(_source(node.input[1], producer))
        return int(np.prod(out)) * int(np.prod(w[1:])) if w else 0
    a = shapes.get(node.input[0])
    if not a:
        return 0
    trans_a = node.op_type == "Gemm" and any(x.name == "transA" and x.i for x in node.attribute)
    return int(np.prod(out)) * int(a[0] if trans_a else a[-1])


def _source(name: str, producer: dict) -> str:
    """The tensor behind ``name`` through DequantizeLinear (a quantized weight's initializer)."""
    node = producer.get(name)
    return node.input[0] if node is not None and node.op_type == "DequantizeLinear" else name


def _behind_layout(name: str, producer: dict):
    """The node that makes ``name``, looking through ops that only move elements (None: an input
    or an initializer)."""
    node = producer.get(name)
    while node is not None and node.op_type in LAYOUT_OPS:
        node = producer.get(node.input[0])
    return node


def _reads_constant(name: str, producer: dict, constants: set[str]) -> bool:
    """Whether ``name`` is a weight: an initializer or Constant, perhaps quantized and moved."""
    while name not in constants:
        node = producer.get(name)
        if node is None or node.op_type not in (*LAYOUT_OPS, "DequantizeLinear", "QuantizeLinear", "Constant"):
            return False
        if node.op_type == "Constant":
            return True
        name = node.input[0]
    return True


def onnx_int8_accounting(path: str | Path, frontend: set[str] = frozenset(), reasons: dict[str, str] | None = None) -> dict:
    """Per layer of the Q/DQ graph at ``path``: MACs and whether it runs INT8; ``frontend`` names
    the SDK front end's nodes (counted apart), ``reasons`` why a node was kept float."""
    import onnx

    model = onnx.load(str(path))
    inferred = _batch_one(model).graph
    # a symbolic dimension is the batch axis (every other one is fixed by the contract): 1 here
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else 1 for d in v.type.tensor_type.shape.dim]
              for v in (*inferred.input, *inferred.value_info, *inferred.output)}  # fmt: skip
    shapes.update({t.name: list(t.dims) for t in model.graph.initializer})
    producer = {o: n for n in model.graph.node for o in n.output}
    constants = {t.name for t in model.graph.initializer}
    reasons = reasons or {}
    layers, front = [], 0
    for node in model.graph.node:
        if node.op_type not in MAC_OPS:
            continue
        macs = _macs(node, shapes, producer)
        if node.name in frontend or "/frontend/" in node.name:
            front += macs
            continue
        dq = [getattr(_behind_layout(i, producer), "op_type", None) == "DequantizeLinear" for i in node.input[:2]]
        int8 = all(dq) if node.op_type == "MatMul" or len(node.input) > 1 else dq[0]
        activations = node.op_type == "MatMul" and not any(_reads_constant(i, producer, constants) for i in node.input[:2])
        why = reasons.get(node.name, ACTIVATION_MATMUL if activations else NOT_QUANTIZED)
        layers.append({"node": node.name, "op": node.op_type, "macs": macs, "int8": bool(int8), **({} if int8 else {"why": why})})
    total = sum(x["macs"] for x in layers)
    int8_macs = sum(x["macs"] for x in layers if x["int8"])
    return {"layers": len(layers), "int8_layers": sum(x["int8"] for x in layers), "macs": total, "int8_macs": int8_macs,
            "int8_share": round(int8_macs / total, 4) if total else 0.0, "front_end_macs": front,
            "float": [x for x in layers if not x["int8"]]}  # fmt: skip


def verdict(accounting: dict, file: str) -> list[str]:
    """Why an artifact may not be labelled INT8 (empty: it may): too few of its layers' MACs run
    INT8 and some float layer has no reason."""
    unexplained = [f for f in accounting["float"] if f["why"] == NOT_QUANTIZED]
    if accounting["int8_share"] >= MIN_INT8_SHARE or not unexplained:
        return []
    names = ", ".join(f"{f['node']} ({f['op']}, {f['macs'] / 1e6:.1f} MMACs)" for f in unexplained[:4])
    return [f"{file} is labelled int8 but only {100 * accounting['int8_share']:.0f}% of its layers' MACs run INT8 "
            f"(at least {100 * MIN_INT8_SHARE:.0f}% expected); not quantized: {names}"]  # fmt: skip
