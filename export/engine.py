"""``edge-sdk export``: the one generic engine behind every exporter.

For each requested target and precision: the exporter writes its files (:mod:`.base`'s
protocol) -> they run through their real runtime on held-out AV-Digits scenes -> every
output is compared with PyTorch (max abs diff, cosine) and the heatmaps with PyTorch's ->
the task metrics are measured through the same runtime -> the exporter's tolerance decides.
A miss fails the export (:class:`ExportMismatch`, non-zero exit) unless ``allow_mismatch``;
the report (``report.json``, ``report.md``) is written either way and says which output
missed and by how much, and the manifest only when the bundle passed (or the mismatch was
allowed, which the manifest then records).

The bundle always holds the PyTorch weights (``model.safetensors``): they are the reference,
``--backend torch`` of ``edge-sdk eval`` and the eager rows of ``edge-sdk bench``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from edge_sdk.bundle import MANIFEST, pack_zip, write_manifest
from edge_sdk.errors import ConfigError, EdgeSDKError
from edge_sdk.eval.evaluate import METRIC_KEYS, EvalConfig, evaluate, map_offset_of
from edge_sdk.export.base import Job, Reference, reference_outputs, report_row, validate
from edge_sdk.export.graphs import TOWERS
from edge_sdk.export.report import format_export_report
from edge_sdk.export.targets import EXPORTERS
from edge_sdk.export.validate import real_inputs

__all__ = ["export_bundle", "check_contract", "ExportMismatch", "PRECISIONS", "parse_choices"]

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")


class ExportMismatch(EdgeSDKError):
    """An exported model missed its tolerance on real inputs."""


def parse_choices(value, allowed, what: str) -> list[str]:
    """``value`` ("all", a name, a comma list, or a list of them) as names from ``allowed``."""
    items = list(allowed) if value in ("all", None) else ([value] if isinstance(value, str) else list(value))
    items = [i for part in items for i in part.split(",")]
    bad = [i for i in items if i not in allowed]
    if bad or not items:
        raise ConfigError(f"unknown {what} {bad}", f"use one or more of: {', '.join(allowed)}, or all")
    return items


def _shapes(graph: str, spec, ref: dict, batch: str) -> dict[str, list]:
    ins = spec.input_shapes
    b = "batch" if batch == "dynamic" else int(batch)
    return {**{n: [b, *ins[n]] for n in TOWERS[graph]["inputs"]}, **{n: [b, *ref[n].shape[1:]] for n in TOWERS[graph]["outputs"]}}


def check_contract(model) -> None:
    """A module brought by the user must look like AVNet to the exporters: ``spec`` (a
    ModelSpec), ``audio(wave) -> [B, D]``, ``image(rgb) -> ([B, D], [B, D, h, w])`` and
    ``model(wave, image) -> {"audio_emb", "image_emb", "image_map"}``."""
    import torch

    from edge_sdk.export.graphs import example_inputs
    from edge_sdk.spec import ModelSpec

    spec = getattr(model, "spec", None)
    if not isinstance(spec, ModelSpec):
        raise ConfigError(f"{type(model).__name__} has no .spec (a ModelSpec)", "set model.spec = get_spec(...) or register your own ModelSpec")
    missing = [n for n in ("audio", "image") if not isinstance(getattr(model, n, None), torch.nn.Module)]
    if missing:
        raise ConfigError(f"{type(model).__name__} has no {' or '.join(missing)} tower module", "expose the towers as model.audio and model.image")
    with torch.inference_mode():
        out = model.eval()(*example_inputs(spec, "av", 2))
    keys = ("audio_emb", "image_emb", "image_map")
    if not isinstance(out, dict) or set(out) != set(keys):
        raise ConfigError(
            f"{type(model).__name__}(wave, image) returned {type(out).__name__}, not a dict of {', '.join(keys)}",
            "return {'audio_emb': [B, D], 'image_emb': [B, D], 'image_map': [B, D, h, w]}",
        )
    d = spec.embed_dim
    if out["audio_emb"].shape != (2, d) or out["image_emb"].shape != (2, d) or out["image_map"].dim() != 4 or out["image_map"].shape[1] != d:
        raise ConfigError(
            f"{type(model).__name__} outputs {', '.join(f'{k} {tuple(out[k].shape)}' for k in keys)}",
            f"audio_emb and image_emb must be [B, {d}] and image_map [B, {d}, h, w] (spec.embed_dim = {d})",
        )


def _load(model_ref):
    """(model, sidecar metadata, whether it is the user's own module) of a checkpoint, a shipped name or a module."""
    from edge_sdk.models.avnet import AVNet
    from edge_sdk.models.shipped import resolve_model

    if isinstance(model_ref, (str, Path)):
        model, meta = resolve_model(str(model_ref))
    else:  # bring your own module
        check_contract(model_ref)
        model, meta = model_ref.eval(), {}
    return model, meta, not isinstance(model, AVNet)


def _row(fmt: str, precision: str, job: Job, ref: Reference) -> tuple[dict, list[dict]]:
    """Write and validate one target at one precision: (report row, artifacts kept)."""
    exporter = EXPORTERS[fmt]
    head = {"format": exporter.format, "exporter": fmt, "backend": exporter.backend, "precision": precision, "batch": exporter.batch}
    if precision not in exporter.precisions:
        return {**head, "status": f"skipped: {fmt} has no {precision} path (it has {', '.join(exporter.precisions)})"}, []
    if reason := exporter.missing():
        return {**head, "status": f"skipped: {reason}"}, []
    log.info("export: %s %s", fmt, precision)
    try:
        arts = exporter.write(job, precision)
        result = validate(exporter, precision, arts, job.out, ref)
    except EdgeSDKError as e:
        return {**head, "status": "failed", "misses": [f"{e.problem} ({e.fix})" if e.fix else e.problem]}, []
    except RuntimeError as e:  # the exported program does not run in its own runtime: a failed row, not a traceback
        log.exception("export: %s %s does not run", fmt, precision)
        return {**head, "status": "failed", "misses": [f"the exported program fails in its runtime: {str(e).splitlines()[0][:200]}"]}, []
    if ref.metrics is None:
        ref.metrics = result["metrics"]
    for a in arts:
        a.update(shapes=_shapes(a["tower"], ref.spec, ref.outputs, exporter.batch), parity="passed" if not result["misses"] else "failed")
    row = report_row(exporter, precision, arts, result, job.out)
    worst = min(p["cosine_mean"] for p in result["parity"].values())
    log.info(
        "export: %s %s %s (worst mean cosine %.5f, pointing %.3f, %.1f s to validate)",
        fmt,
        precision,
        row["status"],
        worst,
        result["metrics"]["pointing_acc"],
        result["validate_s"],
    )
    return row, arts


def _prepare(model_ref, out: Path, formats, precisions, calib, method: str, opset: int | None):
    """The checked request: (model, sidecar metadata, whether it is the user's module, formats, precisions, job)."""
    formats = parse_choices(formats, [f for f in EXPORTERS if f != "torch"], "format(s)")
    precisions = parse_choices(precisions, PRECISIONS, "precision(s)")
    if (out / MANIFEST).exists() or (out.exists() and any(out.iterdir())):
        raise EdgeSDKError(f"{out} is not empty", "choose a new --out folder, or delete that one (nothing is overwritten)")
    model, meta, custom = _load(model_ref)
    wanted = [(f, p) for f in formats for p in precisions if p in EXPORTERS[f].precisions]
    if not wanted:  # everything asked for would be a skipped row
        raise ConfigError(
            f"no export path for {', '.join(formats)} at {', '.join(precisions)}: "
            + "; ".join(f"{f} has {', '.join(EXPORTERS[f].precisions)}" for f in formats),
            "pick a precision the format has (edge-sdk export --help)",
        )
    job = Job(model, out, Path(calib) if calib else None, method, **({"opset": opset} if opset else {}))
    if any(p == "int8" for _, p in wanted):
        job.calib  # noqa: B018 - read and checked now: a missing or bad set fails in seconds, not after the float exports
    return model, meta, custom, formats, precisions, job


def _reference(model, meta: dict, fsdd, mnist, cfg: EvalConfig, scenes: int) -> Reference:
    """PyTorch's outputs on ``scenes`` held-out scenes, and where the map's cells look: recorded with a
    trained checkpoint, else measured (zoom consistency on unlabeled training scenes, as edge-sdk eval
    does; a module of your own gets it too)."""
    if not (fsdd and mnist):
        log.warning(
            "export: validating on generated scenes (no fsdd/mnist given); for real data pass fsdd= and mnist= "
            "(edge_sdk.media.corpora.default_data_dir() finds ../shared/data)"
        )
    offset = tuple(meta.get("map_offset_px") or map_offset_of(model, fsdd, mnist, test_speakers=cfg.test_speakers))
    inputs = real_inputs(model.spec, fsdd, mnist, scenes, test_speakers=cfg.test_speakers)
    return Reference(model.spec, offset, inputs, reference_outputs(model, inputs), fsdd, mnist, cfg)


def _module_row(model, ref: Reference) -> dict:
    """The reference row of a module brought in memory (its weights would need its own class to load again)."""
    from edge_sdk.models.torch_runner import TorchTowers

    ref.metrics = evaluate(TorchTowers(model, ref.offset), ref.spec, ref.fsdd, ref.mnist, ref.cfg)
    status = f"reference: {type(model).__name__} in memory (no weights file: loading them needs its class)"
    return {
        "format": "module",
        "exporter": "torch",
        "backend": "torch",
        "precision": "fp32",
        "batch": "dynamic",
        "status": status,
        "metrics": {k: ref.metrics[k] for k in METRIC_KEYS},
    }


def _write(out: Path, report: dict, artifacts: list[dict], ref: Reference, name: str | None, zip_bundle: bool) -> None:
    """The report; the manifest (and zip) unless a row failed or missed without ``allow_mismatch``;
    intermediate graphs no requested precision kept are removed."""
    from edge_sdk.checkpoint import atomic_write_text

    atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    atomic_write_text(out / "report.md", format_export_report(report))
    listed = {a["file"] for a in artifacts}
    for f in out.iterdir():
        if f.is_file() and f.name not in listed and not f.name.startswith("report."):
            f.unlink()
    failed = [r for r in report["rows"] if r["status"] in ("failed", "mismatch")]
    if failed and not report["allow_mismatch"]:
        advice = f"see {out / 'report.md'}"
        if any(r["status"] == "mismatch" for r in failed):  # a failure to export is not kept by allowing a mismatch
            advice += "; to keep the bundle anyway (the manifest records it), pass --allow-mismatch (allow_mismatch=True in Python)"
        misses = "; ".join(f"{r['exporter']} {r['precision']}: {', '.join(r['misses'])}" for r in failed)
        raise ExportMismatch(f"{len(failed)} export(s) failed or missed their tolerance: {misses}", advice)
    unique = list({(a["file"], a["backend"], a["precision"]): a for a in artifacts}.values())  # each file once per backend/precision
    rows = report["rows"]
    write_manifest(
        out, ref.spec, unique, name=name or f"{ref.spec.name}-bundle", map_offset_px=list(ref.offset), macs=report["macs"],
        calibration=report["calibration"], passed=report["passed"],
        metrics={f"{r['backend']}/{r['precision']}": r["metrics"] for r in rows if "metrics" in r},
        parity={f"{r['backend']}/{r['precision']}": {"status": r["status"], "misses": r.get("misses", [])} for r in rows if "parity" in r},
    )  # fmt: skip
    if zip_bundle:
        report["zip"] = str(pack_zip(out))


def export_bundle(
    model_ref,
    out: str | Path,
    formats="all",
    precisions="all",
    *,
    calib=None,
    method: str = "percentile",
    fsdd=None,
    mnist=None,
    eval_cfg: EvalConfig | None = None,
    parity_scenes: int = 64,
    opset: int | None = None,
    allow_mismatch: bool = False,
    zip_bundle: bool = False,
    name: str | None = None,
) -> dict:
    """Export ``model_ref`` (checkpoint, shipped name, or a module following :func:`check_contract`)
    into the bundle folder ``out``; returns the report."""
    from edge_sdk.models.shipped import count_macs

    out = Path(out)
    model, meta, custom, formats, precisions, job = _prepare(model_ref, out, formats, precisions, calib, method, opset)
    out.mkdir(parents=True, exist_ok=True)
    cfg = eval_cfg or EvalConfig()
    ref = _reference(model, meta, fsdd, mnist, cfg, parity_scenes)
    rows, artifacts = ([_module_row(model, ref)] if custom else []), []
    for fmt, precision in ([] if custom else [("torch", "fp32")]) + [(f, p) for f in formats for p in precisions]:
        row, arts = _row(fmt, precision, job, ref)
        rows.append(row)
        artifacts += arts
    report = {
        "model": str(model_ref) if isinstance(model_ref, (str, Path)) else type(model).__name__,
        "spec": model.spec.name,
        "macs": count_macs(model),
        "formats": formats,
        "precisions": precisions,
        "inputs": {"scenes": parity_scenes, "data": ref.inputs["source"]},
        "eval": {"scenes": cfg.scenes, "k": cfg.k, "seed": cfg.seed, "test_speakers": list(cfg.test_speakers)},
        "calibration": job.calibration(),
        "rows": rows,
        "passed": not any(r["status"] in ("failed", "mismatch") for r in rows),
        "allow_mismatch": allow_mismatch,
    }
    _write(out, report, artifacts, ref, name, zip_bundle)
    return report
