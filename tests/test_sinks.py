"""Sinks opened by URI (``open_sink``), every scheme and the ways a URI goes wrong, and the
pipeline's knobs (``PipelineConfig``): each bad value refused by name, in one line."""

import re
import socket
import subprocess
import sys
import threading
import urllib.request

import numpy as np
import pytest

from edge_sdk.errors import ConfigError, EdgeSDKError
from edge_sdk.runtime.config import PipelineConfig
from edge_sdk.runtime.frames import Result, VideoFrame
from edge_sdk.runtime.pipeline import Pipeline
from edge_sdk.runtime.queues import BoundedQueue
from edge_sdk.runtime.sinks import SCHEMES, JsonlSink, MjpegSink, VideoSink, open_sink, usage


def _result(i: int, t_ns: int) -> Result:
    frame = VideoFrame(t_ns, i, np.full((64, 64, 3), 40 + 10 * i, np.uint8))
    return Result("localize", t_ns, i, t_ns, {"score": 0.5, "peak_xy": [30, 30]}, np.eye(6, dtype=np.float32), frame, 0, t_ns)


def test_every_scheme_has_a_usage_text_and_a_test():
    assert set(SCHEMES) == {"file", "video", "events", "mjpeg", "window"}  # a new scheme needs a case below
    text = usage()
    assert all(f"{s}://" in text for s in SCHEMES)
    assert "fps" in usage("video") and "title" in usage("window")


@pytest.mark.parametrize(
    "uri, kind",
    [
        ("{tmp}/e.jsonl", JsonlSink),
        ("{tmp}/e.ndjson", JsonlSink),
        ("file://{tmp}/e.jsonl", JsonlSink),
        ("events://{tmp}/e.log", JsonlSink),
        ("{tmp}/o.mp4", VideoSink),
        ("file://{tmp}/o.avi?fps=10", VideoSink),
        ("video://{tmp}/o.mkv?audio_from=none", VideoSink),
    ],
)
def test_file_sinks_by_path_scheme_and_extension(tmp_path, uri, kind):
    sink = open_sink(uri.format(tmp=tmp_path))
    try:
        assert type(sink) is kind
    finally:
        sink.close()
    if kind is VideoSink:
        assert sink.fps == (10.0 if "fps=10" in uri else 25.0) and not list(tmp_path.iterdir())  # nothing written without frames


def test_relative_paths_and_events_written_in_place_line_by_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    sink = open_sink("events://out/e.jsonl")
    sink.result(_result(0, 0))
    assert (tmp_path / "out" / "e.jsonl").read_text().count("\n") == 1  # readable while the run goes
    sink.close()
    assert open_sink("file://out/o.mp4?fps=12.5").fps == 12.5


def test_video_sink_writes_a_whole_file_with_the_sound_given(tmp_path, data_dir):
    sink = open_sink(tmp_path / "o.mp4", audio_from=str(data_dir / "video" / "rain.mp3"))
    for i in range(20):
        sink.result(_result(i, int(i * 1e8)))
    assert not (tmp_path / "o.mp4").exists()  # until close, only the temporary name
    sink.close()
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type:format=duration", "-of", "csv=p=0", str(tmp_path / "o.mp4")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "video" in probe and "audio" in probe and abs(float(probe[-1]) - 2.0) < 0.3, probe
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4"]  # no temporary left


def test_mjpeg_sink_serves_the_frames(tmp_path):
    sink = open_sink("mjpeg://127.0.0.1:0")
    assert type(sink) is MjpegSink and sink.url.startswith("http://127.0.0.1:")
    got = {}

    def fetch():
        with urllib.request.urlopen(sink.url, timeout=10) as r:
            got["head"] = r.read(300)

    t = threading.Thread(target=fetch, daemon=True)
    t.start()
    for i in range(50):
        sink.result(_result(i % 5, i))
        if got:
            break
        threading.Event().wait(0.1)
    t.join(10)
    sink.close()
    assert b"--frame" in got["head"] and b"image/jpeg" in got["head"]


def test_window_sink_without_a_display_says_why(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(EdgeSDKError, match=r"no display \(DISPLAY is not set\).*--headless"):
        open_sink("window://my title")


def _one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text and isinstance(e.value, EdgeSDKError)
    return text


@pytest.mark.parametrize(
    "uri, said",
    [
        ("widnow://", "unknown sink scheme 'widnow'.*did you mean window://"),
        ("evnets:///x.jsonl", "did you mean events://"),
        ("{tmp}/out.txt", r"out.txt' ends in neither a video \(.mp4.*nor a JSON-lines extension.*events://"),
        ("{tmp}/o.mp4?fsp=30", r"unknown option\(s\) fsp for video://.*fps \(default 25.0\), audio_from"),
        ("file://{tmp}/o.mp4?fsp=30", r"unknown option\(s\) fsp for video://"),
        ("events://{tmp}/e.jsonl?fps=3", r"unknown option\(s\) fps for events:// -- fix: events:// takes no options"),
        ("video://{tmp}/o.mp4?fps=0", "option fps='0' is not a number > 0"),
        ("video://{tmp}/o.mp4?fps=nan", "option fps='nan' is not a finite number"),
        ("window://?min_side=big", "option min_side='big' is not a whole number >= 0"),
        ("events://", "names no file"),
        ("mjpeg://127.0.0.1", "no port.*mjpeg://127.0.0.1:8090"),
        ("mjpeg://127.0.0.1:99999", "mjpeg://127.0.0.1:99999: Port out of range"),
        ("/sys/edge_sdk_events.jsonl", "cannot write /sys/edge_sdk_events.jsonl: permission denied"),
        ("/sys/edge_sdk_video.mp4", "cannot write /sys/edge_sdk_video.mp4: permission denied"),
        ("{tmp}/no/such/e.jsonl", "cannot write .*/no/such/e.jsonl: folder .*/no/such does not exist -- fix: create it first"),
        ("events://{tmp}", "cannot write .*: it is a folder"),
        ("{tmp}/folder.mp4", "cannot write .*folder.mp4: it is a folder"),
    ],
)
def test_bad_sink_uris_are_one_line_naming_the_problem(tmp_path, uri, said):
    (tmp_path / "folder.mp4").mkdir()
    with pytest.raises(EdgeSDKError) as e:
        open_sink(uri.format(tmp=tmp_path))
    assert re.search(said, _one_line(e)), str(e.value)


def test_a_port_in_use_is_one_line_naming_it():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(EdgeSDKError) as e:
            open_sink(f"mjpeg://127.0.0.1:{port}")
    assert f"cannot serve the MJPEG preview on 127.0.0.1:{port}: Address already in use" in _one_line(e)


def test_sinks_opened_before_one_that_fails_are_closed(tmp_path, monkeypatch):
    from edge_sdk.runtime.sinks import open_sinks

    closed = []
    monkeypatch.setattr(JsonlSink, "close", lambda self: closed.append(self.path))
    given = JsonlSink(tmp_path / "given.jsonl")
    with pytest.raises(ConfigError, match="widnow"):
        open_sinks([given, tmp_path / "e.jsonl", "widnow://"])
    assert closed == [tmp_path / "e.jsonl"]  # the one it opened; the caller's own stays the caller's


@pytest.mark.parametrize(
    "field, value, said",
    [
        ("policy", "newest", "policy='newest' is not a queue policy -- fix: use latest"),
        ("queue_size", 0, "queue_size=0 is out of range"),
        ("queue_size", 2.5, "queue_size=2.5 is not a whole number"),
        ("batch", 0, "batch=0 is out of range.*batch as a whole number >= 1"),
        ("batch", True, "batch=True is not a whole number"),
        ("audio_hop_ms", -1.0, "audio_hop_ms=-1.0 is out of range"),
        ("audio_hop_ms", float("nan"), "audio_hop_ms=nan is out of range"),
        ("max_audio_wait_s", float("inf"), "max_audio_wait_s=inf is out of range.*finite number >= 0"),
        ("max_skew_ms", "30", "max_skew_ms='30' is not a finite number"),
    ],
)
def test_each_bad_config_field_is_named_with_its_range(field, value, said):
    with pytest.raises(ConfigError, match=said):
        PipelineConfig(**{field: value})
    with pytest.raises(ConfigError, match=said):  # the same through from_bundle's keywords, before the bundle is read
        Pipeline.from_bundle("no/such/bundle", "synthetic://av-digits", **{field: value})


def test_config_and_keywords_combine_and_an_unknown_keyword_is_named():
    cfg = PipelineConfig(policy="block", batch=2)
    assert PipelineConfig.of(cfg, batch=4) == PipelineConfig(policy="block", batch=4)
    with pytest.raises(TypeError, match=r"unknown pipeline option\(s\) polcy \(did you mean policy\?\)"):
        Pipeline.from_bundle("no/such/bundle", "synthetic://av-digits", polcy="block")


def test_bounded_queue_drops_counts_waits_and_skips():
    q = BoundedQueue(2)
    assert [q.put(i, wait=False) for i in range(4)] == [0, 0, 1, 1] and len(q) == 2  # the oldest made room
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    assert q.put(9, wait=True, stop=stop) is None and len(q) == 2  # full, then stopped: not added
    assert q.skip_while(1, lambda item: item <= 2) == (2, 1)  # 2 was ready: 1 skipped; 3 not
    assert q.get(0.01) == 3 and q.get(0.01) is None and q.take(5) == []


def test_the_cli_refuses_a_bad_sink_in_one_line(tmp_path):
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
            "avnet_s-demo",
            "--video",
            "synthetic://av-digits?seconds=1",
            "--headless",
            "--sink",
            f"{tmp_path}/e.jsonl",
            "--sink",
            "widnow://",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2 and "did you mean window://" in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "Traceback" not in out.stderr
