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
        for r in rows
        for a in r.get("delegation", [])
    ]
    return notes


def format_export_report(report: dict) -> str:
    keys = ("pointing_acc", "a2i_r1", "probe_audio_acc", "sync_acc")
    lines = [
        f"# Export report: {report['model']} ({report['spec']})",
        "",
        f"Parity on {report['inputs']['scenes']} held-out scenes ({report['inputs']['data']}); metrics on "
        f"{report['eval']['scenes']} scenes, K={report['eval']['k']}. Verdict: **{'passed' if report['passed'] else 'FAILED'}**.",
        "",
        "| format | backend | precision | status | size MB | mean cosine (worst output) | max abs diff | heatmap agree | " + " | ".join(keys) + " |",
        "|---|---|---|---|---:|---|---:|---:|" + "---:|" * len(keys),
    ]
    for r in report["rows"]:
        if "parity" not in r:
            lines.append(f"| {r['format']} | {r['backend']} | {r['precision']} | {r['status']} |" + " |" * (4 + len(keys)))
            continue
        worst = min(r["parity"], key=lambda k: r["parity"][k]["cosine_mean"])
        mx = max(p["max_abs"] for p in r["parity"].values())
        cells = [f"{r['metrics'][k]:.3f}" + (f" ({-r['drop'][k]:+.3f})" if k in r["drop"] else "") for k in keys]
        lines.append(
            f"| {r['format']} | {r['backend']} | {r['precision']} | {r['status']} | {r['size_mb']:.2f} | "
            f"{r['parity'][worst]['cosine_mean']:.5f} ({worst}) | {mx:.2g} | {r['heatmap_agreement']:.3f} | " + " | ".join(cells) + " |"
        )
    lines += ["", "Metric change in brackets: to PyTorch FP32 of the same model."]
    if notes := _notes(report["rows"]):
        lines += ["", "## Notes", "", *notes]
    return "\n".join(lines) + "\n"


def format_quantize_report(report: dict) -> str:
    keys = ("pointing_acc", "a2i_r1", "probe_audio_acc", "i2a_r1", "avc_acc", "probe_image_acc", "ciou50", "sync_acc")
    cal = report["calibration"]
    lines = [
        f"# Quantization report: {report['model']}",
        "",
        f"Calibration: {cal['pairs']} pairs, {cal['method']}, sha256 {cal['sha256'][:16]}…; "
        f"eval: {report['eval']['scenes']} scenes, K={report['eval']['k']}, held-out speakers {', '.join(report['eval']['test_speakers'])}.",
        "",
        "| model | backend | precision | method | size MB | MMACs | " + " | ".join(keys) + " |",
        "|---|---|---|---|---:|---:|" + "---:|" * len(keys),
    ]
    for r in report["rows"]:
        d, m = r.get("delta", {}), r["metrics"]
        cells = [f"{m[k]:.3f}" + (f" ({d[k]:+.3f})" if k in d else "") for k in keys]
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['precision']} | {r.get('method', '-')} | {r['size_mb']:.2f} | "
            f"{r['macs'] / 1e6:.1f} | " + " | ".join(cells) + " |"
        )
    lines += ["", "Delta in brackets: to the row above.", "", "## Layers kept in float", ""]
    lines += [f"- `{f['layer']}`: {f['why']}" for f in report["float_layers"]] or ["- none: every layer is under the sensitivity threshold"]
    lines += ["", "## INT8 recipe per target", ""]
    lines += [
        f"- {t}: {r['quantizer']}; calibration {', '.join(r['methods'])}; kept float: {r['kept_float']}; QAT: {r['qat'] or 'none'}"
        for t, r in report["recipes"].items()
    ]
    if report.get("fallbacks"):
        lines += ["", "## What stays float, per file", "", *[f"- {n}" for n in report["fallbacks"]]]
    notes = report["notes"] + [n[2:] for n in _notes([r for r in report["rows"] if "exporter" in r])]
    if notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"
