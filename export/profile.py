"""``edge-sdk profile``: where each tower's time goes, op by op, for the ONNX Runtime and ExecuTorch
models of a bundle, FP32 and INT8 side by side on the same real inputs.

ONNX Runtime's own profiler (``SessionOptions.enable_profiling``: one event per node run) and
ExecuTorch's ETDump (a program loaded with ``enable_etdump``: one event per portable operator
and, inside each XNNPACK delegate call, per XNNPACK operator) give the time of every op of
every run; FP32 and INT8 models of a tower run in turns (a shared machine's slow spells fall on
both); each op's median over the runs is summed per op kind and per category, so the INT8
column shows which categories shrank with the INT8 kernels and which did not (quantize and
dequantize, layout changes, float parts that stay float, a delegate's fixed cost): what an
INT8/FP32 ratio far below the machine's peak ratio is made of.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

__all__ = ["CATEGORIES", "op_category", "OrtProfile", "ExecuTorchProfile", "profile_interleaved", "profile_bundle", "format_profile"]

log = logging.getLogger(__name__)

CATEGORIES = ("conv/matmul", "quantize/dequantize", "layout", "elementwise/other", "portable ops", "delegate overhead")

_COMPUTE = re.compile(r"conv|matmul|gemm|fully connected|batch matrix", re.I)
_QUANT = re.compile(r"quantize|dequantize|^convert|qdq", re.I)
_INSTANCE = re.compile(r"\s*#\d+$")  # XNNPACK numbers each op: "Convolution (NHWC, QC8) IGEMM #3"
_LAYOUT = re.compile(r"transpose|reshape|reorder|slice|copy|concat|flatten|squeeze|unsqueeze|expand|gather|split|pad", re.I)


def op_category(kind: str) -> str:
    """The category of one op kind, as :class:`OrtProfile` and :class:`ExecuTorchProfile` name
    them (``QLinearConv``, ``XNNPACK Convolution (NHWC, QC8) IGEMM``, ``portable unfold_copy``)."""
    if kind == "delegate overhead":
        return kind
    if kind.startswith("portable "):
        return "portable ops"
    name = kind.removeprefix("XNNPACK ")
    for category, pattern in (("quantize/dequantize", _QUANT), ("conv/matmul", _COMPUTE), ("layout", _LAYOUT)):
        if pattern.search(name):
            return category
    return "elementwise/other"


class OrtProfile:
    """An ONNX model in an ONNX Runtime session with its profiler on: :meth:`run` it, then
    :meth:`op_times` gives ms per run of each op type (each node's median over the runs after the
    first, summed per op type)."""

    def __init__(self, path: str | Path, name: str, threads: int = 0):
        import os

        import onnxruntime as ort

        self.tmp = tempfile.TemporaryDirectory()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or max(1, (os.cpu_count() or 2) // 2)  # as the runtime's sessions
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(self.tmp.name) / "ort")
        self.session, self.name = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]), name

    def run(self, x: np.ndarray) -> None:
        self.session.run(None, {self.name: x})

    def op_times(self) -> dict[str, float]:
        with self.tmp:
            events = json.loads(Path(self.session.end_profiling()).read_text())
        per_node: dict[tuple[str, str], list[float]] = defaultdict(list)
        for e in events:
            args = e.get("args") or {}
            if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time") and "op_name" in args:
                per_node[(e["name"], args["op_name"])].append(e["dur"] / 1000.0)  # microseconds -> ms
        times: dict[str, float] = defaultdict(float)
        for (_, op), durs in per_node.items():
            times[op] += _median_after_first(durs)
        return dict(times)


class ExecuTorchProfile:
    """An ExecuTorch program loaded with ETDump on: :meth:`run` it, then :meth:`op_times` gives ms
    per run of XNNPACK ops inside delegate calls (``XNNPACK <op>``; numbered instances summed),
    portable kernels (``portable <op>``) and the part of the delegate calls their ops do not
    account for (``delegate overhead``), each a median over the runs after the first."""

    def __init__(self, path: str | Path):
        from executorch.runtime import Runtime

        self.program = Runtime.get().load_program(Path(path), enable_etdump=True)
        self.method = self.program.load_method("forward")

    def run(self, x: np.ndarray) -> None:
        import torch

        self.method.execute([torch.from_numpy(np.ascontiguousarray(x))])

    def op_times(self) -> dict[str, float]:
        import warnings

        from executorch.devtools import Inspector

        with tempfile.TemporaryDirectory() as tmp:
            etdump = Path(tmp) / "run.etdp"
            self.program.write_etdump_result_to_file(str(etdump), None)  # no debug buffer: times only
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "Output Buffer not found": no tensor dumps were asked for
                inspector = Inspector(etdump_path=str(etdump))
        times: dict[str, float] = defaultdict(float)
        delegate_calls = inner = 0.0
        for e in (e for b in inspector.event_blocks if b.name == "Execute" for e in b.events if e.perf_data is not None):
            ms = _median_after_first(e.perf_data.raw)
            if e.name == "DELEGATE_CALL":
                delegate_calls += ms
            elif e.is_delegated_op:
                times["XNNPACK " + _INSTANCE.sub("", e.name)] += ms
                inner += ms
            elif e.name.startswith("native_call_"):
                times[f"portable {e.name.removeprefix('native_call_').split('.')[0]}"] += ms
            # OPERATOR_CALL wraps each native call (the same time again); Method::execute the whole run
        times["delegate overhead"] = max(0.0, delegate_calls - inner)
        return dict(times)


def _median_after_first(values) -> float:
    """The median of a timing series without its first value (the warm-up run), or the only value."""
    return float(np.median(values[1:] if len(values) > 1 else values))


def profile_interleaved(models: dict[str, OrtProfile | ExecuTorchProfile], x: np.ndarray, runs: int) -> dict[str, dict[str, float]]:
    """Op times of several models of one tower (e.g. ``{"fp32": ..., "int8": ...}``) run in turns,
    one run each per round for ``runs`` + 1 rounds (the first a warm-up): a shared machine's
    slow spells fall on every model alike, so their ratio holds when the absolute times drift."""
    for _ in range(runs + 1):
        for m in models.values():
            m.run(x)
    return {key: m.op_times() for key, m in models.items()}


def _summary(ops: dict[str, float]) -> dict:
    cats = dict.fromkeys(CATEGORIES, 0.0)
    for kind, ms in ops.items():
        cats[op_category(kind)] += ms
    return {"total_ms": sum(ops.values()), "categories": cats, "ops": dict(sorted(ops.items(), key=lambda kv: -kv[1]))}


def profile_bundle(bundle: str | Path, runs: int = 50, batch: int = 1, fsdd=None, mnist=None, threads: int = 0) -> dict:
    """Per-op profiles of every ONNX Runtime and ExecuTorch tower of ``bundle`` (FP32 and INT8), on
    real held-out inputs at ``batch`` (ExecuTorch programs take batch 1)."""
    from edge_sdk.bundle import read_bundle
    from edge_sdk.export.machine import machine_facts
    from edge_sdk.export.validate import real_inputs

    b = read_bundle(bundle)
    data = real_inputs(b.contract, fsdd, mnist, n=max(batch, 1))
    feeds = {"audio": ("wave", data["wave"].astype(np.float32)), "image": ("image", data["image"].astype(np.float32))}
    groups: dict[str, dict[str, Path]] = defaultdict(dict)  # backend -> precision -> choice files
    for choice in b.choices():
        if choice.backend in ("onnxruntime", "executorch") and choice.precision in ("fp32", "int8"):
            groups[choice.backend][choice.precision] = choice.files
    rows = []
    for backend, by_precision in groups.items():
        for tower in ("audio", "image"):
            name, x = feeds[tower]
            n = 1 if backend == "executorch" else batch
            log.info("profile: %s %s tower, %s in turns, batch %d, %d runs", backend, tower, " and ".join(by_precision), n, runs)
            models = {
                p: ExecuTorchProfile(files[tower]) if backend == "executorch" else OrtProfile(files[tower], name, threads)
                for p, files in by_precision.items()
            }
            for precision, ops in profile_interleaved(models, x[:n], runs).items():
                rows.append({"backend": backend, "precision": precision, "tower": tower, "batch": n, **_summary(ops)})
    return {"bundle": str(b.folder), "runs": runs, "machine": machine_facts(), "rows": rows}


def format_profile(report: dict, top: int = 8) -> str:
    """Markdown: per backend and tower, each category's ms per run in FP32 and INT8 and their
    ratio; then the costliest op kinds of each INT8 tower."""
    by = {(r["backend"], r["tower"], r["precision"]): r for r in report["rows"]}
    lines = [f"# edge-sdk profile: {Path(report['bundle']).name} ({report['runs']} runs, median per op)", ""]
    for backend, tower in dict.fromkeys((r["backend"], r["tower"]) for r in report["rows"]):
        fp, q = by.get((backend, tower, "fp32")), by.get((backend, tower, "int8"))
        batch = (fp or q)["batch"]
        lines += [f"## {backend} {tower} tower, batch {batch}", "", "| category | FP32 ms | INT8 ms | FP32/INT8 |", "|---|---:|---:|---:|"]
        for cat in (*CATEGORIES, "total"):
            a = fp["total_ms"] if fp and cat == "total" else (fp["categories"][cat] if fp else None)
            b = q["total_ms"] if q and cat == "total" else (q["categories"][cat] if q else None)
            if not a and not b:
                continue
            ratio = f"{a / b:.2f}x" if a and b else "-"
            lines.append(f"| {'**total**' if cat == 'total' else cat} | {_ms(a)} | {_ms(b)} | {ratio} |")
        if q:
            costly = ", ".join(f"{k} {v:.3f}" for k, v in list(q["ops"].items())[:top])
            lines += ["", f"INT8's costliest op kinds (ms): {costly}."]
        lines.append("")
    return "\n".join(lines)


def _ms(v) -> str:
    return "-" if v is None else f"{v:.3f}"
