"""Every exporter, by the name ``edge-sdk export --format`` takes, and the INT8 targets by the
name ``edge-sdk quantize --target`` takes: the one registry both commands read."""

from __future__ import annotations

from edge_sdk.export.base import Exporter
from edge_sdk.export.executorch import ExecuTorchExporter
from edge_sdk.export.onnxruntime import OnnxRuntimeExporter
from edge_sdk.export.tensorrt import TensorRTExporter
from edge_sdk.export.weights import TorchExporter

__all__ = ["EXPORTERS", "TARGETS"]

EXPORTERS: dict[str, Exporter] = {e.name: e for e in (TorchExporter(), OnnxRuntimeExporter(), TensorRTExporter(), ExecuTorchExporter())}
TARGETS: dict[str, Exporter] = {e.target: e for e in EXPORTERS.values() if e.target}
