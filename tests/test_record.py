"""Calibration sets recorded from live sources load as INT8 calibration data."""

import subprocess
import sys

import pytest

from edge_sdk.errors import DataError
from edge_sdk.quant.calib import load_calib_set
from edge_sdk.runtime.record import record_pairs
from edge_sdk.spec import get_spec


def test_recorded_pairs_from_a_stream_are_a_valid_calibration_set(tmp_path):
    spec = get_spec("student_s")
    res = record_pairs(tmp_path / "c", spec, "synthetic://av-digits?seconds=14&fps=8", seconds=14, every_ms=250)
    assert res["kept"] >= 32 and res["silent"] > 0  # the silent second of each scene is skipped
    calib = load_calib_set(tmp_path / "c", spec)
    assert calib.waves.shape == (res["kept"], spec.audio.num_samples) and calib.images.shape[1:] == (3, 96, 96)
    with pytest.raises(DataError, match="not empty") as e:
        record_pairs(tmp_path / "c", spec, "synthetic://av-digits?seconds=1")
    assert "--append" in e.value.fix


def test_append_adds_pairs_after_the_last_and_checks_the_set_first(tmp_path):
    spec = get_spec("student_s")
    first = record_pairs(tmp_path / "c", spec, "synthetic://av-digits?seconds=3&fps=8", seconds=3, every_ms=250)
    more = record_pairs(tmp_path / "c", spec, "synthetic://av-digits?seconds=3&fps=8", seconds=3, every_ms=250, append=True)
    names = sorted(p.name for p in (tmp_path / "c").glob("*.npz"))
    assert first["kept"] > 0 and more["kept"] > 0 and more["total"] == first["kept"] + more["kept"] == len(names)
    assert names[-1] == f"live_{more['total'] - 1:05d}.npz"  # numbered on, nothing overwritten
    assert len(load_calib_set(tmp_path / "c", spec, min_clips=1)) == more["total"]
    # a set recorded for another model is refused before any recording
    with pytest.raises(DataError, match="audio at 16000 Hz, the model takes 8000 Hz"):
        record_pairs(tmp_path / "c", _spec_at(spec, 8000), "synthetic://av-digits?seconds=1", append=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="holds no calibration pairs to append to"):
        record_pairs(tmp_path / "other", spec, "synthetic://av-digits?seconds=1", append=True)


def _spec_at(spec, rate):
    import dataclasses

    return dataclasses.replace(spec, audio=dataclasses.replace(spec.audio, sample_rate=rate))


def test_cli_records_a_real_clip_and_says_when_too_short(tmp_path, data_dir):
    clip = data_dir / "video" / "chaplin.mp4"
    out = subprocess.run(
        [sys.executable, "-m", "edge_sdk", "calibrate", "--video", f"file://{clip}", "--seconds", "3", "--out", str(tmp_path / "c")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "at least 32" in out.stderr and f"pairs to {tmp_path / 'c'}" in out.stderr
    assert len(list((tmp_path / "c").glob("*.npz"))) >= 8


def test_a_video_without_sound_is_refused_at_once(tmp_path):
    import shutil

    if not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg is not installed (apt install ffmpeg)")
    clip = tmp_path / "mute.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=10", "-t", "1", "-an", str(clip)], check=True)
    with pytest.raises(DataError, match="has no audio track; calibration pairs need sound") as e:
        record_pairs(tmp_path / "c", get_spec("student_s"), f"file://{clip}", seconds=5)
    assert "--audio mic://default" in e.value.fix


def test_device_profiles_pick_targets_and_refuse_typos():
    from edge_sdk.errors import ConfigError
    from edge_sdk.export.engine import PRECISIONS
    from edge_sdk.export.targets import EXPORTERS
    from edge_sdk.profiles import PROFILES, get_profile

    for p in PROFILES.values():  # every profile names formats and precisions that exist
        assert set(p.formats) <= set(EXPORTERS) and set(p.precisions) <= set(PRECISIONS) and p.verified
        assert p.precision in p.precisions
    assert get_profile("android-arm64").formats == ("executorch",)
    with pytest.raises(ConfigError, match="did you mean jetson-orin"):
        get_profile("jetson-orn")


def test_a_bundle_without_the_asked_backend_names_what_it_has():
    from edge_sdk.bundle import shipped_bundles

    if "avnet_s-demo" not in shipped_bundles():
        pytest.skip("the demo bundle is not shipped in this checkout")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_sdk",
            "run",
            "--bundle",
            str(shipped_bundles()["avnet_s-demo"]),
            "--backend",
            "tensorrt",
            "--precision",
            "int8",
            "--video",
            "synthetic://av-digits?seconds=1",
            "--headless",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "no tensorrt int8 model" in out.stderr and "--backend onnxruntime --precision int8" in out.stderr
    assert "edge-sdk export MODEL --format tensorrt --precision int8 --calib DIR" in out.stderr


def test_the_export_hint_names_formats_and_precisions_export_takes():
    from edge_sdk.bundle import EXPORT_FORMATS
    from edge_sdk.export.targets import EXPORTERS

    for backend, (fmt, precisions) in EXPORT_FORMATS.items():  # the hint's table agrees with the exporters
        assert EXPORTERS[fmt].backend == backend and tuple(EXPORTERS[fmt].precisions) == precisions
