"""``edge-sdk info`` (registered and shipped models and bundles, or one bundle's manifest) and
``edge-sdk doctor`` (this machine's backends, devices and packages)."""

from __future__ import annotations

import argparse
import json

from edge_sdk.toolchain.args import Command

__all__ = ["COMMANDS", "format_bundle"]


def format_bundle(bundle) -> str:
    """A bundle's manifest for people: the model, every file with its backend, precision, size and parity."""
    m, c = bundle.manifest, bundle.contract
    source = bundle.model or {}
    made = {"registry": "edge_sdk registry", "factory": f"your model {source.get('factory')}"}.get(source.get("kind"), "a module in memory")
    where = (f"map {c.map.grid[0]}x{c.map.grid[1]}, cell j at {c.map.stride[0]:g} j + {c.map.offset[0]:g} px ({c.map.source})"
             if c.map else "no map (no localization)")  # fmt: skip
    lines = [
        f"bundle {m.get('name', bundle.folder.name)} (schema {m['schema']}) at {bundle.folder}",
        f"model {c.name} ({made}{', license ' + c.license if c.license else ''}): audio {c.audio.sample_rate} Hz x "
        f"{c.audio.num_samples} samples ({c.audio.input}), image {c.image.height}x{c.image.width} {c.image.channel_order}, "
        f"embedding {c.embed_dim}, {where}",
        f"{'file':<26}{'graph':<7}{'backend':<13}{'precision':<10}{'MB':>7}  parity  sha256",
    ]
    for a in m["artifacts"]:
        lines.append(
            f"{a['file']:<26}{a['tower']:<7}{a['backend']:<13}{a['precision']:<10}{a['bytes'] / 1e6:>7.2f}  "
            f"{a.get('parity', '-'):<7} {a['sha256'][:12]}"
        )
    for key, metrics in (m.get("metrics") or {}).items():
        lines.append(f"metrics {key}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if k in ("pointing_acc", "a2i_r1", "probe_audio_acc")))
    if m.get("calibration"):
        lines.append(f"calibration: {m['calibration'].get('pairs')} pairs, sha256 {m['calibration'].get('sha256', '')[:16]}")
    lines.append("made with " + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()))
    return "\n".join(lines)


def run_info(args) -> int:
    from edge_sdk.bundle import read_bundle, shipped_bundles

    if args.bundle:
        bundle = read_bundle(args.bundle)
        print(json.dumps(bundle.manifest, indent=2) if args.json else format_bundle(bundle))
        return 0
    from edge_sdk.models.shipped import model_table

    rows = model_table()
    bundles = [{"name": n, "path": str(p)} for n, p in shipped_bundles().items()]
    from edge_sdk.train.folds import shipped_folds

    folds = shipped_folds()
    if args.json:
        print(json.dumps({"models": rows, "bundles": bundles, "folds": folds}, indent=2))
        return 0
    print(f"{'name':<22}{'role':<9}{'params':>10}{'MMACs':>9}  outputs / path")
    for r in rows:
        shapes = ", ".join(f"{k}{v}" for k, v in r["outputs"].items()) if r["outputs"] else "-"
        params, macs = (f"{r['params']:,}", f"{r['macs'] / 1e6:.1f}") if r["macs"] else ("-", "-")
        print(f"{r['name']:<22}{r['role']:<9}{params:>10}{macs:>9}  {shapes}  {r['path'] or '(not shipped)'}")
    if any(r["outputs"] is None for r in rows):
        print("(torch is not installed: output shapes, and the unshipped specs' sizes, need it: pip install 'edge_sdk[train]')")
    for b in bundles:
        print(f"bundle {b['name']:<15} {b['path']}")
    for speaker, models in folds.items():
        print(f"fold without {speaker:<9} {', '.join(models)}  (edge-sdk eval MODEL --folds)")
    return 0


def run_doctor(args) -> int:
    from edge_sdk.toolchain.doctor import format_report, machine_report

    report = machine_report()
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", nargs="?", help="a bundle folder or .zip to describe (its manifest)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def doctor_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


COMMANDS = (
    Command("info", run_info, info_arguments, "List registered and shipped models and bundles, or describe one bundle.", "edge-sdk info --json"),
    Command("doctor", run_doctor, doctor_arguments, "Report backends, devices and packages on this machine.", "edge-sdk doctor"),
)
