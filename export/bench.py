"""``edge-sdk bench``: every format, precision and backend of a bundle in one table, measured
side by side in one run, with parity.

Rows: each runnable backend/precision of the bundle, plus PyTorch eager FP32 of the same
model (the bundle's weights) and of the teacher, so every speed-up is a ratio measured in
the same process on the same real inputs. Per row: status, size, latency p50/p95 at batch
1 (audio tower, vision tower, both), throughput (pairs/s at the backend's batch), every
task metric of ``edge-sdk eval`` through that backend, the parity verdict recorded at
export, MACs per pair and the achieved GMAC/s against this machine's own peak, measured in
the same run by a large FP32 and INT8 (u8 x s8) matrix product in ONNX Runtime.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_sdk.eval.evaluate import METRIC_KEYS, EvalConfig, evaluate
from edge_sdk.export.machine import format_machine, machine_facts
from edge_sdk.export.validate import real_inputs

__all__ = ["measure_peak", "latency", "throughput", "bench_bundle", "format_bench", "plot_bench", "bench_figure"]

log = logging.getLogger(__name__)


def _timed(fn, seconds: float, min_runs: int = 20) -> np.ndarray:
    fn()  # warm-up: first-run allocations and kernel selection
    times, t_end = [], time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(times) < min_runs:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return np.array(times)


def measure_peak(n: int = 1024, seconds: float = 1.0) -> dict[str, float]:
    """This machine's GMAC/s for an n^3 FP32 MatMul and an INT8 (u8 x s8 -> s32) MatMulInteger in ONNX Runtime."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    out = {}
    for kind, op, ta, tb, tout in (
        ("fp32", "MatMul", TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.FLOAT),
        ("int8", "MatMulInteger", TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32),
    ):
        graph = helper.make_graph(
            [helper.make_node(op, ["a", "b"], ["y"])],
            kind,
            [helper.make_tensor_value_info("a", ta, [n, n]), helper.make_tensor_value_info("b", tb, [n, n])],
            [helper.make_tensor_value_info("y", tout, [n, n])],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        if kind == "fp32":
            feed = {"a": rng.standard_normal((n, n), np.float32), "b": rng.standard_normal((n, n), np.float32)}
        else:
            feed = {"a": rng.integers(0, 255, (n, n), np.uint8), "b": rng.integers(-127, 127, (n, n), np.int8)}
        onnx.checker.check_model(model)
        t = _timed(lambda sess=sess, feed=feed: sess.run(None, feed), seconds, 5)
        out[kind] = round(n**3 / float(np.min(t)) / 1e9, 1)
    return out


def latency(runner, inputs: dict, seconds: float) -> dict[str, tuple[float, float]]:
    """p50/p95 milliseconds at batch 1: audio tower, vision tower, and both (side by side where the backend can)."""
    wave, image = inputs["wave"][:1], inputs["image"][:1]
    parts = {"audio": lambda: runner.embed_audio(wave), "image": lambda: runner.embed_image(image), "both": lambda: runner.embed_both(wave, image)}
    res = {}
    for name, fn in parts.items():
        t = _timed(fn, seconds) * 1e3
        res[name] = (round(float(np.percentile(t, 50)), 3), round(float(np.percentile(t, 95)), 3))
    return res


def throughput(runner, inputs: dict, batch: int, seconds: float) -> float:
    """Audio-image pairs per second through both towers at ``batch``."""
    reps = -(-batch // len(inputs["wave"]))
    wave, image = np.tile(inputs["wave"], (reps, 1))[:batch], np.tile(inputs["image"], (reps, 1, 1, 1))[:batch]
    t = _timed(lambda: runner.embed_both(wave, image), seconds, 5)
    return round(batch / float(np.median(t)), 1)


@dataclass
class _Run:
    """What every row of one benchmark run shares."""

    inputs: dict
    cfg: EvalConfig
    fsdd: object
    mnist: object
    peak: dict
    batch: int
    seconds: float
    tasks: bool  # whether the AV-Digits task metrics mean something for this model


def _row(name: str, key: tuple[str, str, str], runner, run: _Run, macs: int, size_mb: float, parity: str) -> dict:
    backend, precision, fmt = key
    b = getattr(runner, "batch_size", run.batch)
    b = min(run.batch, b) if b else run.batch
    lat = latency(runner, run.inputs, run.seconds)
    fps = throughput(runner, run.inputs, b, run.seconds)
    metrics = evaluate(runner, run.fsdd, run.mnist, run.cfg) if run.tasks else {}
    gmacs, ref = macs * fps / 1e9, run.peak["int8" if precision == "int8" else "fp32"]
    return {"model": name, "format": fmt, "backend": backend, "precision": precision, "status": "ok", "size_mb": size_mb,
            "latency_p50_ms": lat["both"][0], "latency_p95_ms": lat["both"][1], "audio_p50_ms": lat["audio"][0],
            "audio_p95_ms": lat["audio"][1], "image_p50_ms": lat["image"][0], "image_p95_ms": lat["image"][1],
            "throughput_fps": fps, "batch": b, "macs": macs, "gmacs": round(gmacs, 2), "peak_gmacs": ref,
            "peak_fraction": round(gmacs / ref, 4), "parity": parity, **{k: metrics[k] for k in METRIC_KEYS if k in metrics}}  # fmt: skip


def bench_bundle(
    path: str | Path,
    *,
    teacher: str | None = "teacher",
    batch: int = 32,
    seconds: float = 2.0,
    fsdd=None,
    mnist=None,
    eval_cfg: EvalConfig | None = None,
    only: list[str] | None = None,
    videos=None,
    trusted: tuple[str, ...] = (),
) -> dict:
    """Benchmark every backend/precision of a bundle (``only``: ``backend/precision`` keys) plus, for our
    models, the eager teacher; inputs from ``videos`` (a folder of the user's clips) where given.
    ``trusted`` names model factories the ``torch`` backend may import (a user's model)."""
    from edge_sdk.bundle import read_bundle
    from edge_sdk.errors import EdgeSDKError
    from edge_sdk.runtime.backends import open_towers

    bundle = read_bundle(path)
    keys = [f"{c.backend}/{c.precision}" for c in bundle.choices()]
    if only and (unknown := [k for k in only if k not in keys]):
        raise EdgeSDKError(f"--only {','.join(unknown)}: not in {bundle.folder} (backend/precision)", f"use some of: {', '.join(keys)}")
    cfg, name = eval_cfg or EvalConfig(), bundle.contract.name
    tasks = bundle.model.get("kind") == "registry"
    inputs = real_inputs(bundle.contract, fsdd, mnist, 64, test_speakers=cfg.test_speakers, videos=videos)
    log.info("bench: measuring this machine's peak (FP32 and INT8 matrix products)")
    run = _Run(inputs, cfg, fsdd, mnist, measure_peak(), batch, seconds, tasks)
    macs, parity, rows = bundle.manifest.get("macs") or 0, bundle.manifest.get("parity") or {}, []
    for c in bundle.choices():
        key = f"{c.backend}/{c.precision}"
        if only and key not in only:
            continue
        size = round(sum(p.stat().st_size for g, p in c.files.items() if g != "av" or len(c.files) == 1) / 1e6, 3)
        log.info("bench: %s", key)
        try:
            runner = open_towers(bundle, c.backend, c.precision, batch_size=batch, trusted=trusted)
        except EdgeSDKError as e:
            rows.append({"model": name, "format": c.format, "backend": c.backend, "precision": c.precision, "size_mb": size,
                         "status": f"skipped: {e.problem}", "parity": parity.get(key, {}).get("status", "-")})  # fmt: skip
            continue
        rows.append(_row(name, (c.backend, c.precision, c.format), runner, run, macs, size, parity.get(key, {}).get("status", "-")))
    if teacher and tasks:
        rows.append(_teacher_row(teacher, run))
    return {"bundle": str(bundle.folder), "model": name, "machine": machine_facts(), "peak_gmacs": run.peak, "batch": batch,
            "eval_scenes": cfg.scenes if tasks else None, "inputs": inputs["source"], "rows": rows, "ratios": ratios(rows, name),
            "notes": int8_notes(rows, name)}  # fmt: skip


def _teacher_row(teacher: str, run: _Run) -> dict:
    from edge_sdk.errors import ModelFileError
    from edge_sdk.models.shipped import count_macs, model_path, resolve_model
    from edge_sdk.models.torch_runner import TorchTowers

    try:
        model, _ = resolve_model(teacher)
    except ModelFileError as e:
        return {"model": teacher, "format": "safetensors", "backend": "torch", "precision": "fp32", "status": f"skipped: {e.problem}"}
    log.info("bench: teacher %s (PyTorch eager FP32)", teacher)
    size = round(model_path(teacher).stat().st_size / 1e6, 3)
    row = _row(
        model.contract.name, ("torch", "fp32", "safetensors"), TorchTowers(model, batch_size=run.batch), run, count_macs(model), size, "reference"
    )
    return {**row, "role": "teacher"}


def ratios(rows: list[dict], model: str) -> dict[str, float]:
    """Throughput ratios of the issue's targets, from rows measured in this run."""
    fps = {(r["model"], r["backend"], r["precision"]): r["throughput_fps"] for r in rows if r.get("status") == "ok"}
    teacher = next((r["throughput_fps"] for r in rows if r.get("role") == "teacher" and r.get("status") == "ok"), None)
    out = {}
    pairs = {
        "ort_int8_vs_ort_fp32": (("onnxruntime", "int8"), ("onnxruntime", "fp32")),
        "executorch_int8_vs_executorch_fp32": (("executorch", "int8"), ("executorch", "fp32")),
        "executorch_int8_vs_torch_fp32": (("executorch", "int8"), ("torch", "fp32")),
        "ort_fp32_vs_torch_fp32": (("onnxruntime", "fp32"), ("torch", "fp32")),
    }
    for name, (a, b) in pairs.items():
        if (model, *a) in fps and (model, *b) in fps:
            out[name] = round(fps[(model, *a)] / fps[(model, *b)], 2)
    if teacher and (model, "onnxruntime", "int8") in fps:
        out["ort_int8_vs_teacher_torch_fp32"] = round(fps[(model, "onnxruntime", "int8")] / teacher, 1)
    lat = {(r["model"], r["backend"], r["precision"]): r["latency_p50_ms"] for r in rows if r.get("status") == "ok"}
    if (model, "executorch", "int8") in lat and (model, "torch", "fp32") in lat:
        out["executorch_int8_vs_torch_fp32_latency_b1"] = round(lat[(model, "torch", "fp32")] / lat[(model, "executorch", "int8")], 2)
    return out


def int8_notes(rows: list[dict], model: str) -> list[str]:
    """Where INT8 is not faster than FP32 of the same backend in this run, said plainly."""
    fps = {(r["backend"], r["precision"]): r["throughput_fps"] for r in rows if r.get("status") == "ok" and r["model"] == model}
    notes = []
    for (backend, precision), int8 in sorted(fps.items()):
        fp32 = fps.get((backend, "fp32"))
        if precision == "int8" and fp32 and int8 <= fp32:
            notes.append(f"{backend} INT8 is not faster than FP32 here ({int8:.0f} vs {fp32:.0f} pairs/s, {int8 / fp32:.2f}x): "
                         "the float layers, quantize/dequantize steps and layout changes cost more than INT8 saves; "
                         "the export report says which layers run INT8")  # fmt: skip
    return notes


# the task metrics in the Markdown table (the JSON has all of them): localization, its adaptive
# cIoU and cIoU AUC over thresholds, retrieval, the audio probe, and synchrony with its offset error
TABLE_METRICS = ("pointing_acc", "ciou_adaptive", "auc", "a2i_r1", "probe_audio_acc", "sync_acc", "offset_mae_ms")


def _shown(path: str) -> str:
    """A path as the reader typed it: relative to the working folder where it lies under it."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def format_bench(report: dict) -> str:
    ok = [r for r in report["rows"] if r.get("status") == "ok"]
    keys = tuple(k for k in TABLE_METRICS if ok and all(k in r for r in ok)) if report.get("eval_scenes") else ()
    metrics = f"metrics on {report['eval_scenes']} held-out scenes" if keys else "no task metrics (not an AV-Digits model)"
    lines = [f"# Benchmark: {report['model']} ({_shown(report['bundle'])})", "",
             f"Peak of this machine (ONNX Runtime, 1024^3 matrix product): FP32 {report['peak_gmacs']['fp32']} GMAC/s, "
             f"INT8 {report['peak_gmacs']['int8']} GMAC/s. Latency at batch 1; throughput at batch {report['batch']} "
             f"(1 for ExecuTorch programs); inputs from {report.get('inputs', '-')}; {metrics}.", "",
             *([f"Machine: {format_machine(report['machine'])}.", ""] if report.get("machine") else []),
             "| model | format | backend | precision | status | size MB | audio p50/p95 ms | image p50/p95 ms | both p50/p95 ms | "
             "pairs/s | MMACs | GMAC/s (% peak) | parity |" + "".join(f" {k} |" for k in keys),
             "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|" + "---:|" * len(keys)]  # fmt: skip
    for r in report["rows"]:
        head = f"| {r['model']} | {r['format']} | {r['backend']} | {r['precision']} |"
        if r.get("status") != "ok":
            lines.append(f"{head} {r['status']} | {r.get('size_mb', '')} |" + " |" * (7 + len(keys)))
            continue
        lines.append(f"{head} ok | {r['size_mb']:.2f} | {r['audio_p50_ms']:.2f}/{r['audio_p95_ms']:.2f} | "
                     f"{r['image_p50_ms']:.2f}/{r['image_p95_ms']:.2f} | {r['latency_p50_ms']:.2f}/{r['latency_p95_ms']:.2f} | "
                     f"{r['throughput_fps']:.0f} | {r['macs'] / 1e6:.1f} | {r['gmacs']:.1f} ({100 * r['peak_fraction']:.1f}%) | "
                     f"{r['parity']} |" + "".join(f" {r[k]:{'.0f' if k.endswith('_ms') else '.3f'}} |" for k in keys))  # fmt: skip
    if report["ratios"]:
        lines += ["", "Ratios (same run): " + ", ".join(f"{k} {v}x" for k, v in report["ratios"].items())]
    lines += [f"\n- {n}" for n in report.get("notes", [])]
    return "\n".join(lines) + "\n"


def plot_bench(report: dict, png: str | Path) -> Path:
    """The chart of :func:`bench_figure`, written to ``png``."""
    import matplotlib.pyplot as plt

    fig = bench_figure(report)
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return Path(png)


def bench_figure(report: dict):
    """Throughput per row (log scale), coloured by precision, with each row's share of peak.

    Readable at any spread of values: the axis is labelled at 1, 2 and 5 times each power of
    ten, in plain numbers (matplotlib's default labels every minor tick of a short log axis
    as ``2x10^3``, and they ran into each other), and the axis reaches far enough right for
    every bar's label to fit inside it (they were cut off at the figure's edge)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    rows = [r for r in report["rows"] if r.get("status") == "ok"]
    labels = [f"{r['model'].split('.')[0]} {r['backend']} {r['precision']}" for r in rows]
    colors = {"fp32": "#4c72b0", "fp16": "#55a868", "int8": "#c44e52"}
    values = [r["throughput_fps"] for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.4))
    ax.barh(labels, values, color=[colors.get(r["precision"], "#8c8c8c") for r in rows])
    texts = []
    for i, r in enumerate(rows):
        task = f", pointing {r['pointing_acc']:.2f}" if "pointing_acc" in r else ""
        texts.append(
            ax.text(r["throughput_fps"], i, f" {r['throughput_fps']:.0f}/s, {100 * r['peak_fraction']:.0f}% peak{task}", va="center", fontsize=7)
        )
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("audio-image pairs per second (log)")
    ax.set_title(f"edge-sdk bench: {report['model']}")
    ax.invert_yaxis()
    fig.tight_layout()
    for _ in range(2 if values else 0):  # the labels fit the axes, then the axes the figure, then again
        _fit_labels(fig, ax, texts, values)
        fig.tight_layout()
    return fig


def _fit_labels(fig, ax, texts, values) -> None:
    """Widen the log x axis (bars start at a third of the smallest value) so that each label,
    drawn right of its bar's end, ends inside the axes."""
    lo = min(values) / 3
    fig.canvas.draw()
    width = ax.get_window_extent().width
    hi = max(values) * 1.2
    for text, v in zip(texts, values):
        room = 0.98 - text.get_window_extent().width / width  # the axes fraction the bar may reach
        if room > 0.05:
            hi = max(hi, 10 ** (np.log10(lo) + (np.log10(v) - np.log10(lo)) / room))
    ax.set_xlim(lo, hi)
