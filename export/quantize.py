"""``edge-sdk quantize``: the INT8 policy on top of the exporters, every loss of accuracy measured.

One run: read and check the calibration set -> per-layer sensitivity (Model Optimizer
fake-quant, one layer at a time) -> layers over ``threshold`` stay float on every target that
can keep single layers float -> per target, PTQ through that target's own exporter (the very
``write(job, "int8")`` that ``edge-sdk export --precision int8`` calls: one INT8 path) ->
validation through the target's runtime against PyTorch (:func:`~.base.validate`: parity and
the task metrics on speaker-disjoint scenes) -> when a target loses more than ``budget`` on a
gated metric, quantization-aware training through the exporter's QAT path, kept only if it
loses less -> FP16 graphs for GPU targets -> a bundle folder (``manifest.json``) plus
``report.json`` and ``report.md``: teacher FP32, student FP32, and every quantized row with
its size, MACs, parity and the delta to the row above.
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

from edge_sdk.bundle import MANIFEST, write_manifest
from edge_sdk.errors import ConfigError, EdgeSDKError
from edge_sdk.eval.evaluate import METRIC_KEYS, EvalConfig, evaluate, map_offset_of
from edge_sdk.export.base import GATED, Job, Reference, reference_outputs, report_row, validate
from edge_sdk.export.onnxruntime import THIN_CHANNELS
from edge_sdk.export.report import format_quantize_report
from edge_sdk.export.targets import EXPORTERS, TARGETS
from edge_sdk.export.validate import real_inputs
from edge_sdk.export.weights import write_weights

__all__ = ["quantize", "format_quantize_report"]

log = logging.getLogger(__name__)


def _check_options(targets: list[str], method: str, qat: str) -> None:
    bad = [t for t in targets if t not in TARGETS]
    if bad or not targets:
        raise ConfigError(f"unknown target(s) {bad}", f"use one or more of: {', '.join(TARGETS)}")
    if all(method not in TARGETS[t].int8.methods for t in targets):  # among other targets, one without it is skipped with a note
        raise ConfigError(
            f"the {' and '.join(targets)} target{'s' if len(targets) > 1 else ''} {'have' if len(targets) > 1 else 'has'} no {method} calibrator",
            "; ".join(f"use --method {' or '.join(TARGETS[t].int8.methods)} for {t}" for t in targets),
        )
    if qat not in ("auto", "always", "off"):
        raise ConfigError(f"--qat {qat}", "use auto (when PTQ misses the budget), always or off")


def _torch_row(name: str, metrics: dict, size: float, macs: int, role: str) -> dict:
    return {
        "model": name,
        "backend": "torch",
        "precision": "fp32",
        "size_mb": size,
        "macs": macs,
        "role": role,
        "metrics": {k: metrics[k] for k in METRIC_KEYS},
    }


def _target_row(target: str, job: Job, ref: Reference, macs: int, budget: float, qat: str) -> tuple[dict, list[dict], str]:
    """PTQ for one target (QAT when it misses the budget, or ``qat="always"``): (row, artifacts, note)."""
    exporter = TARGETS[target]
    log.info("quantize: %s PTQ (%s calibration)", target, job.method)
    arts = exporter.write(job, "int8")
    result = validate(exporter, "int8", arts, job.out, ref)
    row = report_row(exporter, "int8", arts, result, job.out, model=ref.spec.name, macs=macs, target=target, method="ptq")
    if not (qat == "always" or (qat == "auto" and max(result["drop"].values()) > budget)):
        return row, arts, ""
    log.info("quantize: %s QAT from the PTQ result", target)
    sub = job.out / f"qat_{target}"
    sub.mkdir(exist_ok=True)
    qat_arts = exporter.write_qat(job, sub)
    for a in qat_arts:
        a["file"] = f"{sub.name}/{a['file']}"
    qat_result = validate(exporter, "int8", qat_arts, job.out, ref)
    qat_row = report_row(
        exporter, "int8", qat_arts, qat_result, job.out, model=ref.spec.name, macs=macs, target=target, method="qat", ptq_drop=result["drop"]
    )
    ptq_loss, qat_loss = max(result["drop"].values()), max(qat_result["drop"].values())
    note = f"{target}: PTQ max drop {ptq_loss:.3f}, QAT {qat_loss:.3f} -> kept {'QAT' if qat_loss < ptq_loss else 'PTQ'}"
    return (qat_row, qat_arts, note) if qat_loss < ptq_loss else (row, arts, note)


def _float_rows(job: Job, ref: Reference, macs: int, precisions: tuple[str, ...]) -> tuple[list[dict], list[dict], list[str]]:
    """ONNX Runtime FP32 graphs (the INT8 rows' own baseline) or FP16 graphs for GPU targets."""
    exporter, rows, arts, notes = EXPORTERS["onnx"], [], [], []
    for precision in precisions:
        written = exporter.write(job, precision)
        try:
            result = validate(exporter, precision, written, job.out, ref)
        except (EdgeSDKError, RuntimeError) as e:  # FP16 kernels ONNX Runtime's CPU build lacks
            notes.append(f"{precision}: graphs written for GPU targets; ONNX Runtime cannot run them here ({str(e)[:160]})")
            arts += written
            continue
        rows.append(
            report_row(
                exporter,
                precision,
                written,
                result,
                job.out,
                model=ref.spec.name,
                macs=macs,
                target="gpu" if precision == "fp16" else "-",
                method=precision,
            )
        )
        arts += written
    return rows, arts, notes


def quantize(
    model_ref: str,
    targets: list[str],
    calib_dir: str | Path,
    out: str | Path,
    *,
    method: str = "percentile",
    teacher: str | None = "avnet_t.avdigits",
    fsdd=None,
    mnist=None,
    eval_cfg: EvalConfig | None = None,
    threshold: float = 0.02,
    budget: float = 0.01,
    qat: str = "auto",
    qat_steps: int = 150,
    fp16: bool = True,
) -> dict:
    """Quantize ``model_ref`` for ``targets`` into the bundle folder ``out``; returns the report."""
    from edge_sdk.models.shipped import count_macs, resolve_model
    from edge_sdk.quant.fakequant import layer_sensitivity

    _check_options(targets, method, qat)
    out = Path(out)
    if (out / MANIFEST).exists():
        raise EdgeSDKError(f"{out} already holds a bundle", "choose a new --out folder (nothing is overwritten)")
    model, meta = resolve_model(model_ref)
    spec, cfg = model.spec, eval_cfg or EvalConfig()
    job = Job(model, out, Path(calib_dir), method, qat_steps=qat_steps, fsdd=fsdd, mnist=mnist)
    job.calib  # noqa: B018 - read and checked before anything is written
    out.mkdir(parents=True, exist_ok=True)
    offset = tuple(meta.get("map_offset_px") or map_offset_of(model, fsdd, mnist, test_speakers=cfg.test_speakers))
    macs = count_macs(model)

    log.info("quantize: per-layer sensitivity on %d calibration pairs", len(job.calib))
    sensitivity = layer_sensitivity(job.deploy, job.calib, method)
    job.exclude = tuple(r["layer"] for r in sensitivity if r["error"] > threshold)
    notes: list[str] = []
    inputs = real_inputs(spec, fsdd, mnist, 64, test_speakers=cfg.test_speakers)
    ref = Reference(spec, offset, inputs, reference_outputs(model, inputs), fsdd, mnist, cfg)
    rows = _reference_rows(model_ref, teacher, model, ref, macs)
    artifacts = [write_weights(model, out)]  # the reference, as in every bundle (eval --backend torch)
    for part in (
        _float_rows(job, ref, macs, ("fp32",) if "onnxruntime" in targets else ()),
        _int8_rows(targets, job, ref, macs, budget, qat),
        _float_rows(job, ref, macs, ("fp16",) if fp16 else ()),
    ):
        rows += part[0]
        artifacts += part[1]
        notes += part[2]
    for prev, row in itertools.pairwise(rows):
        row["delta"] = {k: round(row["metrics"][k] - prev["metrics"][k], 4) for k in METRIC_KEYS}
    report = {
        "model": model_ref,
        "spec": spec.name,
        "targets": targets,
        "calibration": job.calibration(),
        "eval": {"scenes": cfg.scenes, "k": cfg.k, "seed": cfg.seed, "test_speakers": list(cfg.test_speakers)},
        "budget": {"metrics": list(GATED), "max_drop": budget},
        "sensitivity_threshold": threshold,
        "float_layers": _float_layers(sensitivity, job.exclude, threshold),
        "sensitivity": sensitivity,
        "recipes": {t: TARGETS[t].int8.to_dict() for t in targets},
        "rows": rows,
        "notes": notes,
        "fallbacks": _fallbacks(artifacts),
    }
    _write(out, report, artifacts, spec, offset)
    return report


def _reference_rows(model_ref: str, teacher: str | None, model, ref: Reference, macs: int) -> list[dict]:
    """The teacher's and the student's PyTorch FP32 rows; the student's metrics become the reference's."""
    from edge_sdk.models.shipped import count_macs, model_path, resolve_model
    from edge_sdk.models.torch_runner import TorchTowers

    rows = []
    if teacher:
        t_model, t_meta = resolve_model(teacher)
        log.info("quantize: evaluating the teacher %s (FP32, PyTorch)", teacher)
        t_metrics = evaluate(TorchTowers(t_model, t_meta.get("map_offset_px") or (0, 0)), t_model.spec, ref.fsdd, ref.mnist, ref.cfg)
        rows.append(_torch_row(t_model.spec.name, t_metrics, _file_mb(model_path(teacher)), count_macs(t_model), "teacher"))
    log.info("quantize: evaluating the student %s (FP32, PyTorch)", model_ref)
    ref.metrics = evaluate(TorchTowers(model, ref.offset), ref.spec, ref.fsdd, ref.mnist, ref.cfg)
    rows.append(_torch_row(ref.spec.name, ref.metrics, _file_mb(model_path(model_ref)), macs, "student"))
    return rows


def _int8_rows(targets: list[str], job: Job, ref: Reference, macs: int, budget: float, qat: str) -> tuple[list[dict], list[dict], list[str]]:
    """Every target's INT8 row (PTQ, or QAT where it did better), its files and notes; a target that
    cannot do what was asked is skipped, saying why."""
    rows, artifacts, notes = [], [], []
    for target in targets:
        methods = TARGETS[target].int8.methods
        if job.method not in methods:
            notes.append(f"{target}: skipped, it has no {job.method} calibrator (it has {', '.join(methods)})")
            continue
        try:
            row, arts, note = _target_row(target, job, ref, macs, budget, qat)
        except ConfigError as e:  # a target that cannot honour the float layers is skipped, and says why
            notes.append(f"{target}: skipped, {e.problem} ({e.fix})")
            continue
        rows.append(row)
        artifacts += arts
        notes += [note] if note else []
    return rows, artifacts, notes


def _float_layers(sensitivity: list[dict], exclude: tuple[str, ...], threshold: float) -> list[dict]:
    why = "quantized alone it moves the tower's output by {:.4f} (1 - cosine) > {}"
    return [{"layer": r["layer"], "error": r["error"], "why": why.format(r["error"], threshold)} for r in sensitivity if r["layer"] in exclude]


def _write(out: Path, report: dict, artifacts: list[dict], spec, offset) -> None:
    """The bundle's manifest and the reports; files no artifact lists (intermediate graphs, the
    quantizers' node -> module maps) go."""
    from edge_sdk.checkpoint import atomic_write_text

    listed = {a["file"] for a in artifacts}
    for f in out.iterdir():
        if f.is_file() and f.name not in listed and not f.name.startswith("report."):
            f.unlink()
    rows = [r for r in report["rows"] if r.get("role") != "teacher"]
    write_manifest(
        out,
        spec,
        artifacts,
        name=f"{report['spec']}-quantized",
        map_offset_px=list(offset),
        calibration=report["calibration"],
        metrics={f"{r['backend']}/{r['precision']}": r["metrics"] for r in rows},
    )
    atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    atomic_write_text(out / "report.md", format_quantize_report(report))


def _file_mb(path: Path) -> float:
    return round(path.stat().st_size / 1e6, 3)


def _fallbacks(artifacts: list[dict]) -> list[str]:
    """What each file left in float, said plainly for the report."""
    out = []
    for a in artifacts:
        if a.get("float_nodes") is not None:
            out.append(
                f"{a['file']}: {len(a['float_nodes'])} nodes kept float by design (front end, normalisations, pooling, "
                f"and on ONNX Runtime the stems reading at most {THIN_CHANNELS} channels, faster in FP32) or by sensitivity; "
                "every other conv and projection of the tower runs INT8 unless listed above"
            )
        if a.get("delegated"):
            d = a["delegated"]
            out.append(
                f"{a['file']}: XNNPACK runs {d['delegated_nodes']} nodes in {d['subgraphs']} subgraphs; "
                f"{d['portable_nodes']} nodes (front end, normalisations) run on ExecuTorch's portable float kernels"
            )
    return out
