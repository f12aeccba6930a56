"""The TensorRT target: the ONNX graphs TensorRT builds engines from ("engine sources").

An engine only runs on the GPU model and TensorRT version that built it, so a bundle holds
the ONNX each build path needs and the runtime builds the engine on the device, once, into a
cache (:mod:`edge_sdk.runtime.backends.tensorrt`):

- FP32: the FP32 tower graphs (the builder clears TF32, so fp32 means FP32);
- FP16: the FP16 graphs, types in the graph (TensorRT 11's strongly typed networks need
  them; TensorRT 10 builds the same graph);
- INT8 (:data:`RECIPE`): explicit Q/DQ from NVIDIA Model Optimizer (max, percentile or
  entropy calibration; weights per channel), exported to ONNX: the only INT8 path TensorRT 11
  keeps, and one TensorRT 10 builds too. QAT fine-tunes the same fake-quant model.

Where TensorRT is not installed, the engine sources are validated in ONNX Runtime (the
report says so).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from edge_sdk.export.base import Exporter, Int8Recipe, Job, artifact
from edge_sdk.export.graphs import export_tower

__all__ = ["RECIPE", "TensorRTExporter", "qdq_graphs", "qat_model"]

RECIPE = Int8Recipe(
    quantizer="NVIDIA Model Optimizer explicit Q/DQ (modelopt.torch.quantization), exported to ONNX",
    methods=("minmax", "percentile", "entropy"),
    per_channel=True,
    kept_float="log-mel front end, normalisations, pooling, L2 norms (TensorRT fuses or runs them in float)",
    layer_fallback=True,
    qat="Model Optimizer fake-quant QAT, self-distilled to the FP32 model",
)


def qdq_graphs(qmodel, out: Path, backend: str, method: str, graphs=("audio", "image")) -> list[dict]:
    """``{graph}.int8.qdq.onnx`` of a Model Optimizer fake-quant model (PTQ or QAT), through the
    TorchScript exporter (the path Model Optimizer's Q/DQ symbolics support), with what runs INT8."""
    from edge_sdk.export.int8_report import onnx_int8_accounting

    arts = []
    for graph in graphs:
        dest = export_tower(qmodel, graph, Path(out) / f"{graph}.int8.qdq.onnx", dynamo=False)
        accounting = onnx_int8_accounting(dest, reasons=_float_reasons(qmodel, dest))
        note = "explicit Q/DQ (TensorRT 10 and 11); runs in ONNX Runtime here"
        arts.append(artifact(dest, graph, "onnx", backend, "int8", method=method, note=note, int8=accounting))
    return arts


def _float_reasons(qmodel, path: Path) -> dict[str, str]:
    """Why each layer the fake-quant model left unquantized stayed float (the sensitivity analysis),
    by its node name in the TorchScript-exported graph (``/image/tower/layers/layers.0/...``)."""
    import onnx

    off = [n for n, m in qmodel.named_modules() if getattr(getattr(m, "weight_quantizer", None), "is_enabled", True) is False]
    nodes = [n.name for n in onnx.load(str(path), load_external_data=False).graph.node]
    return {n: "kept float by the sensitivity analysis" for n in nodes for layer in off if layer and f"/{layer.split('.')[-1]}/" in n
            and all(part in n for part in layer.split(".")[1:])}  # fmt: skip


def qat_model(job: Job):
    """Model Optimizer QAT of the job's deploy model: calibrated fake-quant, then self-distilled
    towards the float model (:func:`edge_sdk.quant.qat.qat_finetune`)."""
    from edge_sdk.quant.qat import qat_finetune

    qmodel, _ = qat_finetune(job.deploy, job.calib, job.method, job.exclude, job.fsdd, job.mnist, steps=job.qat_steps)
    return qmodel


class TensorRTExporter(Exporter):
    name, target, format, backend = "tensorrt", "tensorrt", "onnx", "tensorrt"
    precisions = ("fp32", "fp16", "int8")
    requires = ("onnx", "onnxruntime")
    int8 = RECIPE

    def write(self, job, precision):
        if precision == "int8":
            from edge_sdk.quant.fakequant import fake_quantize

            qmodel = fake_quantize(job.deploy, job.calib, job.method, job.exclude)
            return [{**a, "role": "engine source"} for a in qdq_graphs(qmodel, job.out, self.backend, "ptq")]
        paths = {g: job.fp16(g) if precision == "fp16" else job.fp32(g) for g in self.graphs}
        return [artifact(p, g, "onnx", self.backend, precision, role="engine source") for g, p in paths.items()]

    def write_qat(self, job, out):
        return [{**a, "role": "engine source"} for a in qdq_graphs(qat_model(job), out, self.backend, "qat")]

    def engines(self) -> bool:
        return importlib.util.find_spec("tensorrt") is not None

    def notes(self, precision):
        if not self.engines():
            return ["engine not built: TensorRT is not installed here; the engine-source graphs were validated in ONNX Runtime"]
        return ["engines built and validated with TensorRT"]
