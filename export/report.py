"""The Markdown of ``edge-sdk export``'s and ``edge-sdk quantize``'s reports (their JSON is the
report dict itself)."""

from __future__ import annotations

__all__ = ["format_export_report", "format_quantize_report"]


def _notes(rows: list[dict]) -> list[str]:
    notes = [f"- {r['exporter']} {r['precision']}: {m}" for r in rows for m in r.get("misses", [])]
    notes += [f"- {r['exporter']} {r['precision']}: {n}" for r in rows for n in r.get("notes", [])]
    notes += [
        f"- {r['exporter']} {r['precision']} {a['graph']}: XNNPACK runs {a['delegated_nodes']} nodes in {a['subgraphs']} subgraphs, "
        f"{a['portable_nodes']} on portable kernels"
        + (f" ({', '.join(f'{op} x{n}' for op, n in a['portable_ops'].items())})" if a.get("portable_ops") else "")
        for r in rows
        for a in r.get("delegation", [])
    ]
    return notes


def _gate_notes(rows: list[dict]) -> list[str]:
    """What the evaluation could resolve, where a drop over the budget was within it."""
    out = []
    for r in rows:
        for k, g in (r.get("gate") or {}).items():
            if g["drop"] > r.get("tolerance", {}).get("metric_drop", 1) and not g["significant"]:
                out.append(f"- {r['exporter']} {r['precision']}: {k} drops by {g['drop']:.3f}, within what {g['n']} items resolve "
                           f"(one item = {g['one_item']:.3f}, paired 95% interval +-{g['ci95']:.3f}): not counted as a miss")  # fmt: skip
    return out


def _int8_notes(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        for a in r.get("int8", []):
            acc = a["accounting"]
            line = f"- {a['file']}: {acc['int8_layers']} of {acc['layers']} layers, {100 * acc['int8_share']:.0f}% of their MACs, run INT8"
            whys = sorted({f["why"] for f in acc["float"]})
            out.append(
                line
                + (f"; float: {'; '.join(whys)}" if whys else "")
                + (f"; front end {acc['front_end_macs'] / 1e6:.1f} MMACs float" if acc["front_end_macs"] else "")
            )
    return out


def format_export_report(report: dict) -> str:
    rows = report["rows"]
    keys = ("pointing_acc", "a2i_r1", "probe_audio_acc", "sync_acc") if any("metrics" in r for r in rows) else ()
    where = (f"; metrics on {report['eval']['scenes']} scenes, K={report['eval']['k']}" if report.get("eval") else
             "; no task metrics (AV-Digits metrics mean nothing for this model): parity decides")  # fmt: skip
    lines = [f"# Export report: {report['model']} ({report['contract']})", "",
             f"Parity on {report['inputs']['scenes']} real inputs ({report['inputs']['data']}){where}. "
             f"Verdict: **{'passed' if report['passed'] else 'FAILED'}**.", "",
             "| format | backend | precision | status | size MB | mean cosine (worst output) | max abs diff | heatmap agree |"
             + "".join(f" {k} |" for k in keys), "|---|---|---|---|---:|---|---:|---:|" + "---:|" * len(keys)]  # fmt: skip
    for r in rows:
        if "parity" not in r:
            lines.append(f"| {r['format']} | {r['backend']} | {r['precision']} | {r['status']} |" + " |" * (4 + len(keys)))
            continue
        worst = min(r["parity"], key=lambda k: r["parity"][k]["cosine_mean"])
        mx = max(p["max_abs"] for p in r["parity"].values())
        cells = [f"{r['metrics'][k]:.3f}" + (f" ({-r['drop'][k]:+.3f})" if k in r["drop"] else "") for k in keys]
        lines.append(f"| {r['format']} | {r['backend']} | {r['precision']} | {r['status']} | {r['size_mb']:.2f} | "
                     f"{r['parity'][worst]['cosine_mean']:.5f} ({worst}) | {mx:.2g} | {r['heatmap_agreement']:.3f} |"
                     + "".join(f" {c} |" for c in cells))  # fmt: skip
    lines += ["", "Metric change in brackets: to PyTorch FP32 of the same model."] if keys else []
    notes = _notes(rows) + _gate_notes(rows)
    if notes:
        lines += ["", "## Notes", "", *notes]
    if int8 := _int8_notes(rows):
        lines += ["", "## What runs INT8", "", *int8]
    return "\n".join(lines) + "\n"


def format_quantize_report(report: dict) -> str:
    rows = report["rows"]
    keys = ("pointing_acc", "a2i_r1", "probe_audio_acc", "i2a_r1", "avc_acc", "probe_image_acc", "ciou50", "sync_acc")
    keys = keys if any("metrics" in r for r in rows) else ()
    cal, ev = report["calibration"], report.get("eval")
    where = (f"eval: {ev['scenes']} scenes, K={ev['k']}, held-out speakers {', '.join(ev['test_speakers'])}" if ev else
             f"no task metrics (AV-Digits metrics mean nothing for this model): parity on {report['inputs']['data']} decides")  # fmt: skip
    lines = [f"# Quantization report: {report['model']}", "",
             f"Calibration: {cal['pairs']} pairs, {cal['method']}, sha256 {cal['sha256'][:16]}…; {where}.", "",
             "| model | backend | precision | method | size MB | MMACs | worst mean cosine |" + "".join(f" {k} |" for k in keys),
             "|---|---|---|---|---:|---:|---:|" + "---:|" * len(keys)]  # fmt: skip
    for r in rows:
        d, m = r.get("delta", {}), r.get("metrics", {})
        cells = [f"{m[k]:.3f}" + (f" ({d[k]:+.3f})" if k in d else "") if k in m else "-" for k in keys]
        cos = f"{min(p['cosine_mean'] for p in r['parity'].values()):.5f}" if r.get("parity") else "-"
        lines.append(f"| {r['model']} | {r['backend']} | {r['precision']} | {r.get('method', '-')} | {r['size_mb']:.2f} | "
                     f"{r['macs'] / 1e6:.1f} | {cos} |" + "".join(f" {c} |" for c in cells))  # fmt: skip
    lines += ["", "Delta in brackets: to the row above."] if keys else []
    lines += ["", "## Layers kept in float", ""]
    lines += [f"- `{f['layer']}`: {f['why']}" for f in report["float_layers"]] or ["- none: every layer is under the sensitivity threshold"]
    lines += ["", "## INT8 recipe per target", ""]
    lines += [f"- {t}: {r['quantizer']}; calibration {', '.join(r['methods'])}; kept float: {r['kept_float']}; QAT: {r['qat'] or 'none'}"
              for t, r in report["recipes"].items()]  # fmt: skip
    if int8 := _int8_notes(rows):
        lines += ["", "## What runs INT8", "", *int8]
    if report.get("fallbacks"):
        lines += ["", "## What stays float, per file", "", *[f"- {n}" for n in report["fallbacks"]]]
    notes = report["notes"] + [n[2:] for n in _notes([r for r in rows if "exporter" in r]) + _gate_notes(rows)]
    if notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"
