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

from edge_sdk.bundle import pack_zip, write_manifest
from edge_sdk.errors import ConfigError, EdgeSDKError
from edge_sdk.eval.evaluate import METRIC_KEYS, EvalConfig, evaluate, map_offset_of
from edge_sdk.export.base import Job, Reference, reference_outputs, report_row, validate
from edge_sdk.export.graphs import TOWERS, example_inputs
from edge_sdk.export.report import format_export_report
from edge_sdk.export.targets import EXPORTERS
from edge_sdk.export.validate import real_inputs
from edge_sdk.outputs import LOCK_NAME, atomic_write_text, fresh_folder, output_folder

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


def _shapes(graph: str, contract, ref: dict, batch: str) -> dict[str, list]:
    ins = contract.input_shapes
    b = "batch" if batch == "dynamic" else int(batch)
    return {**{n: [b, *ins[n]] for n in TOWERS[graph]["inputs"]}, **{n: [b, *ref[n].shape[1:]] for n in TOWERS[graph]["outputs"]}}


def check_contract(model) -> None:
    """A module brought in memory must show the SDK's face to the exporters: ``contract`` (a
    :class:`~edge_sdk.contract.ModelContract`; a registry ``spec`` gives one), ``audio`` and
    ``image`` tower modules, and ``model(wave, image) -> {"audio_emb", "image_emb", "image_map"}``
    of the contract's sizes (wrap your own with :class:`edge_sdk.models.foreign.ContractModel`)."""
    import torch

    from edge_sdk.contract import ModelContract
    from edge_sdk.models.geometry import check_outputs
    from edge_sdk.spec import ModelSpec

    contract = getattr(model, "contract", None)
    spec = getattr(model, "spec", None)
    if contract is None and isinstance(spec, ModelSpec):  # a registry architecture in the user's own module
        model.contract = contract = spec.contract(getattr(model, "map_offset", (0.0, 0.0)))
    if not isinstance(contract, ModelContract):
        fix = "wrap it in edge_sdk.models.foreign.ContractModel, or use edge-sdk export --model FILE.py:FUNCTION --contract FILE.toml"
        raise ConfigError(f"{type(model).__name__} has no .contract (a ModelContract) nor .spec (a registry ModelSpec)", fix)
    missing = [n for n in ("audio", "image") if not isinstance(getattr(model, n, None), torch.nn.Module)]
    if missing:
        raise ConfigError(f"{type(model).__name__} has no {' or '.join(missing)} tower module", "expose the towers as model.audio and model.image")
    with torch.inference_mode():
        out = model.eval()(*example_inputs(contract, "av", 2))
    keys = ("audio_emb", "image_emb", "image_map")
    if not isinstance(out, dict) or set(out) != set(keys):
        raise ConfigError(f"{type(model).__name__}(wave, image) returned {type(out).__name__}, not a dict of {', '.join(keys)}",
                          "return {'audio_emb': [B, D], 'image_emb': [B, D], 'image_map': [B, D, h, w]}")  # fmt: skip
    grid = check_outputs(model, contract)
    if contract.map is not None and tuple(contract.map.grid) != tuple(grid):
        raise ConfigError(f"{type(model).__name__}'s contract says a {contract.map.grid[0]} x {contract.map.grid[1]} map, "
                          f"the module gives {grid[0]} x {grid[1]}", "fix the contract's map grid (or let the SDK measure it: --model)")  # fmt: skip


def _load(model_ref, factory, weights, contract_file):
    """The model to export (an :class:`~edge_sdk.models.loading.OpenedModel`): ours by checkpoint or
    name, a user's factory, or a module brought in memory."""
    from edge_sdk.manifest import registry_source
    from edge_sdk.models.loading import OpenedModel, open_model

    if factory or isinstance(model_ref, (str, Path)) or model_ref is None:
        return open_model(None if model_ref is None else str(model_ref), factory=factory, weights=weights, contract=contract_file)
    check_contract(model_ref)
    spec = getattr(model_ref, "spec", None)
    source = registry_source(spec) if type(model_ref).__name__ == "AVNet" else {"kind": "none"}
    return OpenedModel(model_ref.eval(), {}, source, type(model_ref).__name__)


def _row(fmt: str, precision: str, job: Job, ref: Reference, source: dict, trusted: tuple[str, ...]) -> tuple[dict, list[dict]]:
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
        result = validate(exporter, precision, arts, job.out, ref, source, trusted)
    except EdgeSDKError as e:
        return {**head, "status": "failed", "misses": [f"{e.problem} ({e.fix})" if e.fix else e.problem]}, []
    except RuntimeError as e:  # the exported program does not run in its own runtime: a failed row, not a traceback
        log.exception("export: %s %s does not run", fmt, precision)
        return {**head, "status": "failed", "misses": [f"the exported program fails in its runtime: {str(e).splitlines()[0][:200]}"]}, []
    for a in arts:
        a.update(shapes=_shapes(a["tower"], ref.contract, ref.outputs, exporter.batch), parity="passed" if not result["misses"] else "failed")
    row = report_row(exporter, precision, arts, result, job.out)
    worst = min(p["cosine_mean"] for p in result["parity"].values())
    task = f", pointing {result['metrics']['pointing_acc']:.3f}" if "metrics" in result else ""
    log.info("export: %s %s %s (worst mean cosine %.5f%s, %.1f s to validate)", fmt, precision, row["status"], worst, task, result["validate_s"])
    return row, arts


def _prepare(opened, out: Path, formats, precisions, calib, method: str, opset: int | None):
    """The checked request: (formats, precisions, job)."""
    formats = parse_choices(formats, [f for f in EXPORTERS if f != "torch"], "format(s)")
    precisions = parse_choices(precisions, PRECISIONS, "precision(s)")
    if out.exists():
        output_folder(out, "--out", empty=True)  # refuses a file in its place, or a folder with anything but a lock in it
    wanted = [(f, p) for f in formats for p in precisions if p in EXPORTERS[f].precisions]
    if not wanted:  # everything asked for would be a skipped row
        raise ConfigError(
            f"no export path for {', '.join(formats)} at {', '.join(precisions)}: "
            + "; ".join(f"{f} has {', '.join(EXPORTERS[f].precisions)}" for f in formats),
            "pick a precision the format has (edge-sdk export --help)",
        )
    job = Job(opened.model, out, Path(calib) if calib else None, method, **({"opset": opset} if opset else {}))
    if any(p == "int8" for _, p in wanted):
        job.calib  # noqa: B018 - read and checked now: a missing or bad set fails in seconds, not after the float exports
    return formats, precisions, job


def make_reference(opened, fsdd, mnist, cfg: EvalConfig, scenes: int, videos=None, task_metrics: bool | None = None) -> Reference:
    """PyTorch's outputs on ``scenes`` real inputs (the user's ``videos`` where given, else
    held-out AV-Digits scenes) and, where the AV-Digits task metrics mean something (our models, or
    ``task_metrics``), its metrics and their per-item outcomes. A model of ours without a recorded
    map offset gets it measured (zoom consistency on unlabeled training scenes, as edge-sdk eval does)."""
    from edge_sdk.models.torch_runner import TorchTowers

    model = opened.model
    if videos is None and not (fsdd and mnist):
        log.warning("export: validating on generated scenes (no fsdd/mnist or videos given); for real data pass fsdd= and mnist= "
                    "(edge_sdk.media.corpora.default_data_dir() finds ../shared/data) or videos=DIR")  # fmt: skip
    if opened.ours and "map_offset_px" not in opened.meta:
        model.map_offset = tuple(map_offset_of(model, fsdd, mnist, test_speakers=cfg.test_speakers))
    inputs = real_inputs(model.contract, fsdd, mnist, scenes, test_speakers=cfg.test_speakers, videos=videos)
    ref = Reference(model.contract, inputs, reference_outputs(model, inputs), fsdd, mnist, cfg, opened.ours if task_metrics is None else task_metrics)
    if ref.task_metrics:
        ref.metrics = evaluate(TorchTowers(model), fsdd, mnist, cfg, outcomes=ref.outcomes)
    return ref


def _module_row(opened, ref: Reference) -> dict:
    """The reference row of a module with no weights file a bundle could load again (in memory)."""
    status = f"reference: {opened.ref} in memory (no weights file: loading them needs its class)"
    row = {"format": "module", "exporter": "torch", "backend": "torch", "precision": "fp32", "batch": "dynamic", "status": status}
    return {**row, "metrics": {k: ref.metrics[k] for k in METRIC_KEYS}} if ref.metrics else row


def _write(out: Path, report: dict, artifacts: list[dict], ref: Reference, source: dict, name: str | None, zip_bundle: bool) -> None:
    """The report; the manifest (and zip) unless a row failed or missed without ``allow_mismatch``;
    intermediate graphs no requested precision kept are removed."""
    atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    atomic_write_text(out / "report.md", format_export_report(report))
    listed = {a["file"] for a in artifacts}
    for f in out.iterdir():
        if f.is_file() and f.name not in listed and not f.name.startswith("report.") and f.name != LOCK_NAME:
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
        out, ref.contract, source, unique, name=name or f"{ref.contract.name}-bundle", macs=report["macs"],
        calibration=report["calibration"], passed=report["passed"], inputs=report["inputs"],
        metrics={f"{r['backend']}/{r['precision']}": r["metrics"] for r in rows if "metrics" in r},
        parity={f"{r['backend']}/{r['precision']}": {"status": r["status"], "misses": r.get("misses", [])} for r in rows if "parity" in r},
    )  # fmt: skip
    if zip_bundle:
        report["zip"] = str(pack_zip(out))


def export_bundle(
    model_ref=None,
    out: str | Path = "bundle",
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
    factory: str | None = None,
    weights=None,
    contract=None,
    videos=None,
    task_metrics: bool | None = None,
) -> dict:
    """Export ``model_ref`` (checkpoint or shipped name of ours, or a module following
    :func:`check_contract`) or the user's model (``factory`` ``FILE.py:FUNCTION`` with ``weights`` and
    ``contract``) into the bundle folder ``out``; parity on ``videos`` (a folder of the user's
    clips) where given; returns the report."""
    from edge_sdk.models.shipped import count_macs

    out = Path(out)
    opened = _load(model_ref, factory, weights, contract)
    formats, precisions, job = _prepare(opened, out, formats, precisions, calib, method, opset)
    with fresh_folder(out, "--out", keep=(ExportMismatch,)):  # made and locked; on any failure emptied and removed again
        trusted = (factory,) if factory else ()
        cfg = eval_cfg or EvalConfig()
        ref = make_reference(opened, fsdd, mnist, cfg, parity_scenes, videos, task_metrics)
        weights_row = opened.source.get("kind") != "none"
        rows, artifacts = ([] if weights_row else [_module_row(opened, ref)]), []
        for fmt, precision in ([("torch", "fp32")] if weights_row else []) + [(f, p) for f in formats for p in precisions]:
            row, arts = _row(fmt, precision, job, ref, opened.source, trusted)
            rows.append(row)
            artifacts += arts
        report = {
            "model": opened.ref,
            "contract": ref.contract.name,
            "macs": count_macs(opened.model),
            "formats": formats,
            "precisions": precisions,
            "inputs": {"scenes": parity_scenes, "data": ref.inputs["source"]},
            "eval": {"scenes": cfg.scenes, "k": cfg.k, "seed": cfg.seed, "test_speakers": list(cfg.test_speakers)} if ref.task_metrics else None,
            "calibration": job.calibration(),
            "rows": rows,
            "passed": not any(r["status"] in ("failed", "mismatch") for r in rows),
            "allow_mismatch": allow_mismatch,
        }
        _write(out, report, artifacts, ref, opened.source, name, zip_bundle)
        return report
