"""The ONNX Runtime target: ONNX graphs of the towers and of the whole model, FP32, FP16 and
INT8, run by ONNX Runtime on the CPU (and its CUDA/TensorRT providers).

- FP32: the dynamo exporter's graphs (:mod:`.graphs`), batch norms folded, front end in the graph.
- FP16: ONNX Runtime's float16 converter, front end and I/O kept FP32 (:mod:`.fp16`).
- INT8 (:data:`RECIPE`): static QDQ quantization (``onnxruntime.quantization.quantize_static``),
  weights per channel (7-bit on x86, so cores without VNNI do not saturate), u8 activations on x86
  and s8 on ARM, as ONNX Runtime advises.
  Kept float: the log-mel front end, per-utterance normalisation, pooling and L2 norms
  (quantizing the power spectrum before its log cost the audio embedding 6 points of
  cosine), the stems (:func:`thin_convs`: faster in FP32) and the layers the sensitivity
  analysis names. The QDQ graph is then tidied (:func:`_tidy`). QAT: Model Optimizer's
  fake-quant model, fine-tuned, as Q/DQ ONNX (:func:`edge_sdk.export.tensorrt.qdq_graphs`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import platform
from pathlib import Path

import numpy as np

from edge_sdk.errors import ConfigError
from edge_sdk.export.base import Exporter, Int8Recipe, Job, Reference, artifact
from edge_sdk.export.graphs import TOWERS, frontend_nodes, module_nodes
from edge_sdk.export.int8_report import onnx_int8_accounting
from edge_sdk.export.validate import Tolerance, compare, verdict

__all__ = [
    "RECIPE",
    "OnnxRuntimeExporter",
    "quantize_graphs",
    "float_nodes",
    "thin_convs",
    "calib_inputs",
    "graph_layers",
    "THIN_DEPTH",
    "THIN_WHY",
    "ort_session",
    "ort_quiet",
]

log = logging.getLogger(__name__)

RECIPE = Int8Recipe(
    quantizer="onnxruntime.quantization.quantize_static, QDQ format",
    methods=("minmax", "percentile", "entropy"),
    per_channel=True,
    kept_float="log-mel front end, normalisations, pooling, L2 norms, stems reading at most 4 channels and 128 inputs per output",
    layer_fallback=True,
    qat="Model Optimizer fake-quant QAT, exported as Q/DQ ONNX",
)


class OnnxRuntimeExporter(Exporter):
    name, target, format, backend = "onnx", "onnxruntime", "onnx", "onnxruntime"
    precisions, graphs = ("fp32", "fp16", "int8"), ("audio", "image", "av")
    requires = ("onnx", "onnxscript", "onnxruntime")
    int8 = RECIPE

    def write(self, job, precision):
        if precision == "fp32":
            return [artifact(job.fp32(g), g, "onnx", self.backend, "fp32", opset=job.opset) for g in self.graphs]
        if precision == "fp16":
            return [
                artifact(
                    job.fp16(g),
                    g,
                    "onnx",
                    self.backend,
                    "fp16",
                    opset=job.opset,
                    note="FP16 weights and activations; the log-mel front end and the I/O stay FP32",
                )
                for g in self.graphs
            ]
        return quantize_graphs(job, self.graphs)

    def write_qat(self, job, out):
        from edge_sdk.export.tensorrt import qat_model, qdq_graphs

        return qdq_graphs(qat_model(job), out, self.backend, "qat", graphs=("audio", "image"))

    def extra_parity(self, files, ref: Reference, tol: Tolerance):
        """The whole-model graph ``av`` (both inputs, all three outputs) through ONNX Runtime."""
        if "av" not in files:
            return {}, []
        sess = ort_session(files["av"])
        outs = sess.run(TOWERS["av"]["outputs"], {"wave": ref.inputs["wave"], "image": ref.inputs["image"]})
        whole = compare(ref.outputs, dict(zip(TOWERS["av"]["outputs"], outs)))
        return {f"av/{k}": v for k, v in whole.items()}, [f"whole-model graph {m}" for m in verdict(whole, None, None, tol)]


def ort_session(path: Path):
    """A CPU ONNX Runtime session of ``path``; a graph it refuses is a ModelFileError naming why."""
    import onnxruntime as ort

    from edge_sdk.runtime.backends.onnxruntime import ort_load_error

    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
        raise ort_load_error(path, e) from None


def graph_layers(exclude, graph: str) -> list[str]:
    """AVNet layer names as module paths of one graph: relative to a tower (``image.tower.x``
    -> ``tower.x``), unchanged for the whole-model graph ``av``."""
    if graph == "av":
        return list(exclude)
    return [n.split(".", 1)[1] for n in exclude if n.split(".", 1)[0] == graph]


# Op types quantized, whatever the model: its layers (Conv, Gemm, MatMul) and the ops that carry
# INT8 tensors between them (residual adds, activations, pooling, reshapes). Normalisation arithmetic
# (Mul, Div, Sqrt, Reduce*, Softmax, LayerNormalization, Clip of an L2 norm) stays float: chosen by op
# type and graph position, never by a module's name.
INT8_OPS = ["Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Relu", "LeakyRelu", "MaxPool", "AveragePool", "GlobalAveragePool",
            "GlobalMaxPool", "Concat", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Resize", "Pad", "Split"]  # fmt: skip


def float_nodes(onnx_path: Path, layers: list[str]) -> list[str]:
    """ONNX nodes to keep in float: the SDK's log-mel front end (quantizing the power spectrum
    before its log costs the audio embedding most of its accuracy) and ``layers`` (named by the
    sensitivity analysis)."""
    found = module_nodes(onnx_path, layers)
    found["frontend"] = frontend_nodes(onnx_path)
    missing = [layer for layer in layers if not found[layer]]
    if missing:
        raise ConfigError(f"layer(s) {missing} have no node in {onnx_path.name}", "report this: the exporter's node naming changed")
    return sorted({n for nodes in found.values() for n in nodes})


THIN_DEPTH = 128
THIN_WHY = f"stem reading at most 4 channels, at most {THIN_DEPTH} inputs per output: faster in FP32 here"


def thin_convs(onnx_path: Path) -> list[str]:
    """Stems: conv nodes reading at most 4 channels whose outputs each sum at most
    :data:`THIN_DEPTH` inputs (channels x kernel area): the stems of small towers (3 x 3 x 3 over RGB, 3 x 3 over one log-mel plane).
    ONNX Runtime keeps them FP32: such a QLinearConv does little work per byte it rearranges
    (with the input's quantization and layout transpose, the INT8 vision stem of our students
    cost more than the FP32 one: 1.4 vs 1.2 ms per 32 frames, measured), and a float stem costs
    no accuracy. A ResNet's 7 x 7 stem over RGB (147) or a ViT's 16 x 16 patch embedding (768)
    does enough work per output to run INT8."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    weights = {t.name: t.dims for t in model.graph.initializer}

    def thin(node) -> bool:  # channels read: per group times groups (a depthwise conv reads all of them)
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        _, per_group, *kernel = weights[node.input[1]]
        return per_group * group <= 4 and per_group * group * int(np.prod(kernel)) <= THIN_DEPTH

    return [n.name for n in model.graph.node if n.op_type == "Conv" and len(weights.get(n.input[1], ())) == 4 and thin(n)]


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


def quantize_graphs(job: Job, graphs=("audio", "image")) -> list[dict]:
    """``{graph}.int8.onnx`` for each graph: ONNX Runtime's static QDQ quantization of the job's
    FP32 graph, calibrated on its calibration pairs; returns the INT8 artifact records."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}
    # x86 with VNNI runs u8 x s8 fastest; ARM cores prefer symmetric s8 activations (ORT's guidance).
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    act = QuantType.QUInt8 if x86 else QuantType.QInt8
    # u8 x s8 on an x86 core without VNNI (AVX2 only: many laptops, AMD before Zen 4) sums pairs
    # in 16 bits (VPMADDUBSW) and saturates; 7-bit weights cannot (ORT's reduce_range advice). A
    # bundle runs on machines other than the one that exported it: ImageBind-small's image
    # embedding fell to cosine 0.92 on an AVX2-only EPYC with 8-bit weights.
    arts = []
    for graph in graphs:
        fp32 = job.fp32(graph)
        dest = job.out / f"{graph}.int8.onnx"
        layers, stems, front = graph_layers(job.exclude, graph), set(thin_convs(fp32)), set(frontend_nodes(fp32))
        sensitive = set(float_nodes(fp32, layers)) - front
        excluded = sorted(sensitive | stems | front)
        with ort_quiet():
            quantize_static(
                str(fp32),
                str(dest),
                _Reader(calib_inputs(job.calib, graph)),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=act,
                weight_type=QuantType.QInt8,
                reduce_range=x86,
                calibrate_method=methods[job.method],
                nodes_to_exclude=excluded,
                op_types_to_quantize=INT8_OPS,
                extra_options={"CalibPercentile": 99.99, "CalibMovingAverage": False},
            )
        _tidy(dest, excluded)
        why = {**dict.fromkeys(sensitive, "kept float by the sensitivity analysis"),
               **dict.fromkeys(stems, THIN_WHY)}  # fmt: skip
        accounting = onnx_int8_accounting(dest, front, why)
        arts.append(artifact(dest, graph, "onnx", "onnxruntime", "int8", opset=job.opset, activations=str(act).split(".")[-1],
                             weight_bits=7 if x86 else 8, float_nodes=excluded, method="ptq", int8=accounting))  # fmt: skip
    return arts


@contextlib.contextmanager
def ort_quiet():
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
        if (
            node.op_type == "DequantizeLinear"
            and len(node.input) == 3
            and node.input[0] in inits
            and node.input[2] in inits
            and readers.get(node.output[0]) == {"Conv"}
            and not numpy_helper.to_array(inits[node.input[2]]).any()
        ):
            del node.input[2]
    used = {i for n in model.graph.node for i in n.input}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
