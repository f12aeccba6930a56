"""The CLI on real faulty outputs (issue 21): a read-only disk, a file where a folder is expected,
a disk that fills, and flags that used to lie (an opset out of range, NaN in a URI, --resume
without a run, a benchmark or a recording that measured nothing). Each ends in one line and a
non-zero exit, with nothing half-written left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import pytest
from fault_fs import listing, tmpfs

from edge_sdk.bundle import shipped_bundles

DEMO = shipped_bundles().get("avnet_s-demo")
pytestmark = pytest.mark.skipif(DEMO is None, reason="the shipped demo bundle is absent")
SYN = "synthetic://av-digits?seconds=1"
TINY = """
name = "tiny"
[model]
spec = "avnet_xs.avdigits"
[data]
k = 2
k_curriculum = [1]
scenes_per_epoch = 16
[train]
epochs = 1
batch_size = 8
lr = 1e-3
warmup_steps = 1
checkpoint_every = 1
log_every = 1
[objectives.infonce]
"""


def _run(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "edge_sdk", *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def _line(out: subprocess.CompletedProcess, code: int = 2) -> str:
    """The one error line of a command that failed as it should (its warnings aside)."""
    errors = [x for x in out.stderr.strip().splitlines() if not x.startswith(("WARNING ", "INFO "))]
    assert out.returncode == code and "Traceback" not in out.stderr and len(errors) == 1, out.stderr[-3000:]
    return errors[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("recipe") / "tiny.toml"
    p.write_text(TINY)
    return p


def test_read_only_outputs_are_refused_in_one_line(tmp_path, tiny):
    with tmpfs(tmp_path / "ro", "64k", read_only=True) as ro:
        commands = {
            "run --stats": ["run", "--bundle", DEMO, "--video", SYN, "--headless", "--quiet", "--stats", ro / "s.json"],
            "run --events": ["run", "--bundle", DEMO, "--video", SYN, "--headless", "--quiet", "--events", ro / "e.jsonl"],
            "pretrain --out": ["pretrain", "--recipe", tiny, "--synthetic", "--quiet", "--out", ro / "r"],
            "demo --out": ["demo", "localize", "--video", SYN, "--headless", "--quiet", "--out", ro / "d"],
            "eval --json": ["eval", DEMO, "--scenes", "8", "--synthetic", "--json", ro / "e.json"],
            "calib --out": ["calib", "--n", "32", "--synthetic", "--out", ro / "c"],
            "calib --video --out": ["calib", "--video", SYN, "--out", ro / "c"],
        }
        for what, args in commands.items():
            line = _line(_run(*args))
            assert "read-only file system" in line and str(ro) in line, (what, line)
        assert listing(ro) == []


def test_a_file_where_a_folder_is_expected_is_named(tmp_path, tiny):
    f = tmp_path / "afile"
    f.write_text("x")
    for args in (
        ["pretrain", "--recipe", tiny, "--synthetic", "--quiet", "--out", f],
        ["demo", "localize", "--video", SYN, "--headless", "--quiet", "--out", f],
        ["calib", "--n", "32", "--synthetic", "--out", f],
        ["calib", "--video", SYN, "--out", f],
    ):
        assert _line(_run(*args)).endswith(f"--out {f} is a file, not a folder -- fix: give a folder (a new one is created), or move that file away")
    assert f.read_text() == "x"


def test_a_disk_that_fills_stops_each_command_in_one_line_and_leaves_no_part(tmp_path, tiny):
    with tmpfs(tmp_path / "t", "256k") as disk:
        line = _line(_run("pretrain", "--recipe", tiny, "--synthetic", "--quiet", "--out", disk / "r"))
        assert "no space left on device" in line
        assert not [p for p in listing(disk) if ".tmp" in p], listing(disk)  # what is there is whole: resumable
    with tmpfs(tmp_path / "t", "1m") as disk:
        assert "cannot write --out" in _line(_run("calib", "--n", "64", "--synthetic", "--out", disk / "c"))
        assert listing(disk) == []  # the half-written set is removed, and its folder
    with tmpfs(tmp_path / "t", "32k") as disk:
        out = _run("demo", "localize", "--video", "synthetic://av-digits?seconds=4", "--headless", "--quiet", "--out", disk / "d")
        assert out.returncode == 2 and "Traceback" not in out.stderr and "no space left on device" in out.stderr.splitlines()[-1]
        assert not [p for p in listing(disk) if p.endswith((".tmp", ".mp4", ".png", ".json"))], listing(disk)  # only whole files
    with tmpfs(tmp_path / "t", "8k") as disk:
        out = _run(
            "run",
            "--bundle",
            DEMO,
            "--video",
            "synthetic://av-digits?seconds=3",
            "--headless",
            "--quiet",
            "--events",
            disk / "e.jsonl",
            "--stats",
            disk / "s.json",
        )
        assert "no space left on device" in _line(out) and "s.json" not in listing(disk)


def test_flags_that_used_to_lie_now_refuse(tmp_path, tiny):
    out = _run("export", "avnet_s.avdigits", "--format", "onnx", "--out", tmp_path / "b", "--opset", "-3")
    assert out.returncode == 2 and "argument --opset: -3 is out of range (14.." in out.stderr and not (tmp_path / "b").exists()
    for uri, key in (("synthetic://av-digits?seconds=nan", "seconds"), (f"{SYN}&fps=inf", "fps")):
        error = _line(_run("run", "--bundle", DEMO, "--video", uri, "--headless", "--quiet"))
        assert f"option {key}=" in error and "is not a finite number" in error, error
    assert _line(_run("pretrain", "--recipe", tiny, "--synthetic", "--resume", "--out", tmp_path / "nope")).endswith(
        f"--resume: {tmp_path / 'nope'} does not exist -- fix: check the --out folder, or leave out --resume to start a new run there"
    )
    assert not (tmp_path / "nope").exists()
    (tmp_path / "empty").mkdir()
    assert "holds no checkpoint" in _line(_run("pretrain", "--recipe", tiny, "--synthetic", "--resume", "--out", tmp_path / "empty"))


def _tensorrt_only(dest: Path) -> Path:
    """The demo bundle's manifest listing only TensorRT engines (which this machine cannot open)."""
    import hashlib

    dest.mkdir()
    m = json.loads((DEMO / "manifest.json").read_text())
    m["artifacts"] = []
    for g in ("audio", "image"):
        data = b"not an engine"
        (dest / f"{g}.fp32.engine").write_bytes(data)
        m["artifacts"].append(
            {
                "file": f"{g}.fp32.engine",
                "tower": g,
                "format": "engine",
                "backend": "tensorrt",
                "precision": "fp32",
                "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
            }
        )
    (dest / "manifest.json").write_text(json.dumps(m, indent=2))
    return dest


def test_commands_that_measured_nothing_exit_non_zero(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed: the engines below would be tried for real")
    except ImportError:
        pass
    from edge_sdk.toolchain.cli import main

    def line(*args) -> str:  # in this process: three fresh ones cost 12 s of imports
        code = main([str(a) for a in args])
        return _line(subprocess.CompletedProcess(args, code, "", capsys.readouterr().err), code=1)

    b = _tensorrt_only(tmp_path / "trt")
    assert line("bench", b, "--only", "tensorrt/fp32", "--teacher", "", "--scenes", "8", "--seconds", "0.1", "--synthetic").startswith(
        f"edge-sdk bench: error: no row of {b} could be measured (tensorrt/fp32: skipped:"
    )
    assert (
        line("profile", b, "--runs", "1", "--synthetic")
        == f"edge-sdk profile: error: {b} has no ONNX Runtime or ExecuTorch FP32/INT8 towers to profile"
    )
    silence = tmp_path / "silence.wav"
    with wave.open(str(silence), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000), w.writeframes(bytes(2 * 16000 * 3))
    args = ("calib", "--video", "synthetic://av-digits?seconds=2", "--audio", f"wav://{silence}", "--seconds", "2", "--out", tmp_path / "c")
    assert line(*args).startswith("edge-sdk calib: error: no pair recorded")


def test_bench_runtime_that_measured_no_frame_exits_non_zero(monkeypatch, capsys):
    pytest.importorskip("torch")
    import edge_sdk.export.bench_runtime
    from edge_sdk.toolchain.cli import main

    report = {"offline": {"frames": 0}, "realtime": {"stats": {"frames_out": 0}}, "cold_start_s": 0.4}
    monkeypatch.setattr(edge_sdk.export.bench_runtime, "bench_runtime", lambda *a, **k: report)
    assert main(["bench-runtime", "--teacher", "", "--synthetic", "--seconds", "1"]) == 1
    assert capsys.readouterr().err.strip() == "edge-sdk bench-runtime: error: the runtime produced no results (offline 0, real time 0)"
    report.update(offline={"frames": 40}, realtime={"stats": {"frames_out": 20}}, cold_start_s=None)  # the fresh process failed
    assert main(["bench-runtime", "--teacher", "", "--synthetic", "--seconds", "1"]) == 1
    assert capsys.readouterr().err.strip() == "edge-sdk bench-runtime: error: the footprint run produced no result"
