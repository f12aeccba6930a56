"""FP16 tower graphs for GPU targets.

TensorRT 10 can take the FP32 ONNX with its FP16 builder flag; TensorRT 11 builds
strongly typed networks, so FP16 must be in the graph itself. This converts the towers'
FP32 ONNX with ONNX Runtime's float16 converter, inputs and outputs kept float32 and the
log-mel front end kept in FP32 (its power spectrum spans more range than FP16 holds
comfortably). Both the ONNX Runtime and the TensorRT targets write their FP16 graphs with it.
"""

from __future__ import annotations

from pathlib import Path

import onnx

__all__ = ["to_fp16"]


def to_fp16(src: Path, dest: Path) -> Path:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from edge_sdk.export.graphs import frontend_nodes

    model = onnx.load(str(src))
    block = frontend_nodes(src)  # the SDK's log-mel front end stays float32 (empty for the image tower)
    half = convert_float_to_float16(model, keep_io_types=True, node_block_list=block)
    _toposort(half.graph)  # the converter appends its input casts last; onnx.checker and shape inference want producers first
    _drop_round_trips(half)  # only removes nodes: the order stays valid
    onnx.checker.check_model(half)
    onnx.save(half, str(dest))
    return dest


def _drop_round_trips(model) -> None:
    """Remove the converter's float32 -> float16 -> float32 Cast pairs.

    The converter casts every output of a kept-float32 node to float16 and back to float32
    for the next kept node, so the front end would still pass through float16 between its
    nodes (the waveform, the DFT basis, a mel power that can exceed float16's 65504). A
    Cast to float32 whose input is a Cast to float16 of a float32 tensor reads that tensor
    directly; the casts nothing reads any more are dropped.
    """
    from onnx import TensorProto, shape_inference

    def to(node):
        return next((a.i for a in node.attribute if a.name == "to"), None)

    graph = model.graph
    bare = type(model)()
    bare.CopyFrom(model)
    del bare.graph.value_info[:]  # the converter's value_info names float32 tensors float16: infer afresh
    inferred = shape_inference.infer_shapes(bare).graph
    dtype = {v.name: v.type.tensor_type.elem_type for v in (*inferred.input, *inferred.value_info, *inferred.output)}
    dtype.update({t.name: t.data_type for t in graph.initializer})
    producer = {o: n for n in graph.node for o in n.output}
    rename = {}
    for node in graph.node:
        first = producer.get(node.input[0]) if node.op_type == "Cast" and to(node) == TensorProto.FLOAT else None
        if first is not None and first.op_type == "Cast" and to(first) == TensorProto.FLOAT16 and dtype.get(first.input[0]) == TensorProto.FLOAT:
            rename[node.output[0]] = first.input[0]
    for node in graph.node:
        for k, name in enumerate(node.input):
            node.input[k] = rename.get(name, name)
    outputs = {o.name for o in graph.output}
    while True:  # dropping a cast may leave the cast before it unread
        used = {i for n in graph.node for i in n.input} | outputs
        keep = [n for n in graph.node if n.op_type != "Cast" or any(o in used for o in n.output)]
        if len(keep) == len(graph.node):
            return
        del graph.node[:]
        graph.node.extend(keep)


def _toposort(graph) -> None:
    """Reorder ``graph.node`` so every node comes after the producers of its inputs."""
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        rest = []
        for node in pending:
            if all(i in ready for i in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ValueError(f"graph has a cycle or undefined inputs at {rest[0].name}")
        pending = rest
    copies = [type(n)() for n in ordered]
    for c, n in zip(copies, ordered):
        c.CopyFrom(n)
    del graph.node[:]
    graph.node.extend(copies)
