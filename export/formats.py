"""Exporters: one small declarative class per format (like optimum's ``OnnxConfig``).

An exporter declares its format, the backend that runs it, the precisions it writes, its
batch axis and its tolerances; ``write`` produces the files of one precision and
``runner`` opens them for validation. The generic engine (:mod:`.engine`) does
everything else -- validation on real data, metrics, the manifest -- with no
model- or format-specific branches.

- :class:`TorchExporter`: the PyTorch weights (safetensors), the reference every other row is compared with.
- :class:`OnnxExporter`: opset 18+, dynamic batch, each tower and the whole model; FP32,
  FP16 (front end kept FP32), INT8 (ONNX Runtime static QDQ, per-channel weights).
- :class:`TensorRTExporter`: the graphs TensorRT builds engines from (FP32/FP16 ONNX, and
  Model Optimizer explicit Q/DQ for INT8, the only INT8 path TensorRT 11 has). Engines are
  specific to a GPU and TensorRT version, so they are built on the device
  (:mod:`edge_sdk.runtime.tensorrt`), here too when TensorRT is installed.
- :class:`ExecuTorchExporter`: ``.pte`` programs through the XNNPACK partitioner, FP32 and
  PT2E INT8, batch 1.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from edge_sdk.export.onnx import OPSET, TOWERS
from edge_sdk.export.validate import TOLERANCES, Tolerance

__all__ = ["Job", "Exporter", "TorchExporter", "OnnxExporter", "TensorRTExporter", "ExecuTorchExporter", "EXPORTERS"]


@dataclass
class Job:
    """What every exporter of one run shares: the model, the bundle folder, the calibration set."""

    model: object
    out: Path
    calib_dir: Path | None = None
    method: str = "percentile"
    opset: int = OPSET
    _calib: object = None
    _deploy: object = None

    @property
    def deploy(self):
        """The model every deployable format is exported from: the image normalisation
        folded into the stem where that is exact (:mod:`.fold`). ``model`` stays the reference."""
        from edge_sdk.export.fold import fold_image_normalize

        if self._deploy is None:
            self._deploy = fold_image_normalize(self.model)
        return self._deploy

    @property
    def calib(self):
        from edge_sdk.errors import ConfigError
        from edge_sdk.quant.calib import load_calib_set

        if self._calib is None:
            if self.calib_dir is None:
                raise ConfigError("INT8 needs calibration data", "pass --calib DIR (edge-sdk calib --out DIR writes real AV-Digits pairs)")
            self._calib = load_calib_set(self.calib_dir, self.model.spec)
        return self._calib

    def fp32(self, graph: str) -> Path:
        """``{graph}.fp32.onnx``, exported once for every format that needs it."""
        from edge_sdk.export.int8 import fp32_graph

        return fp32_graph(self.deploy, graph, self.out, self.opset)

    def fp16(self, graph: str) -> Path:
        """``{graph}.fp16.onnx`` (weights and activations FP16; front end and I/O FP32), made once."""
        from edge_sdk.export.fp16 import to_fp16

        path = self.out / f"{graph}.fp16.onnx"
        return path if path.exists() else to_fp16(self.fp32(graph), path)


def artifact(path: Path, graph: str, fmt: str, backend: str, precision: str, **extra) -> dict:
    return {"file": path.name, "tower": graph, "format": fmt, "backend": backend, "precision": precision,
            "inputs": TOWERS[graph]["inputs"], "outputs": TOWERS[graph]["outputs"], **extra}


def torch_weights(model, out: Path) -> dict:
    """``out/model.safetensors`` (the spec in its metadata, as ``save_model`` writes it): the
    PyTorch reference every bundle holds; its artifact record."""
    from edge_sdk.checkpoint import save_tensors

    path = out / "model.safetensors"
    save_tensors(path, model.state_dict(), model.spec)
    return artifact(path, "av", "safetensors", "torch", "fp32")


class Exporter:
    """One format. Subclasses declare the class attributes and implement ``write``/``runner``."""

    format: ClassVar[str]
    backend: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]]
    graphs: ClassVar[tuple[str, ...]] = ("audio", "image")
    batch: ClassVar[str] = "dynamic"
    requires: ClassVar[tuple[str, ...]] = ()  # modules it imports
    extra: ClassVar[str] = "export"  # the pip extra that installs them

    def tolerance(self, precision: str) -> Tolerance:
        return TOLERANCES[precision]

    def missing(self) -> str | None:
        """Why this format cannot be written on this machine (None: it can)."""
        lacking = [m for m in self.requires if importlib.util.find_spec(m) is None]
        return f"needs {', '.join(lacking)} (pip install 'edge_sdk[{self.extra}]')" if lacking else None

    def write(self, job: Job, precision: str) -> list[dict]:
        raise NotImplementedError

    def runner(self, files: dict[str, Path], spec, offset, precision: str):
        raise NotImplementedError


class TorchExporter(Exporter):
    format, backend, precisions, graphs = "safetensors", "torch", ("fp32",), ("av",)
    requires, extra = ("torch", "safetensors"), "train"

    def write(self, job, precision):
        return [torch_weights(job.model, job.out)]

    def runner(self, files, spec, offset, precision):
        from edge_sdk.runtime.backends import TorchTowers

        return TorchTowers(files["av"], spec, offset)


class OnnxExporter(Exporter):
    format, backend, precisions, graphs = "onnx", "onnxruntime", ("fp32", "fp16", "int8"), ("audio", "image", "av")
    requires = ("onnx", "onnxscript", "onnxruntime")

    def write(self, job, precision):
        if precision == "fp32":
            return [artifact(job.fp32(g), g, "onnx", self.backend, "fp32", opset=job.opset) for g in self.graphs]
        if precision == "fp16":
            return [artifact(job.fp16(g), g, "onnx", self.backend, "fp16", opset=job.opset,
                             note="FP16 weights and activations; the log-mel front end and the I/O stay FP32") for g in self.graphs]
        from edge_sdk.export.int8 import quantize_onnxruntime

        for g in self.graphs:
            job.fp32(g)
        arts = quantize_onnxruntime(job.deploy, job.calib, job.method, (), job.out, graphs=self.graphs)
        return [{**a, "opset": job.opset} for a in arts if a["precision"] == "int8"]

    def runner(self, files, spec, offset, precision):
        from edge_sdk.runtime.backends import OrtTowers

        return OrtTowers(files["audio"], files["image"], spec, offset)


class TensorRTExporter(Exporter):
    format, backend, precisions = "onnx", "tensorrt", ("fp32", "fp16", "int8")
    requires = ("onnx", "onnxruntime")

    def write(self, job, precision):
        if precision == "int8":
            from edge_sdk.export.int8 import quantize_tensorrt

            arts = quantize_tensorrt(job.deploy, job.calib, job.method, (), job.out)
            return [{**a, "role": "engine source"} for a in arts]
        # TensorRT 11 takes FP16 only from the graph's types (strongly typed); TensorRT 10 builds the same graph
        paths = {g: job.fp16(g) if precision == "fp16" else job.fp32(g) for g in self.graphs}
        return [artifact(p, g, "onnx", self.backend, precision, role="engine source") for g, p in paths.items()]

    def runner(self, files, spec, offset, precision):
        """Engines where TensorRT and a GPU are present; else the engine-source graphs in ONNX Runtime."""
        from edge_sdk.runtime.backends import OrtTowers

        if importlib.util.find_spec("tensorrt") is not None:
            from edge_sdk.runtime.tensorrt import TrtTowers, load_or_build

            engines = {t: load_or_build(files[t], t, precision) for t in ("audio", "image")}
            return TrtTowers(engines["audio"], engines["image"], spec, offset)
        return OrtTowers(files["audio"], files["image"], spec, offset)

    def engine_status(self) -> str:
        if importlib.util.find_spec("tensorrt") is None:
            return "engine not built: TensorRT is not installed here; the engine-source graphs were validated in ONNX Runtime"
        return "engines built and validated with TensorRT"


class ExecuTorchExporter(Exporter):
    format, backend, precisions, batch = "executorch", "executorch", ("fp32", "int8"), "1"
    requires, extra = ("executorch",), "executorch"

    def write(self, job, precision):
        if precision == "int8":
            from edge_sdk.export.int8 import quantize_xnnpack

            return quantize_xnnpack(job.deploy, job.calib, job.method, (), job.out)
        import copy

        from edge_sdk.export.executorch import lower_to_pte
        from edge_sdk.export.onnx import example_inputs

        arts = []
        for g in self.graphs:
            module = copy.deepcopy(getattr(job.deploy, g)).eval()
            path, info = lower_to_pte(module, example_inputs(job.model.spec, g, 1), job.out / f"{g}.fp32.pte")
            arts.append(artifact(path, g, self.format, self.backend, "fp32", delegate="xnnpack", delegated=info))
        return arts

    def runner(self, files, spec, offset, precision):
        from edge_sdk.runtime.backends import ExecuTorchTowers

        return ExecuTorchTowers(files["audio"], files["image"], spec, offset)


EXPORTERS: dict[str, Exporter] = {"torch": TorchExporter(), "onnx": OnnxExporter(), "tensorrt": TensorRTExporter(),
                                  "executorch": ExecuTorchExporter()}
