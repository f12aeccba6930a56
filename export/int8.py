"""INT8 post-training quantization, one recipe per target, each through the toolchain
that target really runs:

- ``onnxruntime``: static QDQ quantization of the towers' ONNX graphs
  (``onnxruntime.quantization.quantize_static``), weights per channel;
- ``xnnpack``: PT2E (``torch.export`` -> ``prepare_pt2e`` with ``XNNPACKQuantizer`` ->
  calibrate -> ``convert_pt2e``) lowered to ExecuTorch ``.pte`` programs;
- ``tensorrt``: explicit Q/DQ from NVIDIA Model Optimizer, exported to ONNX, which
  TensorRT 10 and 11 both build INT8 engines from (on this CPU the same graph is run and
  measured with ONNX Runtime).

Layers named in ``exclude`` (from the sensitivity analysis) stay in float on every target.
Each function writes its files into ``out`` and returns their artifact records.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import platform
from pathlib import Path

import numpy as np
import torch

from edge_sdk.errors import ConfigError
from edge_sdk.export.formats import artifact
from edge_sdk.export.onnx import OPSET, TOWERS, export_tower, module_nodes

__all__ = ["TARGETS", "quantize_onnxruntime", "quantize_xnnpack", "quantize_tensorrt", "float_nodes", "thin_convs", "fp32_graph", "calib_inputs"]

log = logging.getLogger(__name__)


def _graph_layers(exclude, graph: str) -> list[str]:
    """AVNet layer names as module paths of one graph: relative to a tower (``image.tower.x``
    -> ``tower.x``), unchanged for the whole-model graph ``av``."""
    if graph == "av":
        return list(exclude)
    return [n.split(".", 1)[1] for n in exclude if n.split(".", 1)[0] == graph]


def float_nodes(onnx_path: Path, layers: list[str]) -> list[str]:
    """ONNX nodes to keep in float: ``layers`` and everything outside the conv towers and
    projections (front end, per-utterance normalisation, pooling, L2 norms). Quantizing the
    front end's power spectrum before its log costs the audio embedding most of its accuracy."""
    found = module_nodes(onnx_path, layers)
    found["outside"] = module_nodes(onnx_path, [""], ops=None)[""]
    missing = [layer for layer in layers if not found[layer]]
    if missing:
        raise ConfigError(f"layer(s) {missing} have no node in {onnx_path.name}", "report this: the exporter's node naming changed")
    return sorted({n for nodes in found.values() for n in nodes})


THIN_CHANNELS = 4


def thin_convs(onnx_path: Path) -> list[str]:
    """Conv nodes reading at most :data:`THIN_CHANNELS` input channels: the towers' stems (RGB,
    one log-mel plane). ONNX Runtime keeps them FP32: a QLinearConv over 1-3 channels does
    little work per byte it rearranges (with the input's quantization and layout transpose, the
    INT8 vision stem cost more than the FP32 one: 1.4 vs 1.2 ms per 32 frames, measured), and a
    float stem costs no accuracy."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    weights = {t.name: t.dims for t in model.graph.initializer}

    def reads(node) -> int:  # input channels: per group times groups (a depthwise conv reads all of them)
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        return weights[node.input[1]][1] * group

    return [n.name for n in model.graph.node
            if n.op_type == "Conv" and len(weights.get(n.input[1], ())) == 4 and reads(n) <= THIN_CHANNELS]


def calib_inputs(calib, graph: str) -> dict[str, np.ndarray]:
    """The calibration arrays a graph's inputs take."""
    arrays = {"wave": calib.waves, "image": calib.images}
    return {name: arrays[name] for name in TOWERS[graph]["inputs"]}


class _Reader:
    """ONNX Runtime calibration reader over a graph's calibration inputs, in equal batches
    (ORT's histogram calibrators stack per-batch outputs; a short last batch is dropped)."""

    def __init__(self, data: dict[str, np.ndarray], batch: int = 8):
        n = len(next(iter(data.values())))
        self.items = iter([{k: v[i : i + batch] for k, v in data.items()} for i in range(0, n - batch + 1, batch)])

    def get_next(self):
        return next(self.items, None)


def fp32_graph(model, graph: str, out: Path, opset: int = OPSET) -> Path:
    """``{graph}.fp32.onnx`` in ``out``, exported once and reused by every precision and format."""
    path = out / f"{graph}.fp32.onnx"
    return path if path.exists() else export_tower(model, graph, path, opset=opset)


def quantize_onnxruntime(model, calib, method: str, exclude: tuple[str, ...], out: Path, graphs=("audio", "image")) -> list[dict]:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}
    # x86 with VNNI runs u8 x s8 fastest; ARM cores prefer symmetric s8 activations (ORT's guidance).
    act = QuantType.QUInt8 if platform.machine().lower() in ("x86_64", "amd64") else QuantType.QInt8
    arts = []
    for graph in graphs:
        fp32 = fp32_graph(model, graph, out)
        dest = out / f"{graph}.int8.onnx"
        excluded = sorted(set(float_nodes(fp32, _graph_layers(exclude, graph))) | set(thin_convs(fp32)))
        with _ort_quiet():
            quantize_static(str(fp32), str(dest), _Reader(calib_inputs(calib, graph)), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=act, weight_type=QuantType.QInt8, calibrate_method=methods[method],
                            nodes_to_exclude=excluded, extra_options={"CalibPercentile": 99.99, "CalibMovingAverage": False})
        _tidy(dest, excluded)
        arts.append(artifact(fp32, graph, "onnx", "onnxruntime", "fp32"))
        arts.append(artifact(dest, graph, "onnx", "onnxruntime", "int8", activations=str(act).split(".")[-1], float_nodes=excluded))
    return arts


@contextlib.contextmanager
def _ort_quiet():
    """ONNX Runtime's quantizer prints its calibrator's progress (kept in this module's debug
    log) and warns on the root logger to run its pre-processing (dropped: edge-sdk skips it on
    purpose, it crashed on dynamo-exported graphs), burying the SDK's own output. The stdout
    redirect is process-wide while a graph is quantized (a few seconds)."""
    advice = _Drop("pre-processing before quantization")
    root, out = logging.getLogger(), io.StringIO()
    root.addFilter(advice)
    try:
        with contextlib.redirect_stdout(out):
            yield
    finally:
        root.removeFilter(advice)
        if out.getvalue().strip():
            log.debug("onnxruntime.quantization: %s", out.getvalue().strip())


class _Drop(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record) -> bool:
        return self.text not in record.getMessage()


def _tidy(path: Path, float_nodes: list[str]) -> None:
    """Post-process ONNX Runtime's QDQ graph in place (:func:`_float_inputs`,
    :func:`_drop_zero_points`; the shapes of tensors no node writes any more go)."""
    import onnx

    model = onnx.load(str(path))
    _float_inputs(model, set(float_nodes))
    _drop_zero_points(model)
    written = {o for n in model.graph.node for o in n.output}
    shapes = [v for v in model.graph.value_info if v.name in written]
    del model.graph.value_info[:]
    model.graph.value_info.extend(shapes)
    onnx.save(model, str(path))


def _float_inputs(model, float_nodes: set[str]) -> None:
    """Point ``Shape`` nodes, and the convs and projections kept in float, that read a
    Q -> DQ pair at the float tensor before it; drop the pairs nothing reads any more.

    - ``Shape``: the exporter takes the batch size from the input's ``Shape``; after QDQ
      insertion it reads the dequantized input, so ONNX Runtime keeps a full-resolution
      DequantizeLinear alive only to learn a shape (3% of the INT8 vision tower, measured),
      and the stem's DQ -> Conv cannot fuse alone. A shape is the same before quantization.
    - A layer kept in float (by sensitivity) still read its input through the Q -> DQ pair
      the quantizer puts on a tensor for all its readers, and ONNX Runtime's
      ``WeightBiasQuantization`` pass quantizes the float weights of any conv or Gemm that
      reads a DQ and feeds a Q: the layer ran INT8 after all (measured: a QLinearConv in the
      optimized graph). Reading the float tensor, it stays float.
    """
    producer = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.op_type != "Shape" and not (node.name in float_nodes and node.op_type in ("Conv", "Gemm", "MatMul")):
            continue
        dq = producer.get(node.input[0])
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if q is not None and q.op_type == "QuantizeLinear":
            node.input[0] = q.input[0]
    outputs = {o.name for o in model.graph.output}
    while True:
        read = {i for n in model.graph.node for i in n.input} | outputs
        keep = [n for n in model.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear") or n.output[0] in read]
        if len(keep) == len(model.graph.node):
            return
        del model.graph.node[:]
        model.graph.node.extend(keep)


def _drop_zero_points(model) -> None:
    """Drop the all-zero zero points of the DequantizeLinear nodes that give a Conv its weights
    and bias (an optional input that defaults to 0; symmetric int8 weights and int32 biases
    always have 0): 5 bytes per output channel, and names, of a file whose weights take 1.
    ONNX Runtime still fuses those convs into QLinearConv; its Gemm fusion (QGemm) wants the
    zero points, and the QuantizeLinear nodes' set the activations' type: both stay."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    readers: dict[str, set] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, set()).add(node.op_type)
    for node in model.graph.node:
        if (node.op_type == "DequantizeLinear" and len(node.input) == 3 and node.input[0] in inits
                and node.input[2] in inits and readers.get(node.output[0]) == {"Conv"}
                and not numpy_helper.to_array(inits[node.input[2]]).any()):
            del node.input[2]
    used = {i for n in model.graph.node for i in n.input}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def quantize_tensorrt(model, calib, method: str, exclude: tuple[str, ...], out: Path, qmodel=None, graphs=("audio", "image")) -> list[dict]:
    """Q/DQ ONNX graphs from a Model Optimizer fake-quant model (PTQ, or the QAT result)."""
    from edge_sdk.quant.fakequant import fake_quantize

    qmodel = qmodel if qmodel is not None else fake_quantize(model, calib, method, exclude)
    arts = []
    for tower in graphs:
        dest = export_tower(qmodel, tower, out / f"{tower}.int8.qdq.onnx", dynamo=False)
        arts.append(artifact(dest, tower, "onnx", "tensorrt", "int8", note="explicit Q/DQ (TensorRT 10 and 11); runs in ONNX Runtime here"))
    return arts


def _drop_unused_state(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Delete the float parameters a converted PT2E graph no longer reads (its weights now
    live in folded int8 constants): ``torch.export`` would carry them into the program."""
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for name, _ in list(gm.named_parameters()) + list(gm.named_buffers()):
        if name not in used:
            owner, _, attr = name.rpartition(".")
            delattr(gm.get_submodule(owner) if owner else gm, attr)
    return gm


def quantize_xnnpack(model, calib, method: str, exclude: tuple[str, ...], out: Path, qat_steps: int = 0, fsdd=None,
                     mnist=None) -> list[dict]:
    """PT2E INT8 for XNNPACK: PTQ, or with ``qat_steps`` QAT (``prepare_qat_pt2e``, calibrated,
    then self-distilled towards the float model), lowered to ``.pte`` programs."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e

    from edge_sdk.export.executorch import lower_to_pte, two_stage_frontends
    from edge_sdk.models.frontend import LogMel
    from edge_sdk.quant.pt2e_observers import activation_config

    if method == "entropy":
        raise ConfigError("the xnnpack target (PT2E) has no entropy calibrator", "use --method percentile or minmax for xnnpack")
    if exclude:
        # PT2E loses the module path of convs it folds batch norms into, so per-layer
        # exclusion would silently leave those convs unquantized: say so instead.
        raise ConfigError(f"the xnnpack target cannot keep single layers in float ({', '.join(exclude)})",
                          "raise --threshold so no layer is excluded, or use --target onnxruntime/tensorrt for this model")
    prepared, examples = {}, {}
    for tower, data in (("audio", calib.waves), ("image", calib.images)):
        module = two_stage_frontends(copy.deepcopy(getattr(model, tower)).eval())  # prepare_pt2e folds batch norms into the graph's weights
        examples[tower] = (torch.from_numpy(np.ascontiguousarray(data[:1])),)  # NCHW: programs keep the example's dim order
        # Global config: every conv/linear (weights per channel), add, pool of the tower; the
        # log-mel front end stays float (its products feed a log). Per-module configs lost
        # the convs whose batch norms PT2E folds: weights stayed float (measured). QAT uses
        # the QAT config's moving-average fake quantizers (``method`` is for PTQ).
        if qat_steps:
            batch = torch.export.Dim("batch")
            exported = torch.export.export(module, (torch.from_numpy(np.ascontiguousarray(data[:2])),), dynamic_shapes=({0: batch},)).module()
            quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=True))
            quantizer.set_module_type(LogMel, None)
            prepared[tower] = prepare_qat_pt2e(exported, quantizer)
        else:
            exported = torch.export.export(module, examples[tower]).module()
            quantizer = XNNPACKQuantizer().set_global(activation_config(get_symmetric_quantization_config(is_per_channel=True), method))
            quantizer.set_module_type(LogMel, None)
            prepared[tower] = prepare_pt2e(exported, quantizer)
        # QAT's moving-average fake quantizers take their first range from the first batch:
        # give them whole batches (PTQ observers see every pair, one at a time, batch 1)
        step = 32 if qat_steps else 1
        with torch.no_grad():
            for i in range(0, len(data), step):
                prepared[tower](torch.from_numpy(np.ascontiguousarray(data[i : i + step])))
    if qat_steps:
        from edge_sdk.quant.qat import pt2e_finetune

        log.info("xnnpack: PT2E QAT, %d steps", qat_steps)
        pt2e_finetune(prepared, copy.deepcopy(model), fsdd, mnist, steps=qat_steps)
    arts = []
    for tower in ("audio", "image"):
        converted = _drop_unused_state(convert_pt2e(prepared[tower]))
        dest, delegated = lower_to_pte(converted, examples[tower], out / f"{tower}.int8.pte")
        arts.append(artifact(dest, tower, "executorch", "executorch", "int8", delegate="xnnpack", delegated=delegated,
                             method="qat" if qat_steps else "ptq"))
    return arts


TARGETS = {"onnxruntime": quantize_onnxruntime, "xnnpack": quantize_xnnpack, "tensorrt": quantize_tensorrt}
