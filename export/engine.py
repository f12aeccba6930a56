"""``edge-sdk export``: the one generic engine behind every exporter.

For each requested format and precision: the exporter writes its files -> they are run
through their real runtime on held-out AV-Digits scenes -> every output is compared with
PyTorch (max abs diff, cosine) and the heatmaps with PyTorch's -> the task metrics are
measured through the same runtime -> :func:`~.validate.verdict` against the exporter's
tolerance. A miss fails the export (:class:`ExportMismatch`, non-zero exit) unless
``allow_mismatch``; the report (``report.json``, ``report.md``) is written either way and
says which output missed and by how much, and the manifest only when the bundle passed
(or the mismatch was allowed, which the manifest then records).

The bundle always holds the PyTorch weights (``model.safetensors``): they are the
reference, ``--backend torch`` of ``edge-sdk eval`` and the eager rows of ``edge-sdk bench``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from edge_sdk.bundle import MANIFEST, pack_zip, write_manifest
from edge_sdk.errors import ConfigError, EdgeSDKError
from edge_sdk.eval.evaluate import METRIC_KEYS, EvalConfig, evaluate, map_offset_of
from edge_sdk.export.formats import EXPORTERS, Job
from edge_sdk.export.onnx import TOWERS
from edge_sdk.export.validate import compare, heatmap_agreement, real_inputs, run_graph, verdict

__all__ = ["export_bundle", "check_contract", "ExportMismatch", "PRECISIONS", "GATED", "format_export_report"]

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
GATED = ("pointing_acc", "a2i_r1", "probe_audio_acc")


class ExportMismatch(EdgeSDKError):
    """An exported model missed its tolerance on real inputs."""


def _parse(value, allowed, what: str) -> list[str]:
    items = list(allowed) if value in ("all", None) else ([value] if isinstance(value, str) else list(value))
    items = [i for part in items for i in part.split(",")]
    bad = [i for i in items if i not in allowed]
    if bad or not items:
        raise ConfigError(f"unknown {what} {bad}", f"use one or more of: {', '.join(allowed)}, or all")
    return items


def _shapes(graph: str, spec, ref: dict[str, np.ndarray], batch: str) -> dict[str, list]:
    ins = spec.input_shapes
    b = "batch" if batch == "dynamic" else int(batch)
    return {**{n: [b, *ins[n]] for n in TOWERS[graph]["inputs"]}, **{n: [b, *ref[n].shape[1:]] for n in TOWERS[graph]["outputs"]}}


def _whole_model_parity(path: Path, inputs: dict, ref: dict) -> dict:
    """Parity of the one-graph model (``av``) through ONNX Runtime."""
    import onnxruntime as ort

    from edge_sdk.runtime.backends import ort_load_error

    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        raise ort_load_error(path, e) from None
    outs = sess.run(TOWERS["av"]["outputs"], {"wave": inputs["wave"], "image": inputs["image"]})
    return compare(ref, dict(zip(TOWERS["av"]["outputs"], outs)))


def _validate(exporter, precision, arts, job, inputs, ref, base, fsdd, mnist, cfg, spec, offset) -> dict:
    files = {a["tower"]: job.out / a["file"] for a in arts}
    runner = exporter.runner(files, spec, offset, precision)
    t0 = time.perf_counter()
    got = run_graph(runner, inputs)
    parity = compare(ref, got)
    heat = heatmap_agreement(ref, got)
    metrics = evaluate(runner, spec, fsdd, mnist, cfg)
    drops = {k: round(base[k] - metrics[k], 4) for k in GATED} if base else {}
    misses = verdict(parity, heat, drops, exporter.tolerance(precision))
    if "av" in files and exporter.format == "onnx":
        whole = _whole_model_parity(files["av"], inputs, ref)
        misses += [f"whole-model graph {m}" for m in verdict(whole, None, None, exporter.tolerance(precision))]
        parity = {**parity, **{f"av/{k}": v for k, v in whole.items()}}
    return {"parity": parity, "heatmap_agreement": heat, "metrics": {k: metrics[k] for k in METRIC_KEYS}, "drop": drops,
            "misses": misses, "validate_s": round(time.perf_counter() - t0, 1)}


def check_contract(model) -> None:
    """A module brought by the user must look like AVNet to the exporters: ``spec`` (a
    ModelSpec), ``audio(wave) -> [B, D]``, ``image(rgb) -> ([B, D], [B, D, h, w])`` and
    ``model(wave, image) -> {"audio_emb", "image_emb", "image_map"}``."""
    import torch

    from edge_sdk.export.onnx import example_inputs
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
        raise ConfigError(f"{type(model).__name__}(wave, image) returned {type(out).__name__}, not a dict of {', '.join(keys)}",
                          "return {'audio_emb': [B, D], 'image_emb': [B, D], 'image_map': [B, D, h, w]}")
    d = spec.embed_dim
    if out["audio_emb"].shape != (2, d) or out["image_emb"].shape != (2, d) or out["image_map"].dim() != 4 or out["image_map"].shape[1] != d:
        raise ConfigError(f"{type(model).__name__} outputs {', '.join(f'{k} {tuple(out[k].shape)}' for k in keys)}",
                          f"audio_emb and image_emb must be [B, {d}] and image_map [B, {d}, h, w] (spec.embed_dim = {d})")


def export_bundle(model_ref, out: str | Path, formats="all", precisions="all", *, calib=None, method: str = "percentile",
                  fsdd=None, mnist=None, eval_cfg: EvalConfig | None = None, parity_scenes: int = 64, opset: int | None = None,
                  allow_mismatch: bool = False, zip_bundle: bool = False, name: str | None = None) -> dict:
    """Export ``model_ref`` (checkpoint, shipped name, or a module following :func:`check_contract`)
    into the bundle folder ``out``; returns the report."""
    from edge_sdk.checkpoint import atomic_write_text
    from edge_sdk.models.shipped import count_macs, resolve_model

    formats = _parse(formats, [f for f in EXPORTERS if f != "torch"], "format(s)")
    precisions = _parse(precisions, PRECISIONS, "precision(s)")
    out = Path(out)
    if (out / MANIFEST).exists() or (out.exists() and any(out.iterdir())):
        raise EdgeSDKError(f"{out} is not empty", "choose a new --out folder, or delete that one (nothing is overwritten)")
    from edge_sdk.models.avnet import AVNet

    if isinstance(model_ref, (str, Path)):
        model, meta = resolve_model(str(model_ref))
    else:  # bring your own module
        check_contract(model_ref)
        model, meta = model_ref.eval(), {}
    custom = not isinstance(model, AVNet)
    spec = model.spec
    wanted = [(f, p) for f in formats for p in precisions if p in EXPORTERS[f].precisions]
    if not wanted:  # everything asked for would be a skipped row
        raise ConfigError(f"no export path for {', '.join(formats)} at {', '.join(precisions)}: "
                          + "; ".join(f"{f} has {', '.join(EXPORTERS[f].precisions)}" for f in formats),
                          "pick a precision the format has (edge-sdk export --help)")
    job = Job(model, out, Path(calib) if calib else None, method, **({"opset": opset} if opset else {}))
    if any(p == "int8" for _, p in wanted):
        job.calib  # noqa: B018 - read and checked now: a missing or bad set fails in seconds, not after the float exports
    out.mkdir(parents=True, exist_ok=True)
    if not (fsdd and mnist):
        log.warning("export: validating on generated scenes (no fsdd/mnist given); for real data pass fsdd= and mnist= "
                    "(edge_sdk.data.sources.default_data_dir() finds ../shared/data)")
    cfg = eval_cfg or EvalConfig()
    # where the map's cells look in the image: recorded with a trained checkpoint, else measured
    # (zoom consistency on unlabeled training scenes, as edge-sdk eval does); a module of your own gets it too
    offset = tuple(meta.get("map_offset_px") or map_offset_of(model, fsdd, mnist, test_speakers=cfg.test_speakers))
    inputs = real_inputs(spec, fsdd, mnist, parity_scenes, test_speakers=cfg.test_speakers)
    import torch

    with torch.inference_mode():
        raw = model(torch.from_numpy(inputs["wave"]), torch.from_numpy(inputs["image"]))
    ref = {k: v.numpy() for k, v in raw.items()}

    rows, artifacts, base = [], [], None
    if custom:  # the reference runs in memory: its weights would need its own class to load again
        from edge_sdk.eval.evaluate import TorchEmbedder

        base = evaluate(TorchEmbedder(model, map_offset=offset), spec, fsdd, mnist, cfg)
        rows.append({"format": "module", "exporter": "torch", "backend": "torch", "precision": "fp32", "batch": "dynamic",
                     "status": f"reference: {type(model).__name__} in memory (no weights file: loading them needs its class)",
                     "metrics": {k: base[k] for k in METRIC_KEYS}})
    plan = ([] if custom else [("torch", "fp32")]) + [(f, p) for f in formats for p in precisions]
    for fmt, precision in plan:
        exporter = EXPORTERS[fmt]
        row = {"format": exporter.format, "exporter": fmt, "backend": exporter.backend, "precision": precision, "batch": exporter.batch}
        if precision not in exporter.precisions:
            rows.append({**row, "status": f"skipped: {fmt} has no {precision} path (it has {', '.join(exporter.precisions)})"})
            continue
        if reason := exporter.missing():
            rows.append({**row, "status": f"skipped: {reason}"})
            continue
        log.info("export: %s %s", fmt, precision)
        try:
            arts = exporter.write(job, precision)
            result = _validate(exporter, precision, arts, job, inputs, ref, base, fsdd, mnist, cfg, spec, offset)
        except EdgeSDKError as e:
            rows.append({**row, "status": "failed", "misses": [f"{e.problem} ({e.fix})" if e.fix else e.problem]})
            continue
        except RuntimeError as e:  # the exported program does not run in its own runtime: a failed row, not a traceback
            log.exception("export: %s %s does not run", fmt, precision)
            rows.append({**row, "status": "failed", "misses": [f"the exported program fails in its runtime: {str(e).splitlines()[0][:200]}"]})
            continue
        if base is None:
            base = result["metrics"]
        for a in arts:
            a.update(shapes=_shapes(a["tower"], spec, ref, exporter.batch), parity="passed" if not result["misses"] else "failed")
        artifacts += arts
        size = sum((out / a["file"]).stat().st_size for a in arts if a["tower"] != "av" or exporter.format == "safetensors")
        status = "ok" if not result["misses"] else "mismatch"
        if fmt == "tensorrt":
            row["engine"] = exporter.engine_status()
        if any("delegated" in a for a in arts):
            row["delegation"] = [{"graph": a["tower"], **a["delegated"]} for a in arts if "delegated" in a]
        rows.append({**row, "status": status, "files": [a["file"] for a in arts], "size_mb": round(size / 1e6, 3),
                     "tolerance": exporter.tolerance(precision).to_dict(), **result})
        worst = min(p["cosine_mean"] for p in result["parity"].values())
        log.info("export: %s %s %s (worst mean cosine %.5f, pointing %.3f, %.1f s to validate)", fmt, precision, status, worst,
                 result["metrics"]["pointing_acc"], result["validate_s"])

    failed = [r for r in rows if r["status"] in ("failed", "mismatch")]
    report = {"model": str(model_ref) if isinstance(model_ref, (str, Path)) else type(model).__name__, "spec": spec.name, "macs": count_macs(model), "formats": formats, "precisions": precisions,
              "inputs": {"scenes": parity_scenes, "data": inputs["source"]},
              "eval": {"scenes": cfg.scenes, "k": cfg.k, "seed": cfg.seed, "test_speakers": list(cfg.test_speakers)},
              "calibration": ({**job.calib.describe(), "method": method} if job._calib is not None else None),
              "rows": rows, "passed": not failed, "allow_mismatch": allow_mismatch}
    atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    atomic_write_text(out / "report.md", format_export_report(report))
    listed = {a["file"] for a in artifacts}
    for f in out.iterdir():  # intermediate graphs no requested precision kept
        if f.is_file() and f.name not in listed and not f.name.startswith("report."):
            f.unlink()
    if failed and not allow_mismatch:
        advice = f"see {out / 'report.md'}"
        if any(r["status"] == "mismatch" for r in failed):  # a failure to export is not kept by allowing a mismatch
            advice += "; to keep the bundle anyway (the manifest records it), pass --allow-mismatch (allow_mismatch=True in Python)"
        raise ExportMismatch(f"{len(failed)} export(s) failed or missed their tolerance: " +
                             "; ".join(f"{r['exporter']} {r['precision']}: {', '.join(r['misses'])}" for r in failed), advice)
    seen, unique = set(), []
    for a in artifacts:
        if (a["file"], a["backend"], a["precision"]) not in seen:
            seen.add((a["file"], a["backend"], a["precision"]))
            unique.append(a)
    write_manifest(out, spec, unique, name=name or f"{spec.name}-bundle", map_offset_px=list(offset), macs=report["macs"],
                   calibration=report["calibration"], passed=report["passed"],
                   metrics={f"{r['backend']}/{r['precision']}": r["metrics"] for r in rows if "metrics" in r},
                   parity={f"{r['backend']}/{r['precision']}": {"status": r["status"], "misses": r.get("misses", [])} for r in rows if "parity" in r})
    if zip_bundle:
        report["zip"] = str(pack_zip(out))
    return report


def format_export_report(report: dict) -> str:
    keys = ("pointing_acc", "a2i_r1", "probe_audio_acc", "sync_acc")
    lines = [f"# Export report: {report['model']} ({report['spec']})", "",
             f"Parity on {report['inputs']['scenes']} held-out scenes ({report['inputs']['data']}); metrics on "
             f"{report['eval']['scenes']} scenes, K={report['eval']['k']}. Verdict: **{'passed' if report['passed'] else 'FAILED'}**.", "",
             "| format | backend | precision | status | size MB | mean cosine (worst output) | max abs diff | heatmap agree | " + " | ".join(keys) + " |",
             "|---|---|---|---|---:|---|---:|---:|" + "---:|" * len(keys)]
    for r in report["rows"]:
        if "parity" not in r:
            lines.append(f"| {r['format']} | {r['backend']} | {r['precision']} | {r['status']} |" + " |" * (4 + len(keys)))
            continue
        worst = min(r["parity"], key=lambda k: r["parity"][k]["cosine_mean"])
        mx = max(p["max_abs"] for p in r["parity"].values())
        cells = [f"{r['metrics'][k]:.3f}" + (f" ({-r['drop'][k]:+.3f})" if k in r["drop"] else "") for k in keys]
        lines.append(f"| {r['format']} | {r['backend']} | {r['precision']} | {r['status']} | {r['size_mb']:.2f} | "
                     f"{r['parity'][worst]['cosine_mean']:.5f} ({worst}) | {mx:.2g} | {r['heatmap_agreement']:.3f} | " + " | ".join(cells) + " |")
    lines += ["", "Metric change in brackets: to PyTorch FP32 of the same model."]
    notes = [f"- {r['exporter']} {r['precision']}: {m}" for r in report["rows"] for m in r.get("misses", [])]
    notes += [f"- {r['exporter']} {r['precision']}: {r['engine']}" for r in report["rows"] if r.get("engine")]
    notes += [f"- {r['exporter']} {r['precision']} {a['graph']}: XNNPACK runs {a['delegated_nodes']} nodes in {a['subgraphs']} subgraphs, "
              f"{a['portable_nodes']} on portable kernels" for r in report["rows"] for a in r.get("delegation", [])]
    if notes:
        lines += ["", "## Notes", "", *notes]
    return "\n".join(lines) + "\n"
