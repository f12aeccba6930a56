"""``edge-sdk bench-runtime`` on a short clip: every number the issue asks for is there and
measured, not assumed (the full 60 s run and its figures are in docs/reports)."""

import json
import subprocess
import sys

import pytest

from edge_sdk.bundle import shipped_bundles

pytestmark = pytest.mark.skipif("avnet_s-demo" not in shipped_bundles(), reason="the demo bundle is not shipped in this checkout")


@pytest.mark.slow  # 37 s on 2 cores (CI's second step); test_bench_streams runs bench-runtime by default
def test_bench_runtime_reports_overhead_drops_skew_and_speedups(tmp_path, fsdd, mnist):
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_sdk",
            "bench-runtime",
            "--bundle",
            str(shipped_bundles()["avnet_s-demo"]),
            "--seconds",
            "4",
            "--soak",
            "4",
            "--fsdd",
            str(fsdd),
            "--mnist",
            str(mnist),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    r = json.loads(out.read_text())
    rt = r["realtime"]["stats"]
    assert rt["frames_in"] >= 100 and r["drop_rate"] <= 0.05  # 4 s at 30 fps, paced
    # overhead_ratio: the runtime's time over the model-only time, each measured once: about 1 and
    # more, but a shared VM's timing noise gave 0.947 in one run (stop 27); far below 1 would be a
    # mismeasured model-only time. Its target (1.2) lives in the benchmark.
    assert 0.8 <= r["overhead_ratio"] < 5.0 and 0.0 <= r["skew_ms_p95"] <= 34.0  # skew within a frame
    assert r["offline"]["dropped"] == 0 and r["offline"]["frames"] == r["baseline"]["frames"]
    # Decoding alone bounds any offline pipeline; the pipeline does more than decode.
    assert r["decode_only"]["fps"] > r["offline"]["fps"] * 0.9
    assert r["speedup_ceiling_decode"] == pytest.approx(r["decode_only"]["fps"] / r["baseline"]["fps"], rel=0.01)
    assert r["speedup_vs_baseline"] > 1.0 and abs(r["pointing_delta_vs_baseline"]) < 0.5
    assert "rss_growth" in r and r["soak"]["frames_out"] > 0
    assert r["clip"]["scored_scenes"] == 2  # scenes start every 2 s; each is scored 0.75-1.25 s in
    assert r["machine"]["cores"] >= 1 and "int8_isa" in r["machine"]  # the machine the figures came from
