"""``edge-sdk quantize``: a student to INT8 for each target, every loss of accuracy measured.

One run: read and check the calibration set -> per-layer sensitivity (Model Optimizer
fake-quant, one layer at a time) -> layers over ``threshold`` stay float on every target
-> per target, PTQ through the target's own toolchain (:mod:`.int8`) -> evaluate the
quantized files through their runtime on the speaker-disjoint scenes -> when a target
loses more than ``budget`` on a gated metric, quantization-aware training from the PTQ
result (:mod:`edge_sdk.quant.qat`), re-exported and re-measured -> FP16 graphs for GPU
targets -> a bundle folder (``manifest.json``) plus ``report.json`` and ``report.md``:
teacher FP32, student FP32, and every quantized row with its size, MACs and the delta to
the row above.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from edge_sdk.bundle import MANIFEST, write_manifest
from edge_sdk.errors import ConfigError, EdgeSDKError
from edge_sdk.eval.evaluate import METRIC_KEYS, EvalConfig, TorchEmbedder, evaluate, map_offset_of
from edge_sdk.export.formats import torch_weights
from edge_sdk.export.int8 import TARGETS, THIN_CHANNELS

__all__ = ["quantize", "GATED", "format_report"]

log = logging.getLogger(__name__)

GATED = ("pointing_acc", "a2i_r1", "probe_audio_acc")  # the metrics the INT8 budget is checked on


def _size_mb(out: Path, arts: list[dict]) -> float:
    return round(sum((out / a["file"]).stat().st_size for a in arts) / 1e6, 3)


def _row(name: str, backend: str, precision: str, metrics: dict, size_mb: float, macs: int, **extra) -> dict:
    return {"model": name, "backend": backend, "precision": precision, "size_mb": size_mb, "macs": macs,
            **{k: metrics[k] for k in METRIC_KEYS}, **extra}


def _open(out: Path, arts: list[dict], spec, offset):
    from edge_sdk.runtime.backends import ExecuTorchTowers, OrtTowers

    towers = {a["tower"]: out / a["file"] for a in arts}
    if arts[0]["format"] == "executorch":
        return ExecuTorchTowers(towers["audio"], towers["image"], spec, offset)
    return OrtTowers(towers["audio"], towers["image"], spec, offset)


def quantize(model_ref: str, targets: list[str], calib_dir: str | Path, out: str | Path, *, method: str = "percentile",
             teacher: str | None = "avnet_t.avdigits", fsdd=None, mnist=None, eval_cfg: EvalConfig | None = None,
             threshold: float = 0.02, budget: float = 0.01, qat: str = "auto", qat_steps: int = 150, fp16: bool = True) -> dict:
    """Quantize ``model_ref`` for ``targets`` into the bundle folder ``out``; returns the report."""
    from edge_sdk.checkpoint import atomic_write_text
    from edge_sdk.models.shipped import count_macs, model_path, resolve_model
    from edge_sdk.quant.calib import load_calib_set
    from edge_sdk.quant.fakequant import layer_sensitivity

    bad = [t for t in targets if t not in TARGETS]
    if bad or not targets:
        raise ConfigError(f"unknown target(s) {bad}", f"use one or more of: {', '.join(TARGETS)}")
    if method == "entropy" and targets == ["xnnpack"]:  # among other targets, xnnpack is skipped with a note
        raise ConfigError("the xnnpack target (PT2E) has no entropy calibrator", "use --method percentile or minmax for xnnpack")
    if qat not in ("auto", "always", "off"):
        raise ConfigError(f"--qat {qat}", "use auto (when PTQ misses the budget), always or off")
    out = Path(out)
    if (out / MANIFEST).exists():
        raise EdgeSDKError(f"{out} already holds a bundle", "choose a new --out folder (nothing is overwritten)")
    model, meta = resolve_model(model_ref)
    spec = model.spec
    calib = load_calib_set(calib_dir, spec)
    out.mkdir(parents=True, exist_ok=True)
    cfg = eval_cfg or EvalConfig()
    offset = tuple(meta.get("map_offset_px") or map_offset_of(model, fsdd, mnist, test_speakers=cfg.test_speakers))
    macs = count_macs(model)

    log.info("quantize: per-layer sensitivity on %d calibration pairs", len(calib))
    sensitivity = layer_sensitivity(model, calib, method)
    exclude = tuple(r["layer"] for r in sensitivity if r["error"] > threshold)
    rows = []
    if teacher:
        t_model, t_meta = resolve_model(teacher)
        log.info("quantize: evaluating the teacher %s (FP32, PyTorch)", teacher)
        t_metrics = evaluate(TorchEmbedder(t_model, map_offset=t_meta.get("map_offset_px") or (0, 0)), t_model.spec, fsdd, mnist, cfg)
        rows.append(_row(t_model.spec.name, "torch", "fp32", t_metrics, _file_mb(model_path(teacher)), count_macs(t_model), role="teacher"))
    log.info("quantize: evaluating the student %s (FP32, PyTorch)", model_ref)
    base = evaluate(TorchEmbedder(model, map_offset=offset), spec, fsdd, mnist, cfg)
    rows.append(_row(spec.name, "torch", "fp32", base, _file_mb(model_path(model_ref)), macs, role="student"))

    artifacts, notes = [torch_weights(model, out)], []  # the reference, as in every bundle (eval --backend torch)
    for target in targets:
        log.info("quantize: %s PTQ (%s calibration)", target, method)
        try:
            arts = TARGETS[target](model, calib, method, exclude, out)
        except ConfigError as e:  # a target that cannot honour the float layers is skipped, and says why
            notes.append(f"{target}: skipped, {e.problem} ({e.fix})")
            continue
        artifacts += arts
        int8 = [a for a in arts if a["precision"] == "int8"]
        metrics = evaluate(_open(out, int8, spec, offset), spec, fsdd, mnist, cfg)
        drop = {k: round(base[k] - metrics[k], 4) for k in GATED}
        row = _row(spec.name, int8[0]["backend"], "int8", metrics, _size_mb(out, int8), macs, target=target, method="ptq", drop=drop)
        if qat == "always" or (qat == "auto" and max(drop.values()) > budget):
            row, qat_arts, note = _qat(model, calib, target, method, exclude, out, spec, offset, fsdd, mnist, cfg, base, macs, row, qat_steps)
            artifacts += qat_arts
            notes.append(note)
        rows.append(row)
    if fp16:
        from edge_sdk.export.fp16 import fp16_towers

        rows_fp16, arts16, note = fp16_towers(model, out, spec, offset, fsdd, mnist, cfg, macs)
        rows += rows_fp16
        artifacts += arts16
        notes.append(note)

    for prev, row in zip(rows, rows[1:]):
        row["delta"] = {k: round(row[k] - prev[k], 4) for k in METRIC_KEYS}
    report = {"model": model_ref, "spec": spec.name, "targets": targets, "calibration": {**calib.describe(), "method": method},
              "eval": {"scenes": cfg.scenes, "k": cfg.k, "seed": cfg.seed, "test_speakers": list(cfg.test_speakers)},
              "budget": {"metrics": list(GATED), "max_drop": budget}, "sensitivity_threshold": threshold,
              "float_layers": [{"layer": r["layer"], "error": r["error"], "why": f"quantized alone it moves the tower's output by {r['error']:.4f} (1 - cosine) > {threshold}"}
                               for r in sensitivity if r["layer"] in exclude],
              "sensitivity": sensitivity, "rows": rows, "notes": [n for n in notes if n],
              "fallbacks": _fallbacks(artifacts)}
    for side in out.glob("*.scopes.json"):  # node -> module maps the quantizers read; not part of the bundle
        side.unlink()
    write_manifest(out, spec, artifacts, name=f"{spec.name}-quantized", map_offset_px=list(offset),
                   calibration=report["calibration"], metrics={f"{r['backend']}/{r['precision']}": {k: r[k] for k in METRIC_KEYS} for r in rows if r.get("role") != "teacher"})
    atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    atomic_write_text(out / "report.md", format_report(report))
    return report


def _file_mb(path: Path) -> float:
    return round(path.stat().st_size / 1e6, 3)


def _qat(model, calib, target, method, exclude, out, spec, offset, fsdd, mnist, cfg, base, macs, ptq_row, steps):
    """QAT from the PTQ result; keeps whichever of PTQ and QAT loses less."""
    from edge_sdk.quant.qat import qat_finetune

    from edge_sdk.export.int8 import quantize_tensorrt, quantize_xnnpack

    log.info("quantize: %s QAT from the PTQ result", target)
    sub = out / f"qat_{target}"
    sub.mkdir(exist_ok=True)
    if target == "xnnpack":  # PT2E QAT, lowered to .pte programs
        arts, backend = quantize_xnnpack(model, calib, method, exclude, sub, qat_steps=steps, fsdd=fsdd, mnist=mnist), "executorch"
    else:  # Model Optimizer QAT, exported as Q/DQ ONNX
        qmodel, _ = qat_finetune(model, calib, method, exclude, fsdd, mnist, steps=steps)
        arts = quantize_tensorrt(model, calib, method, exclude, sub, qmodel=qmodel)
        backend = "tensorrt" if target == "tensorrt" else "onnxruntime"
    for a in arts:
        a["file"], a["backend"], a["method"] = f"{sub.name}/{a['file']}", backend, "qat"
    metrics = evaluate(_open(out, arts, spec, offset), spec, fsdd, mnist, cfg)
    drop = {k: round(base[k] - metrics[k], 4) for k in GATED}
    row = _row(spec.name, backend, "int8", metrics, _size_mb(out, arts), macs, target=target, method="qat", drop=drop, ptq_drop=ptq_row["drop"])
    better = max(drop.values()) < max(ptq_row["drop"].values())
    note = f"{target}: PTQ max drop {max(ptq_row['drop'].values()):.3f}, QAT {max(drop.values()):.3f} -> kept {'QAT' if better else 'PTQ'}"
    return (row if better else ptq_row), (arts if better else []), note


def _fallbacks(artifacts: list[dict]) -> list[str]:
    """What each target left in float, said plainly for the report."""
    out = []
    for a in artifacts:
        if a.get("float_nodes") is not None:
            out.append(f"{a['file']}: {len(a['float_nodes'])} nodes kept float by design (front end, normalisations, pooling, "
                       f"and on ONNX Runtime the stems reading at most {THIN_CHANNELS} channels, faster in FP32) or by sensitivity; "
                       "every other conv and projection of the tower runs INT8 unless listed above")
        if a.get("delegated"):
            d = a["delegated"]
            out.append(f"{a['file']}: XNNPACK runs {d['delegated_nodes']} nodes in {d['subgraphs']} subgraphs; "
                       f"{d['portable_nodes']} nodes (front end, normalisations) run on ExecuTorch's portable float kernels")
    return out


def format_report(report: dict) -> str:
    keys = ("pointing_acc", "a2i_r1", "probe_audio_acc", "i2a_r1", "avc_acc", "probe_image_acc", "ciou50", "sync_acc")
    lines = [f"# Quantization report: {report['model']}", "",
             f"Calibration: {report['calibration']['pairs']} pairs, {report['calibration']['method']}, sha256 {report['calibration']['sha256'][:16]}…; "
             f"eval: {report['eval']['scenes']} scenes, K={report['eval']['k']}, held-out speakers {', '.join(report['eval']['test_speakers'])}.", "",
             "| model | backend | precision | method | size MB | MMACs | " + " | ".join(keys) + " |",
             "|---|---|---|---|---:|---:|" + "---:|" * len(keys)]
    for r in report["rows"]:
        d = r.get("delta", {})
        cells = [f"{r[k]:.3f}" + (f" ({d[k]:+.3f})" if k in d else "") for k in keys]
        lines.append(f"| {r['model']} | {r['backend']} | {r['precision']} | {r.get('method', '-')} | {r['size_mb']:.2f} | {r['macs'] / 1e6:.1f} | " + " | ".join(cells) + " |")
    lines += ["", "Delta in brackets: to the row above.", "", "## Layers kept in float", ""]
    lines += [f"- `{f['layer']}`: {f['why']}" for f in report["float_layers"]] or ["- none: every layer is under the sensitivity threshold"]
    if report.get("fallbacks"):
        lines += ["", "## What stays float, per target", "", *[f"- {n}" for n in report["fallbacks"]]]
    if report["notes"]:
        lines += ["", "## Notes", "", *[f"- {n}" for n in report["notes"]]]
    return "\n".join(lines) + "\n"
