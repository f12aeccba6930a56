"""Devices as Linux users name them, and cameras that come back (issue 21): a PulseAudio source
name (``pactl list sources short``) as ``mic://NAME`` on the real PulseAudio null sink, and a
real ffmpeg network camera on loopback, killed and restarted, read again within a second of its
return without a busy loop while it is gone."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import numpy as np
import pytest

pytest.importorskip("av", reason="PyAV is not installed (pip install 'edge_sdk[live]')")

from conftest import pactl
from live_media import SR, clip, connect, free_port, need, serve, speech_wav, split

from edge_sdk.errors import DataError
from edge_sdk.runtime.frames import VideoFrame
from edge_sdk.runtime.sources import open_source


@pytest.fixture
def other_sink(pulse):
    """A second null sink beside the fixture's (whose monitor is the default source): a source
    reachable by its name only."""
    load = pactl("load-module", "module-null-sink", "sink_name=edge_sdk_other")
    if load.returncode != 0:
        pytest.skip(f"pactl could not make a second null sink: {load.stderr.strip()}")
    yield "edge_sdk_other"
    pactl("unload-module", load.stdout.strip())


def test_a_pulseaudio_source_name_opens_that_source(other_sink, tmp_path):
    assert "edge_sdk_other.monitor" in pactl("list", "sources", "short").stdout
    ref = speech_wav(tmp_path / "speech.wav")
    before = os.environ.get("PULSE_SOURCE")
    src = open_source(f"mic://{other_sink}.monitor", sample_rate=SR)
    items: list = []
    src.start(items.append)
    assert os.environ.get("PULSE_SOURCE") == before  # set for that stream's opening only
    time.sleep(0.3)
    subprocess.run(["paplay", "-d", other_sink, str(tmp_path / "speech.wav")], check=True, timeout=20)  # not the default sink
    time.sleep(0.5)
    src.stop()
    _, blocks, _ = split(items)
    assert blocks and src.error is None
    x = np.concatenate([b.samples for b in blocks])
    n = 1 << int(np.ceil(np.log2(x.size + ref.size)))
    lag = int(np.argmax(np.fft.irfft(np.fft.rfft(x, n) * np.conj(np.fft.rfft(ref, n)), n)[: x.size]))
    seg = x[lag : lag + ref.size]
    assert seg.size == ref.size and np.corrcoef(seg, ref)[0, 1] > 0.8, "the named source's sound was not recorded"


def test_an_unknown_microphone_lists_the_pulseaudio_sources(pulse):
    with pytest.raises(DataError, match="no audio input device named 'no-such-mic'") as e:
        open_source("mic://no-such-mic")
    assert "PulseAudio/PipeWire source" in e.value.fix and f"{pulse}.monitor" in e.value.fix


def test_a_network_camera_that_returns_is_read_within_a_second_without_a_busy_loop():
    need("ffmpeg")
    path, port = clip("chaplin.mp4"), free_port()
    server = serve(path, port)
    src = connect(f"http://127.0.0.1:{port}/?stall_s=1")
    items: list = []
    lock = threading.Lock()

    def emit(item) -> None:
        with lock:
            items.append((time.monotonic(), item))

    src.start(emit)
    try:
        end = time.monotonic() + 10
        while len(items) < 10:
            assert time.monotonic() < end and src.error is None
            time.sleep(0.02)
        delays = []
        for down_s in (1.0, 5.0):  # 5 s: long enough for any backoff to reach its longest wait
            server.kill()
            server.wait()
            cpu0 = time.process_time()
            time.sleep(down_s)
            cpu = time.process_time() - cpu0
            assert cpu < 0.3 * down_s, f"{cpu:.2f} s of CPU in {down_s} s while the camera was gone: a busy loop"
            t0 = time.monotonic()
            server = serve(path, port)
            seen = len(items)
            while True:
                with lock:
                    back = [t for t, it in items[seen:] if isinstance(it, VideoFrame) and t > t0]
                if back:
                    break
                assert time.monotonic() - t0 < 10, f"no frame 10 s after the camera returned: {src.counters}"
                time.sleep(0.005)
            delays.append(back[0] - t0)
            time.sleep(0.5)
        assert max(delays) < 1.0, f"first frame {delays} s after the server was restarted"
        assert src.counters["reconnects"] == 2 and src.error is None
    finally:
        src.stop()
        server.kill()
        server.wait()
