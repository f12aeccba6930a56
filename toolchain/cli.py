"""The ``edge-sdk`` command line: one subcommand per stage, each calling the public function.

Heavy libraries are imported inside the commands, so ``edge-sdk --help`` and ``doctor``
start fast and work without torch. Errors a user can fix print one line and exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from edge_sdk import __version__
from edge_sdk.errors import EdgeSDKError, missing_package

__all__ = ["main", "build_parser"]

# The extra a command needs as a whole, named when one of its packages is missing.
NEEDS = {"pretrain": "train", "distill": "train", "eval": "train", "quantize": "export", "export": "export", "bench": "export",
         "pipeline": "export", "bench-runtime": "train"}

EXAMPLES = {
    "pretrain": "edge-sdk pretrain --recipe teacher --fsdd ../shared/data/fsdd/recordings --mnist ../shared/data/mnist --out runs/teacher",
    "distill": "edge-sdk distill --teacher avnet_t.avdigits --student student_s --recipe distill_s --out runs/student_s",
    "eval": "edge-sdk eval avnet_t.avdigits --fsdd ../shared/data/fsdd/recordings --mnist ../shared/data/mnist --json eval.json",
    "calib": "edge-sdk calib --out runs/calib --n 256",
    "quantize": "edge-sdk quantize runs/student_s/model.safetensors --target all --calib runs/calib --out runs/student_s_int8",
    "export": "edge-sdk export student_s --format onnx,executorch --precision fp32,int8 --calib runs/calib --out runs/bundle --zip",
    "bench": "edge-sdk bench avnet_s-demo --json bench.json --md bench.md --png bench.png",
    "run": "edge-sdk run --bundle avnet_s-demo --video synthetic://av-digits?seconds=10 --task localize --headless --stats stats.json",
    "bench-runtime": "edge-sdk bench-runtime --bundle avnet_s-demo --json runtime.json --soak 600",
    "demo": "edge-sdk demo localize --headless --max-seconds 20",
    "calibrate": "edge-sdk calibrate --video cam://0 --audio mic://default --seconds 60 --out runs/calib_live",
    "pipeline": "edge-sdk pipeline --recipe avdigits --out runs/pipeline",
    "info": "edge-sdk info --json",
    "doctor": "edge-sdk doctor",
}


def _number(kind, lo=None, hi=None):
    """An argparse type: ``kind`` (int or float), finite, within [lo, hi] where given."""
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
        if v != v or v in (float("inf"), float("-inf")) or (lo is not None and v < lo) or (hi is not None and v > hi):
            span = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise argparse.ArgumentTypeError(f"{text} is out of range ({span})")
        return v
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


COUNT, NONNEG, PORT = _number(int, 1), _number(float, 0), _number(int, 1, 65535)


def _writable(**paths) -> None:
    """Refuse, before any work, output paths whose folder does not exist (results are written at the end)."""
    for flag, path in paths.items():
        if path and Path(path).is_dir():
            raise EdgeSDKError(f"--{flag.replace('_', '-')} {path} is a folder", "give the path of a file (in that folder or elsewhere)")
        if path and not Path(path).resolve().parent.is_dir():
            raise EdgeSDKError(f"cannot write --{flag.replace('_', '-')} {path}: folder {Path(path).parent} does not exist",
                               f"create it first (mkdir -p {Path(path).parent}) or pick another path")


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fsdd", help="folder of FSDD {digit}_{speaker}_{index}.wav recordings (default: ../shared/data/fsdd/recordings if present)")
    p.add_argument("--mnist", help="folder with MNIST images-idx3-ubyte.gz and labels-idx1-ubyte.gz (default: ../shared/data/mnist if present)")
    p.add_argument("--synthetic", action="store_true", help="use generated shapes and tones instead of real data")


def _resolve_data(args) -> tuple[str | None, str | None]:
    from edge_sdk.data.sources import default_data_dir

    if args.synthetic:
        return None, None
    if bool(args.fsdd) != bool(args.mnist):
        raise EdgeSDKError("--fsdd and --mnist go together", "give both folders, or --synthetic for generated data")
    if args.fsdd:
        return args.fsdd, args.mnist
    root = default_data_dir()
    if root is None:
        logging.getLogger("edge_sdk").warning("no --fsdd/--mnist and no ../shared/data: using generated data (--synthetic)")
        return None, None
    return str(root / "fsdd" / "recordings"), str(root / "mnist")


def _train_overrides(recipe, args):
    if args.max_minutes is not None:
        recipe.train.max_minutes = args.max_minutes
    if args.epochs is not None:
        recipe.train.epochs = args.epochs
    if args.videos:
        recipe.data.kind, recipe.data.video_dir = "video", args.videos
    recipe.validate(f"{args.recipe} with the command-line overrides")
    return recipe


def cmd_pretrain(args) -> int:
    from edge_sdk.recipe import load_recipe
    from edge_sdk.train.trainer import pretrain

    recipe = _train_overrides(load_recipe(args.recipe), args)
    fsdd, mnist = _resolve_data(args)
    report = pretrain(recipe, args.out, fsdd, mnist, device=args.device, resume=args.resume, progress=not args.quiet)
    print(json.dumps(report, indent=2))
    return 0


def cmd_distill(args) -> int:
    from edge_sdk.recipe import load_recipe
    from edge_sdk.spec import get_spec
    from edge_sdk.train.trainer import distill

    recipe = _train_overrides(load_recipe(args.recipe), args)
    if args.teacher:
        recipe.distill.teacher = args.teacher
    if args.student:
        recipe.model.spec = get_spec(args.student).name
    fsdd, mnist = _resolve_data(args)
    report = distill(recipe, args.out, fsdd, mnist, device=args.device, resume=args.resume, progress=not args.quiet)
    print(json.dumps(report, indent=2))
    return 0


def cmd_calib(args) -> int:
    from edge_sdk.quant.calib import write_calib_set
    from edge_sdk.spec import get_spec

    fsdd, mnist = _resolve_data(args)
    out = write_calib_set(args.out, get_spec(args.spec), args.n, fsdd, mnist, seed=args.seed)
    print(f"wrote {args.n} calibration pairs (training speakers and images) to {out}")
    return 0


def cmd_quantize(args) -> int:
    from edge_sdk.eval.evaluate import EvalConfig
    from edge_sdk.export.int8 import TARGETS
    from edge_sdk.export.quantize import format_report, quantize

    fsdd, mnist = _resolve_data(args)
    targets = list(TARGETS) if args.target == "all" else args.target.split(",")
    report = quantize(args.model, targets, args.calib, args.out, method=args.method, teacher=args.teacher or None,
                      fsdd=fsdd, mnist=mnist, eval_cfg=EvalConfig(scenes=args.scenes), threshold=args.threshold,
                      budget=args.budget, qat=args.qat, fp16=not args.no_fp16)
    print(format_report(report))
    print(f"bundle, report.json and report.md in {args.out}")
    return 0


def cmd_export(args) -> int:
    from edge_sdk.eval.evaluate import EvalConfig
    from edge_sdk.export.engine import export_bundle, format_export_report

    fsdd, mnist = _resolve_data(args)
    if args.device:  # the profile picks what the target runs, unless --format/--precision say otherwise
        from edge_sdk.profiles import get_profile

        prof = get_profile(args.device)
        args.format = ",".join(prof.formats) if args.format == "all" else args.format
        args.precision = ",".join(prof.precisions) if args.precision == "all" else args.precision
    report = export_bundle(args.model, args.out, args.format, args.precision, calib=args.calib, method=args.method,
                           fsdd=fsdd, mnist=mnist, eval_cfg=EvalConfig(scenes=args.scenes), opset=args.opset,
                           allow_mismatch=args.allow_mismatch, zip_bundle=args.zip, name=args.name)
    print(format_export_report(report))
    print(f"bundle in {args.out}" + (f" and {report['zip']}" if report.get("zip") else ""))
    return 0


def cmd_bench(args) -> int:
    from edge_sdk.eval.evaluate import EvalConfig
    from edge_sdk.export.bench import bench_bundle, format_bench, plot_bench

    _writable(json=args.json, md=args.md, png=args.png)
    fsdd, mnist = _resolve_data(args)
    report = bench_bundle(args.bundle, teacher=args.teacher or None, batch=args.batch, seconds=args.seconds, fsdd=fsdd, mnist=mnist,
                          eval_cfg=EvalConfig(scenes=args.scenes), only=args.only.split(",") if args.only else None)
    text = format_bench(report)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(report["rows"], indent=2))
    if args.md:
        Path(args.md).write_text(text)
    if args.png:
        plot_bench(report, args.png)
    return 0


class _StatusLine:
    """The live statistics line, redrawn in place on stderr; where stderr is not a terminal
    (a service's journal, a log file) a whole line every :attr:`LOG_EVERY_S` instead. A
    terminal that went away (a closed ssh session: writes fail with EIO) ends it quietly, so
    the run can still write its statistics file."""

    LOG_EVERY_S = 10.0

    def __init__(self):
        self.ok, self.tty, self.next = True, sys.stderr.isatty(), 0.0

    def _write(self, text: str, end: str = "") -> None:
        if self.ok:
            try:
                print(text, end=end, file=sys.stderr, flush=True)
            except OSError:
                self.ok = False

    def __call__(self, stats) -> None:
        if self.tty:
            self._write("\r" + stats.line())
        elif time.monotonic() >= self.next:
            self.next = time.monotonic() + self.LOG_EVERY_S
            self._write(stats.line().strip(), end="\n")

    def end(self) -> None:
        if self.tty:
            self._write("", end="\n")


def cmd_run(args) -> int:
    from edge_sdk.runtime.pipeline import Interrupted, Pipeline
    from edge_sdk.runtime.sinks import JsonlSink, MjpegSink, VideoSink
    from edge_sdk.runtime.sources import media_path

    _writable(events=args.events, out_video=args.out_video, stats=args.stats)
    sinks = []
    if args.events:
        sinks.append(JsonlSink(args.events))
    if args.out_video:
        sinks.append(VideoSink(args.out_video, audio_from=media_path(args.video)))
    if args.mjpeg:
        sinks.append(MjpegSink(args.mjpeg))
        print(f"preview: {sinks[-1].url}", file=sys.stderr)
    task_opts = {"gallery": args.gallery} if args.gallery else {}
    bundle = args.bundle
    if args.device:  # the profile's backend and precision are preferred, where the bundle has them
        from edge_sdk.bundle import read_bundle
        from edge_sdk.profiles import get_profile

        prof, bundle = get_profile(args.device), read_bundle(args.bundle)
        has = {(c.backend, c.precision) for c in bundle.choices()}
        want = (args.backend or prof.backend, args.precision or prof.precision)
        if want in has:
            args.backend, args.precision = want
        else:
            print(f"edge-sdk run: {bundle.folder} has no {want[0]} {want[1]} model (asked with --device {args.device}): "
                  "using the best one it has", file=sys.stderr)
    pipe = Pipeline.from_bundle(bundle, args.video, args.audio, args.task, prefer=args.backend, precision=args.precision,
                                sinks=sinks, task_opts=task_opts, policy=args.policy, audio_hop_ms=args.audio_hop_ms)
    window = None  # opened once the bundle and sources are
    if not args.headless:
        from edge_sdk.apps.window import open_window

        window, why = open_window(f"edge-sdk run {args.task}")
        if window is None:
            print(f"{why}: running headless (use --mjpeg PORT for a live preview)", file=sys.stderr)
    live = None if args.quiet else _StatusLine()
    stopped = None
    try:
        stats = pipe.run(args.max_seconds, on_stats=live, on_result=window.drawer(pipe) if window else None)
    except Interrupted as e:  # a live run ends this way: its statistics are written all the same
        stats, stopped = e.stats, e
    finally:
        if window:
            window.close()
        if live:
            live.end()
    text = json.dumps(stats, indent=2)
    if args.stats:  # written first: the terminal may be gone
        Path(args.stats).write_text(text)
    for err in stats.get("errors", []):
        print(f"edge-sdk run: {err}", file=sys.stderr)
    if args.stats:  # the file has it all; the terminal gets one line
        lat = stats.get("latency_ms", {}).get("capture_to_result") or {}
        print(f"{stats.get('frames_out')} results in {stats.get('seconds')} s ({stats.get('fps')} fps while they came), "
              f"dropped {stats.get('dropped')}, capture-to-result p50 {lat.get('p50', '-')} ms p95 {lat.get('p95', '-')} ms; "
              f"statistics in {args.stats}")
    else:
        print(text)
    if stopped:
        raise stopped
    return 1 if stats.get("errors") else 0  # a source that ended on an error, an output that could not be finished


def cmd_bench_runtime(args) -> int:
    from edge_sdk.runtime.bench import bench_runtime

    _writable(json=args.json)
    if args.teacher and importlib.util.find_spec("torch") is None:
        raise EdgeSDKError("the PyTorch baseline (--teacher) needs torch, which is not installed here",
                           "pip install 'edge_sdk[train]', or --teacher '' to measure the runtime alone")
    fsdd, mnist = _resolve_data(args)
    report = bench_runtime(args.bundle, seconds=args.seconds, prefer=args.backend, precision=args.precision,
                           teacher=args.teacher or None, soak_s=args.soak, fsdd=fsdd, mnist=mnist)
    text = json.dumps(report, indent=2)
    if args.json:
        Path(args.json).write_text(text)
    keys = ("overhead_ratio", "drop_rate", "skew_ms_p95", "speedup_vs_baseline", "speedup_ceiling_decode", "pointing_delta_vs_baseline", "rss_growth")
    print(text if args.verbose else json.dumps({k: report.get(k) for k in keys}, indent=2))
    return 0


def cmd_demo(args) -> int:
    from edge_sdk.apps.demo import run_demo

    live = None if args.quiet else _StatusLine()
    try:
        summary = run_demo(args.name, video=args.video, audio=args.audio, bundle=args.bundle, backend=args.backend,
                           precision=args.precision, headless=args.headless, out=args.out, mjpeg=args.mjpeg,
                           max_seconds=args.max_seconds, gallery=args.gallery, on_stats=live)
    finally:
        if live:
            live.end()
    st = summary["stats"]
    lat = st["latency_ms"].get("capture_to_result", {})
    print(f"demo {summary['demo']} on {summary['backend']}: {st['frames_out']} frames, {st['fps']} fps, dropped {st['dropped']}, "
          f"capture-to-result p50 {lat.get('p50')} ms p95 {lat.get('p95')} ms")
    print("wrote " + ", ".join(summary["files"].values()))
    if st.get("interrupted"):
        raise KeyboardInterrupt
    return 0


def cmd_calibrate(args) -> int:
    from edge_sdk.quant.calib import MIN_CLIPS
    from edge_sdk.runtime.record import record_pairs
    from edge_sdk.spec import get_spec

    res = record_pairs(args.out, get_spec(args.spec), args.video, args.audio, args.seconds, args.every_ms, append=args.append)
    print(json.dumps(res, indent=2))
    print(f"edge-sdk calibrate: wrote {res['kept']} pairs to {res['out']} ({res['total']} in all; {res['silent']} silent windows skipped); "
          f"use it with --calib {res['out']}", file=sys.stderr)
    if res["interrupted"]:
        raise KeyboardInterrupt
    if res["total"] < MIN_CLIPS:
        print(f"edge-sdk calibrate: only {res['total']} pairs; INT8 needs at least {MIN_CLIPS}: record longer (--seconds), more often (--every-ms), "
              "or add more with --append", file=sys.stderr)
        return 2
    return 0


def cmd_pipeline(args) -> int:
    from edge_sdk.toolchain.pipeline import STAGES, load_pipeline, run_pipeline

    fsdd, mnist = _resolve_data(args)
    recipe = load_pipeline(args.recipe)
    recipe.allow_mismatch = recipe.allow_mismatch or args.allow_mismatch
    state = run_pipeline(recipe, args.out, fsdd, mnist, progress=not args.quiet)
    for name in STAGES:
        print(f"{name:<8} {'done' if state.get(name, {}).get('done') else 'not done'}  {state.get(name, {}).get('seconds', '-')} s")
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def _bundle_embedder(path: str, backend: str | None, precision: str | None):
    """The runner ``run`` would load from the bundle on this machine (``--backend`` /
    ``--precision`` narrow the choice), its bundle and its choice."""
    from edge_sdk.bundle import read_bundle
    from edge_sdk.runtime.backends import open_towers
    from edge_sdk.runtime.pipeline import pick_backend

    bundle = read_bundle(path)
    choice = pick_backend(bundle, backend, precision)
    return open_towers(bundle, choice.backend, choice.precision), bundle, choice


def cmd_eval(args) -> int:
    from edge_sdk.bundle import shipped_bundles
    from edge_sdk.eval.evaluate import EvalConfig, evaluate, format_table

    _writable(json=args.json, heatmaps=args.heatmaps)
    fsdd, mnist = _resolve_data(args)
    if fsdd is None:
        print("evaluating on generated scenes (shapes and tones), not FSDD + MNIST: these numbers are not comparable "
              "with the shipped metrics; give --fsdd and --mnist for those", file=sys.stderr)
    if Path(args.model).is_dir() or args.model.endswith(".zip") or (not Path(args.model).exists() and args.model in shipped_bundles()):
        # a bundle: run it through its own runtime
        embedder, bundle, choice = _bundle_embedder(args.model, args.backend, args.precision)
        print(f"evaluating {choice.backend} {choice.precision} of {args.model} (--backend/--precision choose another)", file=sys.stderr)
        cfg = EvalConfig(scenes=args.scenes, k=args.k, seed=args.seed, test_speakers=tuple(args.test_speakers.split(",")) if args.test_speakers else EvalConfig.test_speakers)
        res = evaluate(embedder, bundle.spec, fsdd, mnist, cfg, heatmap_png=args.heatmaps)
        res.update(model=args.model, backend=choice.backend, precision=choice.precision)
        print(format_table({f"{Path(args.model).name} {choice.backend} {choice.precision}": res}))
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2))
        return 0
    if (args.backend or "torch") != "torch" or (args.precision or "fp32") != "fp32":
        raise EdgeSDKError(f"--backend {args.backend or 'torch'} --precision {args.precision or 'fp32'}: {args.model} is a checkpoint, "
                           "which runs in PyTorch FP32 only", f"export it to a bundle first (edge-sdk export {args.model} --out DIR), "
                           "then edge-sdk eval DIR with --backend/--precision")
    from edge_sdk.eval.evaluate import TorchEmbedder, map_offset_of
    from edge_sdk.models.shipped import resolve_model

    model, meta = resolve_model(args.model)
    test_speakers = tuple(args.test_speakers.split(",")) if args.test_speakers else tuple((meta.get("recipe") or {}).get("data", {}).get("test_speakers", ["george"]))
    offset = meta.get("map_offset_px") or map_offset_of(model, fsdd, mnist, test_speakers=test_speakers)
    cfg = EvalConfig(scenes=args.scenes, k=args.k, seed=args.seed, test_speakers=test_speakers)
    res = evaluate(TorchEmbedder(model, map_offset=offset), model.spec, fsdd, mnist, cfg, heatmap_png=args.heatmaps)
    res["model"] = args.model
    print(format_table({Path(args.model).name: res}))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


def format_bundle(bundle) -> str:
    """A bundle's manifest for people: the model, every file with its backend, precision, size and parity."""
    m = bundle.manifest
    lines = [f"bundle {m.get('name', bundle.folder.name)} (schema {m['schema']}) at {bundle.folder}",
             f"spec {bundle.spec.name}: audio {bundle.spec.audio.sample_rate} Hz x {bundle.spec.audio.num_samples} samples, "
             f"image {bundle.spec.image.size}x{bundle.spec.image.size} RGB, embedding {bundle.spec.embed_dim}",
             f"{'file':<26}{'graph':<7}{'backend':<13}{'precision':<10}{'MB':>7}  parity  sha256"]
    for a in m["artifacts"]:
        lines.append(f"{a['file']:<26}{a['tower']:<7}{a['backend']:<13}{a['precision']:<10}{a['bytes'] / 1e6:>7.2f}  "
                     f"{a.get('parity', '-'):<7} {a['sha256'][:12]}")
    for key, metrics in (m.get("metrics") or {}).items():
        lines.append(f"metrics {key}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if k in ("pointing_acc", "a2i_r1", "probe_audio_acc")))
    if m.get("calibration"):
        lines.append(f"calibration: {m['calibration'].get('pairs')} pairs, sha256 {m['calibration'].get('sha256', '')[:16]}")
    lines.append("made with " + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()))
    return "\n".join(lines)


def cmd_info(args) -> int:
    from edge_sdk.bundle import read_bundle, shipped_bundles

    if args.bundle:
        bundle = read_bundle(args.bundle)
        print(json.dumps(bundle.manifest, indent=2) if args.json else format_bundle(bundle))
        return 0
    from edge_sdk.models.shipped import model_table

    rows = model_table()
    bundles = [{"name": n, "path": str(p)} for n, p in shipped_bundles().items()]
    if args.json:
        print(json.dumps({"models": rows, "bundles": bundles}, indent=2))
    else:
        print(f"{'name':<22}{'role':<9}{'params':>10}{'MMACs':>9}  outputs / path")
        for r in rows:
            shapes = ", ".join(f"{k}{v}" for k, v in r["outputs"].items()) if r["outputs"] else "-"
            params, macs = (f"{r['params']:,}", f"{r['macs'] / 1e6:.1f}") if r["macs"] else ("-", "-")
            print(f"{r['name']:<22}{r['role']:<9}{params:>10}{macs:>9}  {shapes}  {r['path'] or '(not shipped)'}")
        if any(r["outputs"] is None for r in rows):
            print("(torch is not installed: output shapes, and the unshipped specs' sizes, need it: pip install 'edge_sdk[train]')")
        for b in bundles:
            print(f"bundle {b['name']:<15} {b['path']}")
    return 0


def cmd_doctor(args) -> int:
    from edge_sdk.toolchain.doctor import format_report, machine_report

    report = machine_report()
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--max-minutes", type=_number(float, 0.1), help="stop (with a checkpoint) after this many minutes")
    p.add_argument("--epochs", type=COUNT, help="override the recipe's [train] epochs")
    p.add_argument("--videos", help="train on a folder of your own clips with sound (mp4, webm, mkv, ...) instead of AV-Digits")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _data_args(p)


def build_parser() -> argparse.ArgumentParser:
    from edge_sdk.quant.calib import MIN_CLIPS
    parser = argparse.ArgumentParser(prog="edge-sdk", description="Audio-visual models from pretraining to live edge apps.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument("--version", action="version", version=f"edge-sdk {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, fn, help_):
        p = sub.add_parser(name, help=help_, description=help_, epilog=f"example:\n  {EXAMPLES[name]}", formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(fn=fn)
        return p

    p = add("pretrain", cmd_pretrain, "Pretrain audio-visual towers with self-supervised objectives.")
    p.add_argument("--recipe", required=True, help="a shipped recipe name (teacher, ...) or a .toml path")
    p.add_argument("--out", required=True, help="run folder: checkpoints, metrics.jsonl, loss.png, model.safetensors")
    _train_args(p)

    p = add("distill", cmd_distill, "Distil a teacher into a small student, without labels.")
    p.add_argument("--teacher", help="teacher checkpoint or shipped model name (default: the recipe's [distill] teacher)")
    p.add_argument("--student", help="student spec: student_s, student_xs or a registered name (default: the recipe's)")
    p.add_argument("--recipe", default="distill_s", help="a shipped recipe name (distill_s, distill_xs) or a .toml path")
    p.add_argument("--out", required=True, help="run folder: checkpoints, metrics.jsonl, loss.png, model.safetensors")
    _train_args(p)

    p = add("calib", cmd_calib, "Write a calibration set of real AV-Digits training pairs (.npz) for INT8.")
    p.add_argument("--out", required=True, help="new folder for the pairs")
    p.add_argument("--n", type=_number(int, MIN_CLIPS), default=256, help=f"pairs to write (default 256; at least {MIN_CLIPS} are needed)")
    p.add_argument("--spec", default="avnet_s.avdigits", help="spec whose preprocessing the pairs follow (all shipped specs share it)")
    p.add_argument("--seed", type=int, default=11)
    _data_args(p)

    p = add("quantize", cmd_quantize, "INT8 PTQ (and QAT when needed) per target, with sensitivity analysis and a report.")
    p.add_argument("model", help="a .safetensors checkpoint or a shipped model name")
    p.add_argument("--target", default="all", help="onnxruntime, xnnpack, tensorrt, a comma list, or all")
    p.add_argument("--calib", required=True, help="calibration folder: .npz pairs (edge-sdk calib) or clips with sound")
    p.add_argument("--method", default="percentile", choices=["minmax", "percentile", "entropy"], help="activation calibration (default percentile)")
    p.add_argument("--out", required=True, help="new bundle folder: model files, manifest.json, report.json, report.md")
    p.add_argument("--teacher", default="avnet_t.avdigits", help="teacher row of the report ('' to skip)")
    p.add_argument("--qat", default="auto", choices=["auto", "always", "off"], help="QAT when PTQ loses more than --budget (default auto)")
    p.add_argument("--budget", type=NONNEG, default=0.01, help="largest allowed INT8 drop on pointing_acc, a2i_r1, probe_audio_acc (default 0.01)")
    p.add_argument("--threshold", type=NONNEG, default=0.02, help="sensitivity above which a layer stays float (1 - cosine, default 0.02)")
    p.add_argument("--scenes", type=COUNT, default=500, help="eval scenes per row (default 500)")
    p.add_argument("--no-fp16", action="store_true", help="skip the FP16 graphs for GPU targets")
    _data_args(p)

    p = add("export", cmd_export, "Export to ONNX, TensorRT and ExecuTorch: a bundle validated on real data.")
    p.add_argument("model", help="a .safetensors checkpoint or a shipped model name (student_s, avnet_s.avdigits, ...)")
    p.add_argument("--format", default="all", help="onnx, tensorrt, executorch, a comma list, or all (default)")
    p.add_argument("--precision", default="all", help="fp32, fp16, int8, a comma list, or all (default)")
    p.add_argument("--calib", help="calibration folder for int8 (edge-sdk calib --out DIR)")
    p.add_argument("--method", default="percentile", choices=["minmax", "percentile", "entropy"], help="int8 activation calibration")
    p.add_argument("--out", required=True, help="new bundle folder: model files, manifest.json, report.json, report.md")
    p.add_argument("--zip", action="store_true", help="also write OUT.zip")
    p.add_argument("--device", help="device profile: jetson-orin, jetson-nano, desktop-gpu, android-arm64, laptop-cpu (picks formats and precisions)")
    p.add_argument("--name", help="bundle name in the manifest (default SPEC-bundle)")
    p.add_argument("--opset", type=int, help="ONNX opset (default 18)")
    p.add_argument("--scenes", type=COUNT, default=500, help="eval scenes per row (default 500)")
    p.add_argument("--allow-mismatch", action="store_true", help="keep a bundle whose parity missed its tolerance (recorded in the manifest)")
    _data_args(p)

    p = add("bench", cmd_bench, "Benchmark every format/precision/backend of a bundle, with parity and metrics, in one table.")
    p.add_argument("bundle", help="a bundle folder or .zip (edge-sdk info lists the shipped ones)")
    p.add_argument("--teacher", default="teacher", help="teacher row, PyTorch eager FP32 ('' to skip)")
    p.add_argument("--batch", type=COUNT, default=32, help="throughput batch (default 32; ExecuTorch programs run batch 1)")
    p.add_argument("--seconds", type=_number(float, 0.1), default=2.0, help="timing per measurement (default 2)")
    p.add_argument("--scenes", type=COUNT, default=500, help="eval scenes per row (default 500)")
    p.add_argument("--only", help="comma list of backend/precision rows, e.g. onnxruntime/int8,torch/fp32")
    p.add_argument("--json", help="write the rows as a JSON list here")
    p.add_argument("--md", help="write the Markdown table here")
    p.add_argument("--png", help="write a throughput chart here")
    _data_args(p)

    p = add("run", cmd_run, "Run a bundle live on video and audio sources (URIs), with a task, stats and sinks.")
    p.add_argument("--bundle", required=True, help="a bundle folder or .zip (edge-sdk info lists the shipped ones)")
    p.add_argument("--video", required=True, help="cam://0, v4l2:///dev/video0, csi://0, http://..., rtsp://..., file:///clip.mp4[?realtime=1], synthetic://av-digits")
    p.add_argument("--audio", help="mic://default, mic://NAME, wav:///x.wav (default: the video source's own audio track)")
    p.add_argument("--task", default="localize", help="localize, sync, retrieval or speaker")
    p.add_argument("--gallery", help="retrieval: a folder of images and/or .wav sounds")
    p.add_argument("--backend", help="onnxruntime, tensorrt, executorch or torch (default: the best this machine runs)")
    p.add_argument("--precision", help="fp32, fp16 or int8 (default: the fastest the bundle has)")
    p.add_argument("--policy", choices=["latest", "block"], help="when inference is slower than capture: drop the oldest frames (latest, default for live sources) or wait (block, default for files)")
    p.add_argument("--device", help="device profile whose backend and precision to prefer (edge-sdk export --device)")
    p.add_argument("--audio-hop-ms", type=NONNEG, default=0.0, help="run the audio tower at most every this many ms (default: every frame)")
    p.add_argument("--headless", action="store_true", help="no window")
    p.add_argument("--events", help="write JSON-lines results and faults here")
    p.add_argument("--out-video", help="write an annotated video here (the file source's audio muxed back)")
    p.add_argument("--mjpeg", type=PORT, help="serve an MJPEG preview on this port")
    p.add_argument("--stats", help="write the final statistics (JSON) here")
    p.add_argument("--max-seconds", type=_number(float, 0.1), help="stop after this many seconds")
    p.add_argument("--quiet", action="store_true", help="no live status line")

    p = add("bench-runtime", cmd_bench_runtime, "Measure the streaming runtime: overhead, drops, skew, speed-up over an OpenCV + PyTorch loop, memory.")
    p.add_argument("--bundle", default="avnet_s-demo", help="bundle folder, .zip or shipped bundle name (default: the shipped demo)")
    p.add_argument("--seconds", type=COUNT, default=60, help="length of the 720p 30 fps test clip (default 60, as the README's "
                   "figures; a shorter clip weighs start-up more: overhead up, speed-up down)")
    p.add_argument("--backend", help="backend to run (default: the best this machine runs)")
    p.add_argument("--precision", help="precision to run (default: the fastest the bundle has)")
    p.add_argument("--teacher", default="teacher", help="the baseline's PyTorch model ('' to skip the baseline)")
    p.add_argument("--soak", type=NONNEG, default=0.0, help="also loop the clip in real time this many seconds and report memory growth")
    p.add_argument("--json", help="write the full report here")
    _data_args(p)

    p = add("demo", cmd_demo, "Live demos: localize, sync, retrieve, speaker (camera + microphone, or generated scenes).")
    p.add_argument("name", choices=["localize", "sync", "retrieve", "speaker"], help="which demo")
    p.add_argument("--video", help="video source URI (default: this machine's camera, else synthetic://av-digits)")
    p.add_argument("--audio", help="audio source URI (default: the microphone, or the video's own sound)")
    p.add_argument("--bundle", help="bundle folder or .zip (default: the shipped demo bundle)")
    p.add_argument("--backend", help="onnxruntime, tensorrt, executorch or torch (default: the best this machine runs)")
    p.add_argument("--precision", help="fp32, fp16 or int8")
    p.add_argument("--gallery", help="retrieve: a folder of images and/or .wav sounds (default: one image per digit)")
    p.add_argument("--headless", action="store_true", help="no window: annotated video, events, stats and a snapshot in --out")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--mjpeg", type=PORT, help="serve an MJPEG preview on this port")
    p.add_argument("--max-seconds", type=_number(float, 0.1), help="stop after this many seconds")
    p.add_argument("--quiet", action="store_true", help="no live status line")

    p = add("calibrate", cmd_calibrate, "Record an INT8 calibration set from this machine's live camera and microphone.")
    p.add_argument("--video", required=True, help="video source URI (cam://0, v4l2:///dev/video0, csi://0, http://..., file://...)")
    p.add_argument("--audio", help="audio source URI (mic://default; default: the video source's own sound)")
    p.add_argument("--seconds", type=_number(float, 1), default=60.0, help="how long to record (default 60)")
    p.add_argument("--every-ms", type=_number(float, 1), default=250.0, help="keep one pair every this many ms (default 250)")
    p.add_argument("--spec", default="avnet_s.avdigits", help="spec whose preprocessing the pairs follow")
    p.add_argument("--out", required=True, help="new folder for the .npz pairs (edge-sdk quantize/export --calib)")
    p.add_argument("--append", action="store_true", help="add to the pairs already in --out (checked against --spec)")

    p = add("pipeline", cmd_pipeline, "Pretrain -> distill -> calibrate -> quantize + export -> bench in one go, resumable, one report.")
    p.add_argument("--recipe", default="avdigits", help="a pipeline recipe: avdigits (the shipped models' schedule), smoke, or a .toml path")
    p.add_argument("--out", required=True, help="run folder: teacher/, student/, calib/, bundle/, bench.*, report.md, state.json")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--allow-mismatch", action="store_true", help="keep a bundle whose parity missed its tolerance (recorded in the manifest)")
    _data_args(p)

    p = add("eval", cmd_eval, "Evaluate a model on speaker- and image-disjoint AV-Digits.")
    p.add_argument("model", help="a .safetensors checkpoint, a shipped model name (edge-sdk info), or a bundle folder or .zip")
    p.add_argument("--backend", help="bundles: onnxruntime, tensorrt, executorch or torch (default: what `run` picks on this machine)")
    p.add_argument("--precision", help="bundles: fp32, fp16 or int8")
    p.add_argument("--scenes", type=COUNT, default=500, help="test scenes (default 500)")
    p.add_argument("--k", type=_number(int, 1, 10), default=3, help="digits per scene (default 3)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--test-speakers", help="comma-separated held-out speakers (default: the model recipe's)")
    p.add_argument("--json", help="write the metrics here")
    p.add_argument("--heatmaps", help="write a PNG of example localization heatmaps here")
    _data_args(p)

    p = add("info", cmd_info, "List registered and shipped models and bundles, or describe one bundle.")
    p.add_argument("bundle", nargs="?", help="a bundle folder or .zip to describe (its manifest)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = add("doctor", cmd_doctor, "Report backends, devices and packages on this machine.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


# SIGTERM (timeout, systemd, docker stop) and SIGHUP (a closed terminal) stop a live command
# as Ctrl-C does: it writes its statistics and closes its video. Exit code 128 + signal. Other
# commands keep the default (SIGTERM kills at once, even inside a long native call), and a
# signal already ignored (nohup) stays ignored.
_STOP_SIGNALS = [s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None]
_LIVE = ("run", "demo", "calibrate")
_received = [signal.SIGINT]


def _stop(signum, frame):
    _received.append(signum)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # On a terminal a log line first clears the live status line it would otherwise be glued to
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format=("\r\x1b[K" if sys.stderr.isatty() else "") + "%(levelname)s %(name)s: %(message)s")
    # Long jobs say which stage they are in (without -v, only their own stage lines)
    stages = {"eval": ("edge_sdk.eval",), "quantize": ("edge_sdk.export.quantize",), "export": ("edge_sdk.export.engine",),
              "bench": ("edge_sdk.export.bench",), "bench-runtime": ("edge_sdk.runtime.bench",),
              "pipeline": ("edge_sdk.toolchain.pipeline", "edge_sdk.export.engine"), "calibrate": ("edge_sdk.runtime.record",), "demo": ("edge_sdk.apps.demo",)}
    for name in stages.get(args.command, ()):
        logging.getLogger(name).setLevel(logging.INFO)
    _received[:] = [signal.SIGINT]
    mine = threading.current_thread() is threading.main_thread()  # only the main thread may set handlers
    watch = [sig for sig in _STOP_SIGNALS if signal.getsignal(sig) is not signal.SIG_IGN] if mine and args.command in _LIVE else []
    before = {sig: signal.signal(sig, _stop) for sig in watch}
    try:
        return args.fn(args)
    except EdgeSDKError as e:
        print(f"edge-sdk {args.command}: error: {e}", file=sys.stderr)
        return 2
    except PermissionError as e:  # e.g. a bundle another user wrote, an output folder of someone else's
        print(f"edge-sdk {args.command}: error: cannot access {e.filename or e}: permission denied -- fix: give this user "
              "read access (and write access for outputs) to it, or copy it to a folder this user owns", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        error = missing_package(e, NEEDS.get(args.command))
        if error is None:
            raise
        print(f"edge-sdk {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):  # the terminal may be gone
            print(f"edge-sdk {args.command}: interrupted", file=sys.stderr)
        return 128 + _received[-1]
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    raise SystemExit(main())
