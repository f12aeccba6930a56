"""Tiny ONNX graphs with a tower's input and output names, for TensorRT and ONNX Runtime tests."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["audio_onnx", "image_onnx"]


def audio_onnx(path, *, qdq=False, fp16=False, samples=16, dim=4, batch="B"):
    w = np.random.default_rng(0).standard_normal((samples, dim)).astype(np.float16 if fp16 else np.float32)
    inits, nodes, x = [numpy_helper.from_array(w, "W")], [], "wave"
    if qdq:
        inits += [numpy_helper.from_array(np.array(0.05, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "z")]
        nodes += [helper.make_node("QuantizeLinear", ["wave", "s", "z"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"])]
        x = "dq"
    if fp16:
        nodes += [
            helper.make_node("Cast", [x], ["x16"], to=TensorProto.FLOAT16),
            helper.make_node("MatMul", ["x16", "W"], ["y16"]),
            helper.make_node("Cast", ["y16"], ["audio_emb"], to=TensorProto.FLOAT),
        ]
    else:
        nodes.append(helper.make_node("MatMul", [x, "W"], ["audio_emb"]))
    g = helper.make_graph(
        nodes,
        "audio",
        [helper.make_tensor_value_info("wave", TensorProto.FLOAT, [batch, samples])],
        [helper.make_tensor_value_info("audio_emb", TensorProto.FLOAT, [batch, dim])],
        inits,
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def image_onnx(path, size=8, dim=4):
    w = np.random.default_rng(1).standard_normal((dim, 3, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["image", "W"], ["image_map"]),
        helper.make_node("ReduceMean", ["image_map"], ["image_emb"], axes=[2, 3], keepdims=0),
    ]
    g = helper.make_graph(
        nodes,
        "image",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["B", 3, size, size])],
        [
            helper.make_tensor_value_info("image_emb", TensorProto.FLOAT, ["B", dim]),
            helper.make_tensor_value_info("image_map", TensorProto.FLOAT, ["B", dim, size, size]),
        ],
        [numpy_helper.from_array(w, "W")],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path
