"""Live sources: a PulseAudio virtual microphone played into with paplay, and two network
cameras that are killed and restarted: ffmpeg serving MJPEG over HTTP and GStreamer's RTSP
server streaming H.264."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="PyAV is not installed (pip install 'edge_sdk[live]')")

from live_media import (  # noqa: E402
    CAMERAS,
    SR,
    SYSTEM_PYTHON,
    clip,
    connect,
    ffmpeg,
    free_port,
    increasing,
    nearest_clip_frame,
    need,
    run,
    serve,
    speech_wav,
    split,
    wait_for,
)

from edge_sdk.errors import DataError  # noqa: E402
from edge_sdk.runtime.clock import now_ns  # noqa: E402
from edge_sdk.runtime.frames import Gap, VideoFrame  # noqa: E402
from edge_sdk.runtime.sources import open_source  # noqa: E402


def test_virtual_microphone_records_what_is_played(pulse, tmp_path):
    ref = speech_wav(tmp_path / "speech.wav")
    src = open_source("mic://default", sample_rate=SR)
    assert src.kind == "audio"
    items: list = []
    t0 = now_ns()
    src.start(items.append)
    time.sleep(0.3)
    subprocess.run(["paplay", "-d", pulse, str(tmp_path / "speech.wav")], check=True, timeout=20)
    time.sleep(0.5)
    src.stop()
    _, blocks, _ = split(items)
    assert blocks and increasing(blocks) and src.error is None
    assert abs(blocks[0].pts_ns - t0) < 2e9 and {b.sample_rate for b in blocks} == {SR}
    x = np.concatenate([b.samples for b in blocks])
    n = 1 << int(np.ceil(np.log2(x.size + ref.size)))
    lag = int(np.argmax(np.fft.irfft(np.fft.rfft(x, n) * np.conj(np.fft.rfft(ref, n)), n)[: x.size]))
    seg = x[lag : lag + ref.size]
    assert seg.size == ref.size, "the recording stops before the played speech ends"
    r = np.corrcoef(seg, ref)[0, 1]
    assert r > 0.8, f"captured audio does not match the played recording (correlation {r:.2f})"
    before = x[max(0, lag - SR // 3) : max(0, lag - SR // 20)]  # the silence paplay played first
    loud, quiet = np.sqrt(np.mean(seg**2)), np.sqrt(np.mean(before**2))
    assert before.size > SR // 10 and loud > 10 * (quiet + 1e-6), (loud, quiet)


def test_microphone_callback_errors_reach_the_consumer(pulse, tmp_path):
    speech_wav(tmp_path / "speech.wav")
    src = open_source("mic://default")
    src._queue.put_nowait = None  # the callback fails on its first buffer
    items: list = []
    src.start(items.append)
    player = subprocess.Popen(["paplay", "-d", pulse, str(tmp_path / "speech.wav")])
    end = time.monotonic() + 10
    while src.error is None and time.monotonic() < end:
        time.sleep(0.02)
    src.stop()
    player.wait(timeout=20)
    assert isinstance(src.error, DataError) and "callback failed" in str(src.error)
    assert [g.kind for g in items if isinstance(g, Gap)] == ["error"]


def test_a_microphone_gone_digitally_silent_is_reported_once(pulse, tmp_path):
    # An unplugged device's stream is moved by the sound server to a silent source and never
    # stops: exact zeros are all that tells. The null sink with nothing playing gives just that.
    speech_wav(tmp_path / "speech.wav")
    src = open_source("mic://default")
    items: list = []
    src.start(items.append)
    end = time.monotonic() + 15  # the sound server starts the stream late: its samples, not the wall clock, count
    while not any(isinstance(g, Gap) for g in items) and time.monotonic() < end:
        time.sleep(0.1)
    subprocess.run(["paplay", "-d", pulse, str(tmp_path / "speech.wav")], check=True, timeout=20)
    src.stop()
    gaps = [g for g in items if isinstance(g, Gap)]
    assert [g.kind for g in gaps] == ["silent_device"] and "muted, or unplugged" in gaps[0].message
    assert src.error is None and any(b.samples.any() for b in split(items)[1])  # the speech after it came through


def test_unknown_microphone_lists_devices(pulse):
    with pytest.raises(DataError, match="no audio input device named 'no-such-mic'") as e:
        open_source("mic://no-such-mic")
    assert "default" in e.value.fix


@pytest.mark.parametrize("scheme", CAMERAS)
def test_network_camera_reconnects_after_the_server_restarts(scheme):
    need("ffmpeg")
    if scheme == "rtsp" and not Path(SYSTEM_PYTHON).exists():
        pytest.skip(f"{SYSTEM_PYTHON} is absent: the RTSP camera needs the system Python with PyGObject")
    start, url = CAMERAS[scheme]
    path, port = clip("chaplin.mp4"), free_port()
    url = url.format(port=port)
    server = start(path, port)
    try:
        src = connect(f"{url}?stall_s=1")
        assert src.kind == "video" and src.target == url
        items: list = []
        lock = threading.Lock()
        src.start(lambda item: (lock.acquire(), items.append(item), lock.release()))
        wait_for(lambda: len(items) >= 10, 10, src)
        server.kill()
        server.wait()
        time.sleep(0.5)
        server = start(path, port)
        wait_for(
            lambda: (
                any(isinstance(i, Gap) for i in items) and isinstance(items[-1], VideoFrame) and len(items) - [type(i) for i in items].index(Gap) > 5
            ),
            20,
            src,
        )
        t = time.monotonic()
        src.stop()
        assert time.monotonic() - t < 1.5
        frames, _, gaps = split(items)
        assert [g.kind for g in gaps] == ["lost", "reconnect"] and src.counters["reconnects"] == 1
        assert gaps[1].seconds > 0.4 and increasing(frames) and frames[-1].shape == (360, 640)
        assert src.counters["reconnect_attempts"] >= 1 and src.counters["lost_s"] >= gaps[1].seconds - 0.01
        # the model's input is cut from the BGR capture, exactly as from the frame converted whole
        from edge_sdk.media.image import center_crop_resize

        square = frames[3].cut(96)
        assert frames[3]._image is None and np.array_equal(square, center_crop_resize(frames[3].image, 96))
        assert frames[-1].image.shape == (360, 640, 3) and frames[-1].image.dtype == np.uint8
        # what came through is the clip itself (H.264 passed through by RTSP; MJPEG-recoded by HTTP)
        assert nearest_clip_frame(path, frames[5].image) < 6
    finally:
        server.kill()
        server.wait()


def test_a_camera_that_never_comes_back_is_reported_and_counted(tmp_path, caplog):
    need("ffmpeg")
    path, port = tmp_path / "cam.mp4", free_port()
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-t", "30", "-an", str(path))
    server = serve(path, port)
    try:
        src = connect(f"http://127.0.0.1:{port}/?stall_s=1")
        items: list = []
        src.start(items.append)
        wait_for(lambda: len(items) >= 5, 10, src)
    finally:
        server.kill()
        server.wait()
    wait_for(lambda: src.counters["reconnect_attempts"] >= 6, 15, src)  # 0.1, 0.2, 0.4, then 0.5 s apart
    src.stop()
    gaps = split(items)[2]
    assert [g.kind for g in gaps] == ["lost"] and src.counters["reconnects"] == 0 and src.counters["lost_s"] > 1.5
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("lost http://")]
    assert said and "attempt 1 to reconnect in 0.1 s" in said[0] and len(said) < src.counters["reconnect_attempts"]  # rate-limited


def test_http_stream_without_reconnect_ends():
    need("ffmpeg")
    path, port = clip("example2.mp4"), free_port()
    server = serve(path, port)
    try:
        src = connect(f"http://127.0.0.1:{port}/", reconnect=0)
        frames, _, gaps = split(run(src, timeout=15))
        assert src.done and gaps == [] and len(frames) > 40
    finally:
        server.kill()
        server.wait()
