"""``edge-sdk quantize``: the INT8 policy on top of the exporters, every loss of accuracy measured.

One run: read and check the calibration set -> per-layer sensitivity (Model Optimizer
fake-quant, one layer at a time) -> layers over ``threshold`` stay float on every target that
can keep single layers float -> per target, PTQ through that target's own exporter (the very
``write(job, "int8")`` that ``edge-sdk export --precision int8`` calls: one INT8 path) ->
validation through the target's runtime against PyTorch (:func:`~.base.validate`: parity, the
INT8 honesty check, and the task metrics on speaker-disjoint scenes where they mean something)
-> when a target loses more than ``budget`` on a gated metric (beyond what the evaluation
resolves; for a model without task metrics: when it misses the INT8 parity tolerance),
quantization-aware training through the exporter's QAT path, kept only if it does better ->
FP16 graphs for GPU targets -> a bundle folder (``manifest.json``) plus ``report.json`` and
``report.md``: teacher FP32, model FP32, and every quantized row with its size, MACs, parity
and the delta to the row above.
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

from edge_sdk.bundle import MANIFEST, write_manifest
from edge_sdk.errors import ConfigError, EdgeSDKError
from edge_sdk.eval.evaluate import METRIC_KEYS, EvalConfig, evaluate
from edge_sdk.export.base import GATED, Job, Reference, report_row, validate
from edge_sdk.export.engine import make_reference
from edge_sdk.export.onnxruntime import THIN_DEPTH
from edge_sdk.export.report import format_quantize_report
from edge_sdk.export.targets import EXPORTERS, TARGETS
from edge_sdk.export.weights import write_weights
from edge_sdk.outputs import LOCK_NAME, atomic_write_text, lock_folder, output_folder

__all__ = ["quantize", "format_quantize_report"]

log = logging.getLogger(__name__)


def _check_options(targets: list[str], method: str, qat: str) -> None:
    bad = [t for t in targets if t not in TARGETS]
    if bad or not targets:
        raise ConfigError(f"unknown target(s) {bad}", f"use one or more of: {', '.join(TARGETS)}")
    if all(method not in TARGETS[t].int8.methods for t in targets):  # among other targets, one without it is skipped with a note
        which = f"the {' and '.join(targets)} target{'s have' if len(targets) > 1 else ' has'}"
        fix = "; ".join(f"use --method {' or '.join(TARGETS[t].int8.methods)} for {t}" for t in targets)
        raise ConfigError(f"{which} no {method} calibrator", fix)
    if qat not in ("auto", "always", "off"):
        raise ConfigError(f"--qat {qat}", "use auto (when PTQ misses the budget), always or off")


def _torch_row(name: str, metrics: dict | None, size: float, macs: int, role: str) -> dict:
    row = {"model": name, "backend": "torch", "precision": "fp32", "size_mb": size, "macs": macs, "role": role}
    return {**row, "metrics": {k: metrics[k] for k in METRIC_KEYS}} if metrics else row


def _loss(result: dict) -> float:
    """How much a row lost: its largest gated metric drop; without task metrics, how far its worst
    mean cosine fell below the INT8 tolerance (0 when within it)."""
    if result["drop"]:
        return max(result["drop"].values())
    worst = min(p["cosine_mean"] for p in result["parity"].values())
    return max(0.0, 0.98 - worst)


def _target_row(target: str, job: Job, ref: Reference, ctx: dict) -> tuple[dict, list[dict], str]:
    """PTQ for one target (QAT when it misses the budget, or ``qat="always"``): (row, artifacts, note)."""
    exporter, extra = TARGETS[target], {"model": ref.contract.name, "macs": ctx["macs"], "target": target}
    log.info("quantize: %s PTQ (%s calibration)", target, job.method)
    arts = exporter.write(job, "int8")
    result = validate(exporter, "int8", arts, job.out, ref, ctx["source"], ctx["trusted"])
    row = report_row(exporter, "int8", arts, result, job.out, method="ptq", **extra)
    missed = _loss(result) > ctx["budget"] if result["drop"] else bool(result["misses"])
    if not (ctx["qat"] == "always" or (ctx["qat"] == "auto" and missed)):
        return row, arts, ""
    log.info("quantize: %s QAT from the PTQ result", target)
    sub = job.out / f"qat_{target}"
    sub.mkdir(exist_ok=True)
    qat_arts = exporter.write_qat(job, sub)
    for a in qat_arts:
        a["file"] = f"{sub.name}/{a['file']}"
    qat_result = validate(exporter, "int8", qat_arts, job.out, ref, ctx["source"], ctx["trusted"])
    qat_row = report_row(exporter, "int8", qat_arts, qat_result, job.out, method="qat", ptq_drop=result["drop"], **extra)
    ptq_loss, qat_loss = _loss(result), _loss(qat_result)
    note = f"{target}: PTQ loss {ptq_loss:.3f}, QAT {qat_loss:.3f} -> kept {'QAT' if qat_loss < ptq_loss else 'PTQ'}"
    return (qat_row, qat_arts, note) if qat_loss < ptq_loss else (row, arts, note)


def _float_rows(job: Job, ref: Reference, ctx: dict, precisions: tuple[str, ...]) -> tuple[list[dict], list[dict], list[str]]:
    """ONNX Runtime FP32 graphs (the INT8 rows' own baseline) or FP16 graphs for GPU targets."""
    exporter, rows, arts, notes = EXPORTERS["onnx"], [], [], []
    for precision in precisions:
        written = exporter.write(job, precision)
        arts += written
        try:
            result = validate(exporter, precision, written, job.out, ref, ctx["source"], ctx["trusted"])
        except (EdgeSDKError, RuntimeError) as e:  # FP16 kernels ONNX Runtime's CPU build lacks
            notes.append(f"{precision}: graphs written for GPU targets; ONNX Runtime cannot run them here ({str(e)[:160]})")
            continue
        target = "gpu" if precision == "fp16" else "-"
        rows.append(
            report_row(exporter, precision, written, result, job.out, model=ref.contract.name, macs=ctx["macs"], target=target, method=precision)
        )
    return rows, arts, notes


def _int8_rows(targets: list[str], job: Job, ref: Reference, ctx: dict) -> tuple[list[dict], list[dict], list[str]]:
    """Every target's INT8 row (PTQ, or QAT where it did better), its files and notes; a target that
    cannot do what was asked is skipped, saying why."""
    rows, artifacts, notes = [], [], []
    for target in targets:
        methods = TARGETS[target].int8.methods
        if job.method not in methods:
            notes.append(f"{target}: skipped, it has no {job.method} calibrator (it has {', '.join(methods)})")
            continue
        try:
            row, arts, note = _target_row(target, job, ref, ctx)
        except ConfigError as e:  # a target that cannot honour the float layers is skipped, and says why
            notes.append(f"{target}: skipped, {e.problem} ({e.fix})")
            continue
        rows.append(row)
        artifacts += arts
        notes += [note] if note else []
    return rows, artifacts, notes


def _reference_rows(opened, teacher: str | None, ref: Reference, macs: int, weights=None) -> list[dict]:
    """The teacher's and the model's PyTorch FP32 rows (the teacher only where task metrics apply);
    the model's size is its checkpoint's, or the user's weights file's."""
    from edge_sdk.models.shipped import count_macs, model_path, resolve_model
    from edge_sdk.models.torch_runner import TorchTowers

    rows = []
    if teacher and ref.task_metrics:
        t_model, _ = resolve_model(teacher)
        log.info("quantize: evaluating the teacher %s (FP32, PyTorch)", teacher)
        t_metrics = evaluate(TorchTowers(t_model), ref.fsdd, ref.mnist, ref.cfg)
        rows.append(_torch_row(t_model.contract.name, t_metrics, _file_mb(model_path(teacher)), count_macs(t_model), "teacher"))
    size = _file_mb(model_path(opened.ref)) if opened.ours else _file_mb(Path(weights)) if isinstance(weights, (str, Path)) else 0.0
    rows.append(_torch_row(ref.contract.name, ref.metrics, size, macs, "model"))
    return rows


def _float_layers(sensitivity: list[dict], exclude: tuple[str, ...], threshold: float) -> list[dict]:
    why = "quantized alone it moves the tower's output by {:.4f} (1 - cosine) > {}"
    return [{"layer": r["layer"], "error": r["error"], "why": why.format(r["error"], threshold)} for r in sensitivity if r["layer"] in exclude]


def quantize(
    model_ref: str | None,
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
    factory: str | None = None,
    weights=None,
    contract=None,
    videos=None,
) -> dict:
    """Quantize ``model_ref`` (ours) or the user's model (``factory`` with ``weights`` and ``contract``)
    for ``targets`` into the bundle folder ``out``; parity on ``videos`` where given; returns the report."""
    from edge_sdk.models.loading import open_model
    from edge_sdk.models.shipped import count_macs
    from edge_sdk.quant.fakequant import layer_sensitivity

    _check_options(targets, method, qat)
    out = Path(out)
    if (out / MANIFEST).exists():
        raise EdgeSDKError(f"{out} already holds a bundle", "choose a new --out folder (nothing is overwritten)")
    opened = open_model(model_ref, factory=factory, weights=weights, contract=contract)
    cfg = eval_cfg or EvalConfig()
    job = Job(opened.model, out, Path(calib_dir), method, qat_steps=qat_steps, fsdd=fsdd, mnist=mnist)
    job.calib  # noqa: B018 - read and checked before anything is written
    with lock_folder(output_folder(out, "--out")):  # a second quantize into --out is refused, naming this one's pid
        macs = count_macs(opened.model)
        ref = make_reference(opened, fsdd, mnist, cfg, 64, videos)
        log.info("quantize: per-layer sensitivity on %d calibration pairs", len(job.calib))
        sensitivity = layer_sensitivity(job.deploy, job.calib, method)
        job.exclude = tuple(r["layer"] for r in sensitivity if r["error"] > threshold)
        ctx = {"macs": macs, "budget": budget, "qat": qat, "source": opened.source, "trusted": (factory,) if factory else ()}
        rows, notes = _reference_rows(opened, teacher, ref, macs, weights), []
        artifacts = [write_weights(opened.model, out)]  # the reference, as in every bundle (eval --backend torch)
        for part in (_float_rows(job, ref, ctx, ("fp32",) if "onnxruntime" in targets else ()), _int8_rows(targets, job, ref, ctx),
                     _float_rows(job, ref, ctx, ("fp16",) if fp16 else ())):  # fmt: skip
            rows += part[0]
            artifacts += part[1]
            notes += part[2]
        for prev, row in itertools.pairwise(rows):
            if "metrics" in row and "metrics" in prev:
                row["delta"] = {k: round(row["metrics"][k] - prev["metrics"][k], 4) for k in METRIC_KEYS}
        report = {
            "model": opened.ref,
            "contract": ref.contract.name,
            "targets": targets,
            "calibration": job.calibration(),
            "eval": {"scenes": cfg.scenes, "k": cfg.k, "seed": cfg.seed, "test_speakers": list(cfg.test_speakers)} if ref.task_metrics else None,
            "inputs": {"scenes": len(ref.inputs["wave"]), "data": ref.inputs["source"]},
            "budget": {"metrics": list(GATED), "max_drop": budget},
            "sensitivity_threshold": threshold,
            "float_layers": _float_layers(sensitivity, job.exclude, threshold),
            "sensitivity": sensitivity,
            "recipes": {t: TARGETS[t].int8.to_dict() for t in targets},
            "rows": rows,
            "notes": notes,
            "fallbacks": _fallbacks(artifacts),
        }
        _write(out, report, artifacts, ref, opened.source)
        return report


def _write(out: Path, report: dict, artifacts: list[dict], ref: Reference, source: dict) -> None:
    """The bundle's manifest and the reports; files no artifact lists (intermediate graphs, the
    quantizers' node -> module maps) go."""
    listed = {a["file"] for a in artifacts}
    for f in out.iterdir():
        if f.is_file() and f.name not in listed and not f.name.startswith("report.") and f.name != LOCK_NAME:
            f.unlink()
    rows = [r for r in report["rows"] if r.get("role") != "teacher" and "metrics" in r]
    parity = {f"{r['backend']}/{r['precision']}": {"status": r["status"], "misses": r.get("misses", [])} for r in report["rows"] if "parity" in r}
    write_manifest(out, ref.contract, source, artifacts, name=f"{ref.contract.name}-quantized", calibration=report["calibration"],
                   metrics={f"{r['backend']}/{r['precision']}": r["metrics"] for r in rows}, parity=parity, inputs=report["inputs"])  # fmt: skip
    atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    atomic_write_text(out / "report.md", format_quantize_report(report))


def _file_mb(path: Path) -> float:
    return round(path.stat().st_size / 1e6, 3)


def _fallbacks(artifacts: list[dict]) -> list[str]:
    """What each file left in float, said plainly for the report."""
    out = []
    for a in artifacts:
        if a.get("float_nodes") is not None:
            out.append(f"{a['file']}: {len(a['float_nodes'])} nodes kept float: the SDK's log-mel front end, the stems reading at "
                       f"most 4 channels and {THIN_DEPTH} inputs per output (faster in FP32 here) and the layers the sensitivity analysis "
                       "named; normalisation arithmetic (Mul, Div, Sqrt, Reduce*, Softmax, LayerNormalization) stays float by op type")  # fmt: skip
        if a.get("delegated"):
            d = a["delegated"]
            portable = ", ".join(f"{op} x{n}" for op, n in (d.get("portable_ops") or {}).items())
            out.append(f"{a['file']}: XNNPACK runs {d['delegated_nodes']} nodes in {d['subgraphs']} subgraphs; {d['portable_nodes']} "
                       f"on ExecuTorch's portable kernels{f' ({portable})' if portable else ''}")  # fmt: skip
    return out
