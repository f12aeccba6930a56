"""`edge-sdk pipeline`: every stage in one go on generated data, then resumed with nothing left to do."""

import json
import subprocess
import sys
import time

import pytest

from edge_sdk.errors import ConfigError
from edge_sdk.toolchain.workflow import load_pipeline


@pytest.mark.slow  # 1.8 min on a 2-core CPU; CI runs it in its second step
def test_pipeline_runs_every_stage_and_resumes(tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(
        '[pipeline]\nformats = "onnx"\nprecisions = "fp32"\ncalib_pairs = 32\neval_scenes = 20\n'
        "teacher_max_steps = 2\nstudent_max_steps = 2\nbench_seconds = 0.1\n"
    )
    cmd = [sys.executable, "-m", "edge_sdk", "pipeline", "--recipe", str(recipe), "--out", str(tmp_path / "run"), "--synthetic", "--quiet"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert all(state[s]["done"] for s in ("teacher", "student", "calib", "export", "bench"))
    assert state["export"]["result"]["passed"] and "ort_fp32_vs_torch_fp32" in state["bench"]["result"]["ratios"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "| export |" in report and "![Benchmark](bench.png)" in report and "## Export report" in report
    t0 = time.monotonic()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)  # resumed: every stage is done
    assert again.returncode == 0 and time.monotonic() - t0 < 60
    assert json.loads((tmp_path / "run" / "state.json").read_text())["teacher"]["seconds"] == state["teacher"]["seconds"]


def test_pipeline_recipes_are_checked(tmp_path):
    assert load_pipeline("avdigits").student == "distill_s" and load_pipeline("smoke").teacher_max_steps > 0
    bad = tmp_path / "bad.toml"
    bad.write_text('[pipeline]\nteachr = "teacher"\n')
    with pytest.raises(ConfigError, match="unknown \\[pipeline\\] key"):
        load_pipeline(str(bad))
    with pytest.raises(ConfigError, match="not found"):
        load_pipeline("nope")
    assert load_pipeline("smoke").allow_mismatch and not load_pipeline("avdigits").allow_mismatch
    for line, match in (
        ('eval_scenes = "40"', "eval_scenes = '40' is not a int"),
        ("calib_pairs = 8", "calib_pairs = 8 is out of range"),  # INT8 needs 32: fail now, not after training
        ("bench_seconds = 0", "bench_seconds = 0 is out of range"),
        ('allow_mismatch = "yes"', "allow_mismatch = 'yes' is not a bool"),
    ):
        bad.write_text(f"[pipeline]\n{line}\n")
        with pytest.raises(ConfigError, match=match):
            load_pipeline(str(bad))
    bad.write_text("[pipeline]\nbench_seconds = 1\n")  # an int where a float goes is fine
    assert load_pipeline(str(bad)).bench_seconds == 1
