"""How live runs end: Ctrl-C (SIGINT), SIGTERM (timeout, systemd, docker stop) and SIGHUP
stop `run`, `demo` and `calibrate` cleanly, and what they wrote is whole: statistics,
a playable video, calibration pairs that load."""

import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

LIVE = "synthetic://av-digits?seconds=120&realtime=1"  # paced like a camera: it only ends when stopped


def _stop_when(cmd, ready, sig, cwd, timeout=120.0, nohup=False):
    """Start ``cmd`` (with SIGHUP ignored, as ``nohup`` starts it), send ``sig`` once
    ``ready()`` holds, and return the finished process."""
    hup = (lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN)) if nohup else None
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}  # a hang's SIGABRT below prints every thread's stack
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=hup, env=env)
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    if nohup:
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert proc.poll() is None, "SIGHUP stopped a run started under nohup"
    was_ready = ready()
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"still running 60 s after {signal.Signals(sig).name} (ready before it: {was_ready}); its threads:\n{err[-6000:]}")
    return proc.returncode, out, err


def _lines(path):
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_sigterm_ends_a_run_with_its_statistics_and_a_playable_video(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "edge_sdk",
        "run",
        "--bundle",
        "avnet_s-demo",
        "--video",
        LIVE,
        "--task",
        "localize",
        "--headless",
        "--quiet",
        "--events",
        "e.jsonl",
        "--stats",
        "s.json",
        "--out-video",
        "o.mp4",
    ]
    rc, _, err = _stop_when(cmd, lambda: _lines(tmp_path / "e.jsonl") >= 15, signal.SIGTERM, tmp_path, nohup=True)
    assert rc == 128 + signal.SIGTERM and "interrupted" in err and "Traceback" not in err, err[-2000:]
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["interrupted"] and stats["frames_out"] >= 15
    video = cv2.VideoCapture(str(tmp_path / "o.mp4"))
    frames, fps = int(video.get(cv2.CAP_PROP_FRAME_COUNT)), video.get(cv2.CAP_PROP_FPS)
    assert video.read()[0] and not (tmp_path / "o.video.mp4").exists()
    # frames placed at their times: the video lasts as long as the run (10 fps scenes into a 25 fps file)
    assert abs(frames / fps - stats["frames_out"] / 10) < 0.5, (frames, fps, stats["frames_out"])


def test_ctrl_c_ends_a_demo_with_all_its_files(tmp_path):
    cmd = [sys.executable, "-m", "edge_sdk", "demo", "localize", "--video", LIVE, "--headless", "--quiet", "--out", "d"]
    events = tmp_path / "d" / "localize" / "events.jsonl"
    rc, out, err = _stop_when(cmd, lambda: _lines(events) >= 10, signal.SIGINT, tmp_path)
    assert rc == 128 + signal.SIGINT and "Traceback" not in err, err[-2000:]
    summary = json.loads((tmp_path / "d" / "localize" / "summary.json").read_text())
    assert summary["stats"]["interrupted"] and summary["stats"]["frames_out"] >= 10
    assert (tmp_path / "d" / "localize" / "snapshot.png").exists() and "frames" in out


def test_ctrl_c_ends_a_recording_keeping_whole_pairs(tmp_path):
    cmd = [sys.executable, "-m", "edge_sdk", "calibrate", "--video", LIVE, "--seconds", "120", "--every-ms", "100", "--out", "c"]
    rc, out, err = _stop_when(cmd, lambda: len(list((tmp_path / "c").glob("*.npz"))) >= 8, signal.SIGINT, tmp_path)
    assert rc == 128 + signal.SIGINT and "Traceback" not in err, err[-2000:]
    res = json.loads(out)
    files = sorted((tmp_path / "c").iterdir())
    assert res["interrupted"] and res["kept"] == len(files) >= 8 and all(f.suffix == ".npz" for f in files)
    for f in files:
        with np.load(f) as z:
            assert z["wave"].shape == (16000,) and z["image"].shape == (96, 96, 3)


def test_a_paced_file_keeps_its_sound_in_the_annotated_video(tmp_path, data_dir):
    """Options in a file URI (``?realtime=1``) are not part of the path ffmpeg reads the sound from."""
    av = pytest.importorskip("av")
    clip = data_dir / "video" / "chaplin.mp4"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_sdk",
            "run",
            "--bundle",
            "avnet_s-demo",
            "--video",
            f"file://{clip}?realtime=1",
            "--task",
            "localize",
            "--headless",
            "--quiet",
            "--max-seconds",
            "3",
            "--out-video",
            "o.mp4",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    with av.open(str(tmp_path / "o.mp4")) as f:
        assert f.streams.audio and f.streams.video


def test_annotated_video_shows_each_frame_from_its_time_until_the_next(tmp_path):
    from edge_sdk.runtime.frames import Result, VideoFrame
    from edge_sdk.runtime.sinks import VideoSink

    sink = VideoSink(tmp_path / "v.mp4", fps=25.0)
    shades = [20 * i + 30 for i in range(10)]
    for i, shade in enumerate(shades):  # 10 fps for 1 s into a 25 fps file; then a lost camera for 9 s
        t = int(i * 1e8) + (int(9e9) if i == 9 else 0)
        sink.result(Result("localize", t, i, t, {}, None, VideoFrame(t, i, np.full((64, 64, 3), shade, np.uint8)), 0, t))
    sink.close()
    video, got = cv2.VideoCapture(str(tmp_path / "v.mp4")), []
    while (frame := video.read())[0]:
        got.append(int(round(frame[1][40:60, 20:40].mean())))
    # frame i starts at slot int(2.5 i) and lasts until the next; the 9 s gap is cut out, not held
    want = [shades[max(i for i in range(9) if int(2.5 * i) <= slot)] for slot in range(21)] + [shades[9]]
    assert len(got) == len(want) and all(abs(g - w) <= 4 for g, w in zip(got, want, strict=True)), (got, want)


def test_a_closed_terminal_still_gets_the_statistics_written(tmp_path):
    """An ssh session closed under a run: the terminal's writes fail (EIO), then SIGHUP."""
    import os

    master, slave = os.openpty()
    cmd = [
        sys.executable,
        "-m",
        "edge_sdk",
        "run",
        "--bundle",
        "avnet_s-demo",
        "--video",
        LIVE,
        "--task",
        "localize",
        "--headless",
        "--events",
        "e.jsonl",
        "--stats",
        "s.json",
    ]  # the live status line on: it writes to the terminal
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdin=slave, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    deadline = time.monotonic() + 120
    while _lines(tmp_path / "e.jsonl") < 15 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.close(master)
    time.sleep(1.5)  # a status line or two written into the closed terminal
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=60) == 128 + signal.SIGHUP
    assert json.loads((tmp_path / "s.json").read_text())["interrupted"]
