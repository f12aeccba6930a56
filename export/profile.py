"""``edge-sdk profile``: where each tower's time goes, op by op, for the ONNX Runtime and ExecuTorch
models of a bundle, FP32 and INT8 side by side on the same real inputs.

ONNX Runtime's own profiler (``SessionOptions.enable_profiling``: one event per node run) and
ExecuTorch's ETDump (a program loaded with ``enable_etdump``: one event per portable operator
and, inside each XNNPACK delegate call, per XNNPACK operator) give the time of every op of
every run; each op's median over the runs is summed per op kind and per category, so the INT8
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

__all__ = ["CATEGORIES", "op_category", "ort_op_times", "executorch_op_times", "profile_bundle", "format_profile"]

log = logging.getLogger(__name__)

CATEGORIES = ("conv/matmul", "quantize/dequantize", "layout", "elementwise/other", "portable ops", "delegate overhead")

_COMPUTE = re.compile(r"conv|matmul|gemm|fully connected|batch matrix", re.I)
_QUANT = re.compile(r"quantize|dequantize|^convert|qdq", re.I)
_LAYOUT = re.compile(r"transpose|reshape|reorder|slice|copy|concat|flatten|squeeze|unsqueeze|expand|gather|split|pad", re.I)


def op_category(kind: str) -> str:
    """The category of one op kind, as :func:`ort_op_times` and :func:`executorch_op_times` name
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


def ort_op_times(path: str | Path, name: str, x: np.ndarray, runs: int, threads: int = 0) -> dict[str, float]:
    """Milliseconds per run of each op type of an ONNX model on ``x`` (its input ``name``), from
    ONNX Runtime's profiler: each node's median over ``runs`` runs (after one warm-up), summed per op type."""
    import os

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or max(1, (os.cpu_count() or 2) // 2)  # as the runtime's sessions
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "ort")
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        for _ in range(runs + 1):
            sess.run(None, {name: x})
        events = json.loads(Path(sess.end_profiling()).read_text())
    per_node: dict[tuple[str, str], list[float]] = defaultdict(list)
    for e in events:
        args = e.get("args") or {}
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time") and "op_name" in args:
            per_node[(e["name"], args["op_name"])].append(e["dur"] / 1000.0)  # microseconds -> ms
    times: dict[str, float] = defaultdict(float)
    for (_, op), durs in per_node.items():
        times[op] += float(np.median(durs[1:] if len(durs) > 1 else durs))  # the first run is the warm-up
    return dict(times)


def executorch_op_times(path: str | Path, x: np.ndarray, runs: int) -> dict[str, float]:
    """Milliseconds per run of each op kind of an ExecuTorch program on ``x``, from its ETDump:
    XNNPACK ops inside delegate calls (``XNNPACK <op>``; numbered instances summed), portable
    kernels (``portable <op>``) and the part of each delegate call its ops do not account for
    (``delegate overhead``). Medians over ``runs`` runs after one warm-up."""
    import torch
    from executorch.devtools import Inspector
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(Path(path), enable_etdump=True)
    method = program.load_method("forward")
    inp = [torch.from_numpy(np.ascontiguousarray(x))]
    for _ in range(runs + 1):
        method.execute(inp)
    with tempfile.TemporaryDirectory() as tmp:
        etdump = Path(tmp) / "run.etdp"
        program.write_etdump_result_to_file(str(etdump), None)  # no debug buffer: times only
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Output Buffer not found": no tensor dumps were asked for
            inspector = Inspector(etdump_path=str(etdump))
    times: dict[str, float] = defaultdict(float)
    delegate_calls = inner = 0.0
    for block in inspector.event_blocks:
        if block.name != "Execute":
            continue
        for e in block.events:
            if e.perf_data is None:
                continue
            ms = float(np.median(e.perf_data.raw[1:] if len(e.perf_data.raw) > 1 else e.perf_data.raw))
            if e.name == "DELEGATE_CALL":
                delegate_calls += ms
            elif e.is_delegated_op:
                kind = re.sub(r"\s*#\d+$", "", e.name)
                times[f"XNNPACK {kind}"] += ms
                inner += ms
            elif e.name.startswith("native_call_"):
                times[f"portable {e.name.removeprefix('native_call_').split('.')[0]}"] += ms
            # OPERATOR_CALL wraps each native call (the same time again); Method::execute the whole run
    times["delegate overhead"] = max(0.0, delegate_calls - inner)
    return dict(times)


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
    rows = []
    for choice in b.choices():
        if choice.backend not in ("onnxruntime", "executorch") or choice.precision not in ("fp32", "int8"):
            continue
        for tower in ("audio", "image"):
            name, x = feeds[tower]
            n = 1 if choice.backend == "executorch" else batch
            log.info("profile: %s %s %s tower, batch %d, %d runs", choice.backend, choice.precision, tower, n, runs)
            if choice.backend == "onnxruntime":
                ops = ort_op_times(choice.files[tower], name, x[:n], runs, threads)
            else:
                ops = executorch_op_times(choice.files[tower], x[:1], runs)
            rows.append({"backend": choice.backend, "precision": choice.precision, "tower": tower, "batch": n, **_summary(ops)})
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
