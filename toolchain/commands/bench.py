"""``edge-sdk bench`` (every backend of a bundle side by side: :mod:`edge_sdk.export.bench`),
``edge-sdk profile`` (where each tower's time goes, op by op: :mod:`edge_sdk.export.profile`) and
``edge-sdk bench-runtime`` (the streaming runtime against an OpenCV + PyTorch loop:
:mod:`edge_sdk.export.bench_runtime`)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys

from edge_sdk.errors import EdgeSDKError
from edge_sdk.outputs import atomic_write_text, writing
from edge_sdk.toolchain.args import COUNT, NONNEG, Command, data_args, number, resolve_data, writable

__all__ = ["COMMANDS"]


def run_bench(args) -> int:
    from edge_sdk.eval.evaluate import EvalConfig
    from edge_sdk.export.bench import bench_bundle, format_bench, plot_bench

    writable(json=args.json, md=args.md, png=args.png)
    fsdd, mnist = resolve_data(args)
    report = bench_bundle(
        args.bundle,
        teacher=args.teacher or None,
        batch=args.batch,
        seconds=args.seconds,
        fsdd=fsdd,
        mnist=mnist,
        eval_cfg=EvalConfig(scenes=args.scenes),
        only=args.only.split(",") if args.only else None,
        videos=args.videos,
        trusted=(args.factory,) if args.factory else (),
    )
    _print_and_write(args, report, format_bench(report))
    if args.png:
        with writing(args.png, "--png"):
            plot_bench(report, args.png)
    measured = [r for r in report["rows"] if r.get("role") != "teacher" and r.get("status") == "ok"]
    if not measured:  # a benchmark that measured nothing is no success
        skipped = "; ".join(f"{r['backend']}/{r['precision']}: {r.get('status')}" for r in report["rows"] if r.get("role") != "teacher")
        print(f"edge-sdk bench: error: no row of {args.bundle} could be measured ({skipped or 'none selected'})", file=sys.stderr)
        return 1
    return 0


def run_profile(args) -> int:
    from edge_sdk.export.profile import format_profile, profile_bundle

    writable(json=args.json, md=args.md)
    fsdd, mnist = resolve_data(args)
    report = profile_bundle(args.bundle, runs=args.runs, batch=args.batch, fsdd=fsdd, mnist=mnist)
    if not report["rows"]:  # a profile that measured nothing is no success
        print(f"edge-sdk profile: error: {args.bundle} has no ONNX Runtime or ExecuTorch FP32/INT8 towers to profile", file=sys.stderr)
        return 1
    _print_and_write(args, report, format_profile(report))
    return 0


def _print_and_write(args, report: dict, text: str) -> None:
    """Print a report's Markdown; write it to ``--md`` and the report to ``--json`` where given."""
    print(text)
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2), "--json")
    if args.md:
        atomic_write_text(args.md, text, "--md")


def profile_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="a bundle folder or .zip (edge-sdk info lists the shipped ones)")
    p.add_argument("--runs", type=COUNT, default=50, help="runs per tower; each op's median is kept (default 50)")
    p.add_argument("--batch", type=COUNT, default=32, help="ONNX Runtime batch (default 32, as bench's throughput; ExecuTorch runs batch 1)")
    p.add_argument("--json", help="write every op kind's time, per tower and precision, here")
    p.add_argument("--md", help="write the Markdown tables here")
    data_args(p)


def _streams(text: str):
    """``--streams``: a count of streams, or ``auto``."""
    if text == "auto":
        return text
    return COUNT(text)


def run_bench_runtime(args) -> int:
    from edge_sdk.export.bench_runtime import bench_runtime

    writable(json=args.json)
    only = set(args.only.split(",")) if args.only else {"single", "streams"}
    if only - {"single", "streams"}:
        raise EdgeSDKError(
            f"--only {args.only}: unknown part(s) {', '.join(sorted(only - {'single', 'streams'}))}", "use --only single, streams or both"
        )
    if "streams" in only and args.streams is None and "single" not in only:
        raise EdgeSDKError("--only streams measures the streams of --streams, which is not given", "add --streams N or --streams auto")
    if args.teacher and "single" in only and importlib.util.find_spec("torch") is None:
        raise EdgeSDKError(
            "the PyTorch baseline (--teacher) needs torch, which is not installed here",
            "pip install 'edge_sdk[train]', or --teacher '' to measure the runtime alone",
        )
    fsdd, mnist = resolve_data(args)
    report = bench_runtime(
        args.bundle,
        seconds=args.seconds,
        prefer=args.backend,
        precision=args.precision,
        teacher=args.teacher or None,
        soak_s=args.soak,
        fsdd=fsdd,
        mnist=mnist,
        streams=args.streams if "streams" in only else None,
        stream_seconds=args.stream_seconds,
        single="single" in only,
    )
    text = json.dumps(report, indent=2)
    if args.json:
        atomic_write_text(args.json, text, "--json")
    keys = ("overhead_ratio", "drop_rate", "skew_ms_p95", "speedup_vs_baseline", "speedup_ceiling_decode", "pointing_delta_vs_baseline", "rss_growth")
    keys += ("rss_mb", "cold_start_s", "max_streams")
    summary = {k: report.get(k) for k in keys if k in report}
    if "streams" in report:
        summary["stream_shares"] = report["streams"]["shares"]
        summary["trials"] = {
            t["streams"]: {"drop_rate": t["drop_rate"], "p95_ms": t["p95_ms"], "served": t["served"]} for t in report["streams"]["trials"]
        }
    print(text if args.verbose else json.dumps(summary, indent=2))
    return _measured(report, "single" in only)


def _measured(report: dict, single: bool) -> int:
    """0, or 1 with the reason on stderr when a part measured nothing (no success)."""
    missing = []
    if single:
        frames = (report.get("offline") or {}).get("frames"), ((report.get("realtime") or {}).get("stats") or {}).get("frames_out")
        if not all(frames):
            missing.append(f"the runtime produced no results (offline {frames[0]}, real time {frames[1]})")
    if report.get("cold_start_s") is None:
        missing.append("the footprint run produced no result")
    if "streams" in report and not any(t.get("results") for t in report["streams"]["trials"]):
        missing.append("no stream trial produced results")
    for why in missing:
        print(f"edge-sdk bench-runtime: error: {why}", file=sys.stderr)
    return 1 if missing else 0


def bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="a bundle folder or .zip (edge-sdk info lists the shipped ones)")
    p.add_argument("--teacher", default="teacher", help="teacher row, PyTorch eager FP32 ('' to skip)")
    p.add_argument("--batch", type=COUNT, default=32, help="throughput batch (default 32; ExecuTorch programs run batch 1)")
    p.add_argument("--seconds", type=number(float, 0.1), default=2.0, help="timing per measurement (default 2)")
    p.add_argument("--scenes", type=COUNT, default=500, help="eval scenes per row (default 500)")
    p.add_argument("--only", help="comma list of backend/precision rows, e.g. onnxruntime/int8,torch/fp32")
    p.add_argument("--json", help="write the report here: the machine, its peaks, every row, the ratios and notes")
    p.add_argument("--md", help="write the Markdown table here")
    p.add_argument("--png", help="write a throughput chart here")
    p.add_argument("--videos", help="time on pairs cut from a folder of your own clips (default: AV-Digits scenes)")
    p.add_argument(
        "--model", dest="factory", metavar="FILE.py:FUNCTION", help="your model's factory: lets the torch backend run a bundle of your own model"
    )
    data_args(p)


def bench_runtime_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", default="avnet_s-demo", help="bundle folder, .zip or shipped bundle name (default: the shipped demo)")
    p.add_argument(
        "--seconds",
        type=COUNT,
        default=60,
        help="length of the 720p 30 fps test clip (default 60, as the README's "
        "figures; a shorter clip weighs start-up more: overhead up, speed-up down)",
    )
    p.add_argument("--backend", help="backend to run (default: the best this machine runs)")
    p.add_argument("--precision", help="precision to run (default: the fastest the bundle has)")
    p.add_argument("--teacher", default="teacher", help="the baseline's PyTorch model ('' to skip the baseline)")
    p.add_argument("--soak", type=NONNEG, default=0.0, help="also loop the clip in real time this many seconds and report memory growth")
    p.add_argument(
        "--streams",
        type=_streams,
        help="also serve N live 640x360 25 fps camera+mic streams in one process (network cameras on loopback and paced files "
        "from ../shared/data/video), or 'auto': the most with under 1%% dropped and capture-to-result p95 under 100 ms (max_streams)",
    )
    p.add_argument(
        "--stream-seconds", type=number(float, 2.0), default=20.0, help="measured seconds per stream count (default 20, after 3 s of warm-up)"
    )
    p.add_argument("--only", help="comma list of parts: single (the 720p clip: real time, offline, baseline, soak), streams (default: both)")
    p.add_argument("--json", help="write the full report here")
    data_args(p)


COMMANDS = (
    Command(
        "bench",
        run_bench,
        bench_arguments,
        "Benchmark every format/precision/backend of a bundle, with parity and metrics, in one table.",
        "edge-sdk bench avnet_s-demo --json bench.json --md bench.md --png bench.png",
        needs="export",
        logs=("edge_sdk.export.bench",),
    ),
    Command(
        "profile",
        run_profile,
        profile_arguments,
        "Per-op profiles of a bundle's ONNX Runtime and ExecuTorch towers, FP32 and INT8 side by side: where INT8 time goes.",
        "edge-sdk profile avnet_s-demo --md profile.md --json profile.json",
        needs="export",
        logs=("edge_sdk.export.profile",),
    ),
    Command(
        "bench-runtime",
        run_bench_runtime,
        bench_runtime_arguments,
        "Measure the streaming runtime: overhead, drops, skew, speed-up over an OpenCV + PyTorch loop, memory, footprint, max streams.",
        "edge-sdk bench-runtime --bundle avnet_s-demo --json runtime.json --soak 600 --streams auto",
        needs="train",
        logs=("edge_sdk.export.bench_runtime",),
    ),
)
