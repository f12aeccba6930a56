"""The demo apps, run as a person would here: no camera, no display -> generated scenes,
headless, with the annotated video, events, stats and a snapshot to look at."""

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_sdk.apps.demo import run_demo
from edge_sdk.bundle import shipped_bundles
from edge_sdk.errors import ConfigError
from edge_sdk.runtime.clock import now_ns

pytestmark = pytest.mark.skipif("avnet_s-demo" not in shipped_bundles(), reason="the demo bundle is not shipped in this checkout")


def test_localize_falls_back_to_generated_scenes_and_points_at_the_speaker(tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    s = run_demo("localize", out=tmp_path, max_seconds=4)  # window mode asked, no display, no camera here
    assert any("no camera" in n for n in s["notes"]) and any("no display" in n for n in s["notes"])
    assert s["video"].startswith("synthetic://") and s["stats"]["frames_out"] >= 20
    assert s["pointing_acc"] is not None and s["pointing_acc"] >= 0.6
    assert set(s["files"]) == {"video", "events", "stats", "summary", "snapshot"}
    assert all(Path(f).is_file() for f in s["files"].values())  # every file the demo says it wrote
    snap = cv2.imread(s["files"]["snapshot"])
    hsv = cv2.cvtColor(snap, cv2.COLOR_BGR2HSV)
    assert np.mean(hsv[..., 1] > 80) > 0.2  # the colour heatmap is drawn over the grey digits
    cap = cv2.VideoCapture(s["files"]["video"])
    assert cap.isOpened() and cap.get(cv2.CAP_PROP_FRAME_COUNT) >= 20
    events = (tmp_path / "localize" / "events.jsonl").read_text().splitlines()
    assert len(events) == s["stats"]["frames_out"] and "peak_xy" in json.loads(events[0])


def test_retrieve_builds_a_digit_gallery_and_answers(tmp_path):
    s = run_demo("retrieve", video="synthetic://av-digits?seconds=2&fps=3", headless=True, out=tmp_path)
    assert len(list((tmp_path / "retrieve" / "gallery").glob("*.png"))) == 10
    assert len(s["last"]["images_for_sound"]) == 3


def test_retrieve_names_the_digits_spoken_into_the_virtual_microphone(pulse, tmp_path, fsdd):
    """Real recordings of a held-out speaker played into a PulseAudio null sink, captured by
    mic://default (sounddevice) while the demo runs: the digit image it retrieves for the
    sound is the digit that was said."""
    summary, played = {}, []
    demo = threading.Thread(
        target=lambda: summary.update(
            run_demo(
                "retrieve", video="synthetic://av-digits?seconds=60&realtime=1", audio="mic://default", headless=True, out=tmp_path, max_seconds=11
            )
        )
    )
    demo.start()
    time.sleep(2.5)  # bundle open, gallery embedded, microphone listening
    for digit in (3, 5, 8):
        played.append((digit, now_ns()))
        subprocess.run(["paplay", "-d", pulse, str(fsdd / f"{digit}_george_0.wav")], check=True, timeout=20)
        time.sleep(1.5)
    demo.join(timeout=60)
    assert summary.get("audio") == "mic://default" and summary["stats"]["frames_out"] > 30
    assert summary["stats"]["counters"]["video_source_audio_ignored"] > 0  # the scenes' own speech is not mixed in
    results = [json.loads(x) for x in (tmp_path / "retrieve" / "events.jsonl").read_text().splitlines()]
    results = [r for r in results if r["type"] == "result"]
    right = 0
    for digit, t0 in played:  # frames whose 1 s audio window holds the whole utterance
        near = [r for r in results if t0 + 0.85e9 <= r["pts_ns"] <= t0 + 1.15e9]
        said = [int(Path(r["images_for_sound"][0]["item"]).stem.split("_")[1]) for r in near]
        assert said, f"no results while {digit} was being said"
        right += max(set(said), key=said.count) == digit
    timeline = [((r["pts_ns"] - played[0][1]) / 1e9, Path(r["images_for_sound"][0]["item"]).stem, r["images_for_sound"][0]["score"]) for r in results]
    assert right >= 2, f"{right} of 3 spoken digits retrieved: {[(round(t, 2), n, sc) for t, n, sc in timeline]}"


def test_speaker_finds_faces_in_a_real_clip(tmp_path, data_dir):
    s = run_demo("speaker", video=f"file://{data_dir / 'video' / 'chaplin.mp4'}", headless=True, out=tmp_path, max_seconds=30)
    events = [json.loads(x) for x in (tmp_path / "speaker" / "events.jsonl").read_text().splitlines()]
    assert s["stats"]["frames_out"] > 100 and sum(bool(e["faces"]) for e in events) > 10
    assert (tmp_path / "speaker" / "annotated.mp4").stat().st_size > 10000


def test_unknown_demo_and_cli_help(tmp_path):
    with pytest.raises(ConfigError, match="unknown demo"):
        run_demo("segment", out=tmp_path)
    out = subprocess.run([sys.executable, "-m", "edge_sdk", "demo", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "example" in out.stdout and "synthetic://av-digits" in out.stdout


def test_the_20_line_embedding_example_runs():
    from pathlib import Path

    app = Path(__file__).resolve().parents[1] / "docs" / "examples" / "embed_app.py"
    assert len(app.read_text().splitlines()) <= 20
    out = subprocess.run([sys.executable, str(app), "synthetic://av-digits?seconds=2&fps=5"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-1000:]
    assert out.stdout.count("sound at") == 10


def test_a_given_sound_is_kept_when_there_is_no_camera(tmp_path, monkeypatch):
    import wave

    monkeypatch.delenv("DISPLAY", raising=False)
    path = tmp_path / "tone.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes((np.sin(np.arange(48000) * 0.2) * 8000).astype("<i2").tobytes())
    s = run_demo("sync", audio=f"wav://{path}", out=tmp_path, max_seconds=2, headless=True)
    assert s["audio"] == f"wav://{path}" and any(f"with the sound of wav://{path}" in n for n in s["notes"])
    assert s["stats"]["sources"]["audio"]["uri"] == f"wav://{path}"  # the scenes' own sound was not used
