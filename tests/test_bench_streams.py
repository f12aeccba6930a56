"""``edge-sdk bench-runtime --streams`` and the footprint (issue 23): every figure is measured
in fresh torch-free processes and lands in the JSON; the search for ``max_streams``; the
bench chart's labels stay readable (the speed targets themselves live in the benchmark)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest
from live_media import need

from edge_sdk.bundle import shipped_bundles
from edge_sdk.export.bench_runtime import search_max

pytest.importorskip("av", reason="PyAV is not installed (pip install 'edge_sdk[live]')")


def test_the_search_finds_the_largest_count_served():
    for limit in (64, 10):
        for most in (0, 1, 2, 3, 7, 8, 9, 11, 16, 40, 64, 100):
            asked: list[int] = []

            def served(n: int, most=most, asked=asked) -> bool:
                asked.append(n)
                return n <= most

            assert search_max(served, limit) == min(most, limit)
            assert len(asked) == len(set(asked)) and max(asked) <= limit and len(asked) <= 14  # each count measured once


@pytest.mark.skipif("avnet_s-demo" not in shipped_bundles(), reason="the demo bundle is not shipped in this checkout")
def test_bench_runtime_measures_streams_and_the_footprint_without_torch(tmp_path):
    need("ffmpeg")
    out = tmp_path / "runtime.json"
    cmd = [sys.executable, "-m", "edge_sdk", "bench-runtime", "--only", "streams", "--streams", "2", "--stream-seconds", "3", "--json", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    r = json.loads(out.read_text())
    fp = r["footprint"]
    assert fp["torch_imported"] is False and fp["frames_out"] > 0
    assert 0 < r["cold_start_s"] == fp["cold_start_s"] < 30 and 20 < r["rss_mb"] == fp["rss_mb"] < 2000
    (trial,) = r["streams"]["trials"]
    assert trial["streams"] == 2 and trial["torch_imported"] is False and not trial["errors"]
    assert set(trial["per_stream"]) == {"cam0", "file1"} and all(s["results"] > 0 for s in trial["per_stream"].values())
    assert trial["results"] > 2 * 25 * 3 * 0.5 and 0 <= trial["drop_rate"] <= 1 and trial["p95_ms"] > 0
    shares = r["streams"]["shares"]
    assert set(shares) == {"decode", "preprocess", "inference", "overhead"} and sum(shares.values()) == pytest.approx(1, abs=0.01)
    assert shares["decode"] > 0 and shares["inference"] > 0  # each part measured, not assumed
    assert r["max_streams"] is None and trial["served"] in (True, False)  # a fixed count: no search
    summary = json.loads(run.stdout)
    assert summary["rss_mb"] == r["rss_mb"] and "2" in summary["trials"]


def test_the_bench_chart_has_no_overlapping_axis_labels_and_no_cut_bar_labels(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install 'edge_sdk[train]')")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from edge_sdk.export.bench import bench_figure, plot_bench

    rows = [
        {"model": "avnet_s.x", "backend": b, "precision": p, "status": "ok", "throughput_fps": v, "peak_fraction": f, "pointing_acc": 0.95}
        for b, p, v, f in [
            ("torch", "fp32", 1164, 0.42),
            ("onnxruntime", "fp32", 2340, 0.84),
            ("onnxruntime", "int8", 5422, 0.45),
            ("torch", "fp32", 254, 0.98),
        ]
    ]
    report = {"rows": rows, "model": "avnet_s.x"}
    assert plot_bench(report, tmp_path / "bench.png").stat().st_size > 10_000
    fig = bench_figure(report)
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    ticks = [t for t in ax.get_xticklabels(which="both") if t.get_visible() and t.get_text()]
    lo, hi = ax.get_xlim()
    boxes = sorted((t.get_window_extent(renderer) for t in ticks if lo <= t.get_position()[0] <= hi), key=lambda b: b.x0)
    assert len(boxes) >= 3
    for a, b in itertools.pairwise(boxes):
        assert a.x1 < b.x0, f"x labels overlap: {a} and {b}"
    frame, inner = fig.bbox, ax.get_window_extent(renderer)
    for text in ax.texts:
        box = text.get_window_extent(renderer)
        assert box.x1 <= inner.x1 and box.x1 <= frame.x1, f"bar label {text.get_text()!r} cut at the right edge"
    plt.close(fig)
