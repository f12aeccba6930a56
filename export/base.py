"""The exporter protocol every target follows, and what exporters of one run share.

One exporter per target (after optimum's ``OnnxConfig``: small declarative classes, one
generic engine): :mod:`.onnxruntime`, :mod:`.tensorrt`, :mod:`.executorch`, and the PyTorch
reference :mod:`.weights`. An exporter declares its format, the backend that runs it, its
precisions, graphs, batch axis, tolerances and its :class:`Int8Recipe`, and implements

- **convert + calibrate**: ``write(job, precision)`` writes the files of one precision
  (for INT8: calibrated on the job's real calibration pairs) and returns their artifact
  records; ``write_qat(job, out)`` the INT8 files through quantization-aware training;
- **validate on real inputs**: :func:`validate` runs the written files through the very
  runner an app uses (:func:`edge_sdk.runtime.backends.runner_for`) against the PyTorch
  :class:`Reference`;
- **report row**: :func:`report_row`.

``edge-sdk export`` (:mod:`.engine`) and ``edge-sdk quantize`` (:mod:`.quantize`, the INT8
policy: sensitivity, float fallback, QAT) call the same exporters: one INT8 path.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from edge_sdk.bundle import Choice
from edge_sdk.errors import ConfigError
from edge_sdk.export.graphs import OPSET, TOWERS
from edge_sdk.export.validate import TOLERANCES, Tolerance, compare, heatmap_agreement, run_graph, verdict

__all__ = ["GATED", "Int8Recipe", "Job", "Exporter", "Reference", "artifact", "size_mb", "validate", "report_row", "reference_outputs"]

GATED = ("pointing_acc", "a2i_r1", "probe_audio_acc")  # the task metrics an export's drop is checked on


@dataclass(frozen=True)
class Int8Recipe:
    """How a target makes INT8, said in the report: the quantizer, the calibration methods it
    has, per-channel weights, what it keeps in float and whether single layers can stay float."""

    quantizer: str
    methods: tuple[str, ...]
    per_channel: bool
    kept_float: str
    layer_fallback: bool = True  # whether layers named by the sensitivity analysis can stay float
    qat: str = ""  # the quantization-aware training path ("" = none)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Job:
    """What every exporter of one run shares: the model, the output folder, the calibration set
    and method, the layers kept in float, and the data QAT self-distils on."""

    model: object
    out: Path
    calib_dir: Path | None = None
    method: str = "percentile"
    opset: int = OPSET
    exclude: tuple[str, ...] = ()
    qat_steps: int = 150
    fsdd: object = None
    mnist: object = None
    calib_set: object = field(default=None, repr=False)
    deploy_model: object = field(default=None, repr=False)

    @property
    def deploy(self):
        """The model every deployable format is exported from: the image normalisation folded into
        the stem where that is exact (:mod:`.fold`). ``model`` stays the reference."""
        from edge_sdk.export.fold import fold_image_normalize

        if self.deploy_model is None:
            self.deploy_model = fold_image_normalize(self.model)
        return self.deploy_model

    @property
    def calib(self):
        """The calibration set, read and checked against the model's contract on first use."""
        from edge_sdk.quant.calib import load_calib_set

        if self.calib_set is None:
            if self.calib_dir is None:
                raise ConfigError("INT8 needs calibration data", "pass --calib DIR (edge-sdk calib --out DIR writes real AV-Digits pairs)")
            self.calib_set = load_calib_set(self.calib_dir, self.model.contract)
        return self.calib_set

    def calibration(self) -> dict | None:
        """What the run calibrated on (None when nothing was), for reports and manifests."""
        return None if self.calib_set is None else {**self.calib_set.describe(), "method": self.method}

    def fp32(self, graph: str) -> Path:
        """``{graph}.fp32.onnx``, exported once and reused by every precision and target."""
        from edge_sdk.export.graphs import export_tower

        path = self.out / f"{graph}.fp32.onnx"
        return path if path.exists() else export_tower(self.deploy, graph, path, opset=self.opset)

    def fp16(self, graph: str) -> Path:
        """``{graph}.fp16.onnx`` (weights and activations FP16; front end and I/O FP32), made once."""
        from edge_sdk.export.fp16 import to_fp16

        path = self.out / f"{graph}.fp16.onnx"
        return path if path.exists() else to_fp16(self.fp32(graph), path)


def artifact(path: Path, graph: str, fmt: str, backend: str, precision: str, **extra) -> dict:
    """The manifest record of one written file."""
    return {
        "file": path.name,
        "tower": graph,
        "format": fmt,
        "backend": backend,
        "precision": precision,
        "inputs": TOWERS[graph]["inputs"],
        "outputs": TOWERS[graph]["outputs"],
        **extra,
    }


def size_mb(root: Path, arts: list[dict]) -> float:
    """Megabytes of a row's files (the whole-model graph ``av`` aside where towers are beside it)."""
    towers = [a for a in arts if a["tower"] != "av"] or arts
    return round(sum((root / a["file"]).stat().st_size for a in towers) / 1e6, 3)


class Exporter:
    """One target. Subclasses declare the class attributes and implement :meth:`write`."""

    name: ClassVar[str]  # edge-sdk export --format
    target: ClassVar[str | None] = None  # edge-sdk quantize --target (None: no INT8 target)
    format: ClassVar[str]
    backend: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]]
    graphs: ClassVar[tuple[str, ...]] = ("audio", "image")
    batch: ClassVar[str] = "dynamic"
    requires: ClassVar[tuple[str, ...]] = ()  # modules it imports
    extra: ClassVar[str] = "export"  # the pip extra that installs them
    int8: ClassVar[Int8Recipe | None] = None

    def tolerance(self, precision: str) -> Tolerance:
        return TOLERANCES[precision]

    def missing(self) -> str | None:
        """Why this target cannot be written on this machine (None: it can)."""
        lacking = [m for m in self.requires if importlib.util.find_spec(m) is None]
        return f"needs {', '.join(lacking)} (pip install 'edge_sdk[{self.extra}]')" if lacking else None

    def write(self, job: Job, precision: str) -> list[dict]:
        raise NotImplementedError

    def write_qat(self, job: Job, out: Path) -> list[dict]:
        """INT8 files through quantization-aware training, into ``out``."""
        raise ConfigError(f"{self.name} has no quantization-aware training path", "use --qat off for this target")

    def engines(self) -> bool:
        """Whether validation builds this target's own engines (else its files run in ONNX Runtime)."""
        return True

    def notes(self, precision: str) -> list[str]:
        """What the report should say about a row of this target beyond its numbers."""
        return []

    def extra_parity(self, files: dict[str, Path], ref: Reference, tol: Tolerance) -> tuple[dict, list[str]]:
        """Parity of files beyond the two towers (e.g. a whole-model graph): (parity rows, misses)."""
        return {}, []


@dataclass
class Reference:
    """The PyTorch model's outputs on held-out real inputs, and (where they mean something: our
    models on AV-Digits) its task metrics and their per-item outcomes: what every exported row is
    compared with."""

    contract: object
    inputs: dict
    outputs: dict
    fsdd: object
    mnist: object
    cfg: object
    task_metrics: bool = True
    metrics: dict | None = None
    outcomes: dict = field(default_factory=dict)


def gate(ref: Reference, metrics: dict, outcomes: dict) -> dict:
    """Per gated metric, the drop from the reference, what the evaluation resolves (one item's
    worth, and a 95% interval of the paired difference over the same items: McNemar's
    discordant pairs) and whether the drop is distinguishable from none."""
    out = {}
    for k in GATED:
        base, got = np.asarray(ref.outcomes.get(k, []), bool), np.asarray(outcomes.get(k, []), bool)
        drop = round(ref.metrics[k] - metrics[k], 4)
        if len(base) != len(got) or not len(base):
            out[k] = {"drop": drop, "n": 0, "ci95": None, "significant": True}
            continue
        n, worse, better = len(base), int((base & ~got).sum()), int((~base & got).sum())
        half = 1.96 * np.sqrt(max(worse + better - (worse - better) ** 2 / n, 0.0)) / n
        out[k] = {"drop": drop, "n": n, "one_item": round(1 / n, 4), "ci95": round(float(half), 4), "worse": worse, "better": better,
                  "significant": bool(drop - half > 0)}  # fmt: skip
    return out


def validate(exporter: Exporter, precision: str, arts: list[dict], root: Path, ref: Reference, source: dict | None = None,
             trusted: tuple[str, ...] = ()) -> dict:  # fmt: skip
    """Run ``arts`` (files under ``root``) through their runner: per-output parity and heatmap
    agreement with PyTorch on the reference inputs, the task metrics and their drop where they
    apply (gated against what the evaluation resolves), the INT8 honesty check, and every miss.
    ``source`` (the manifest's model record) and ``trusted`` reach a plugin backend (``torch``)."""
    from edge_sdk.eval.evaluate import METRIC_KEYS, evaluate
    from edge_sdk.export.int8_report import verdict as int8_verdict
    from edge_sdk.runtime.backends import runner_for

    files = {a["tower"]: root / a["file"] for a in arts}
    choice = Choice(exporter.backend, precision, exporter.format, files)
    runner = runner_for(choice, ref.contract, engines=exporter.engines(), model=source, trusted=trusted)
    t0 = time.perf_counter()
    got = run_graph(runner, ref.inputs)
    parity, heat = compare(ref.outputs, got), heatmap_agreement(ref.outputs, got)
    result = {"parity": parity, "heatmap_agreement": heat, "drop": {}}
    if ref.task_metrics:
        outcomes: dict = {}
        metrics = evaluate(runner, ref.fsdd, ref.mnist, ref.cfg, outcomes=outcomes)
        result["metrics"] = {k: metrics[k] for k in METRIC_KEYS}
        if ref.metrics:
            result["gate"] = gate(ref, metrics, outcomes)
            result["drop"] = {k: g["drop"] for k, g in result["gate"].items()}
    tol = exporter.tolerance(precision)
    misses = verdict(parity, heat, result.get("gate"), tol)
    more, more_misses = exporter.extra_parity(files, ref, tol)
    misses += more_misses + [m for a in arts if "int8" in a for m in int8_verdict(a["int8"], a["file"])]
    return {**result, "parity": {**parity, **more}, "misses": misses, "validate_s": round(time.perf_counter() - t0, 1)}


def report_row(exporter: Exporter, precision: str, arts: list[dict], result: dict, root: Path, **extra) -> dict:
    """One row of a report: the target, its files and size, the validation result and its status."""
    row = {
        "format": exporter.format,
        "exporter": exporter.name,
        "backend": exporter.backend,
        "precision": precision,
        "batch": exporter.batch,
        "status": "ok" if not result["misses"] else "mismatch",
        "files": [a["file"] for a in arts],
        "size_mb": size_mb(root, arts),
        "tolerance": exporter.tolerance(precision).to_dict(),
        **result,
        **extra,
    }
    if notes := exporter.notes(precision):
        row["notes"] = notes
    if delegated := [{"graph": a["tower"], **a["delegated"]} for a in arts if "delegated" in a]:
        row["delegation"] = delegated
    if int8 := [{"file": a["file"], "graph": a["tower"], "accounting": a["int8"]} for a in arts if "int8" in a]:
        row["int8"] = int8
    return row


def reference_outputs(model, inputs: dict) -> dict[str, np.ndarray]:
    """The PyTorch model's three outputs on ``inputs`` (``wave``, ``image``)."""
    import torch

    with torch.inference_mode():
        raw = model(torch.from_numpy(inputs["wave"]), torch.from_numpy(inputs["image"]))
    return {k: v.numpy() for k, v in raw.items()}
