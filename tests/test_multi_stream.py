"""Many streams in one process (issue 23): results go to the stream they belong to and equal
what each stream gives alone, frames of different streams run in one batch, a network camera
killed on loopback stalls none of the others and rejoins when its server comes back, a
stream that ends leaves the others running; the CLI's several --video/--audio pairs and
--sources file. Real sources throughout: generated scenes with speech, a real clip, ffmpeg
network cameras."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from live_media import clip, free_port, need
from pipeline_media import demo_bundle

from edge_sdk.errors import ConfigError, DataError
from edge_sdk.runtime import MultiPipeline
from edge_sdk.runtime.loadtest import serve_camera
from edge_sdk.runtime.multi import read_sources, stream_specs
from edge_sdk.runtime.pipeline import Pipeline

pytest.importorskip("av", reason="PyAV is not installed (pip install 'edge_sdk[live]')")


@pytest.fixture(scope="module")
def bundle():
    return demo_bundle()


def scenes(seed: int, seconds: int = 3, fps: int = 5, realtime: bool = False) -> str:
    return f"synthetic://av-digits?seconds={seconds}&fps={fps}&seed={seed}" + ("&realtime=1" if realtime else "")


def test_each_stream_gets_its_own_results_equal_to_running_it_alone(bundle):
    """Three streams of different scenes and speech, one with its own task (sync keeps a history
    per stream), batched together: each stream's results, frame for frame, are what the stream
    gives through a Pipeline of its own, and the towers ran fewer batches than frames."""
    streams = [{"name": "one", "video": scenes(1)}, {"name": "two", "video": scenes(2), "task": "sync"}, {"name": "three", "video": scenes(3)}]
    mp = MultiPipeline.from_bundle(bundle, streams, task="localize", batch=8)
    got = list(mp)
    stats = mp.final_stats()
    assert stats["frames_out"] == 45 and stats["batches"]["count"] < 45 and stats["batches"]["mean_size"] > 1.5
    assert sum(s["frames_out"] for s in stats["streams"].values()) == stats["frames_out"]  # a stream's numbers add up to the whole
    for spec in streams:
        task = spec.get("task", "localize")
        alone = list(Pipeline.from_bundle(bundle, spec["video"], task=task, batch=1))
        mine = [r for r in got if r.stream == spec["name"]]
        assert [r.seq for r in mine] == [r.seq for r in alone] == list(range(15))
        assert all(r.task == task and r.frame.source == spec["video"] for r in mine)
        for a, b in zip(mine, alone):
            assert a.frame.meta["box"] == b.frame.meta["box"]  # its own scenes
            assert a.values["score"] == pytest.approx(b.values["score"], abs=1e-4)  # with its own sound
            key = "offset_ms" if task == "sync" else "peak_xy"
            assert a.values[key] == b.values[key]
        assert stats["streams"][spec["name"]]["frames_out"] == 15 and stats["streams"][spec["name"]]["dropped"] == 0


def _open_cameras(bundle, streams, **kw):
    """The pipeline once every ffmpeg server listens (they start in a fraction of a second)."""
    end = time.monotonic() + 15
    while True:
        try:
            return MultiPipeline.from_bundle(bundle, streams, **kw)
        except DataError:
            if time.monotonic() > end:
                raise
            time.sleep(0.3)


def _wait(cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_killed_network_camera_stalls_no_other_stream_and_rejoins_when_it_returns(bundle):
    need("ffmpeg")
    path = clip("chaplin.mp4")
    ports = {"a": free_port(), "b": free_port()}
    servers = {k: serve_camera(path, port) for k, port in ports.items()}
    got: list[tuple[float, str, str]] = []  # (when, stream, the frame's source)
    lock = threading.Lock()

    def keep(r) -> None:
        with lock:
            got.append((time.monotonic(), r.stream, r.frame.source))

    def results(name: str, after: float = 0.0, before: float = float("inf")) -> list[float]:
        with lock:
            return [t for t, s, _ in got if s == name and after <= t < before]

    streams = [
        {"name": "a", "video": f"http://127.0.0.1:{ports['a']}/?stall_s=1"},
        {"name": "b", "video": f"http://127.0.0.1:{ports['b']}/?stall_s=1", "audio": f"wav://{path}?realtime=1&loop=1"},
        {"name": "scenes", "video": scenes(7, seconds=2, fps=10, realtime=True)},  # ends after 2 s: the others go on
    ]
    try:
        mp = _open_cameras(bundle, streams, task="localize", callback=keep)
        runner = threading.Thread(target=mp.run, kwargs={"max_seconds": 60}, daemon=True)
        runner.start()
        _wait(lambda: len(results("a")) >= 10 and len(results("b")) >= 10, 15, "both cameras' results")
        servers["a"].kill()
        servers["a"].wait()
        killed = time.monotonic()
        time.sleep(3.0)
        during = results("b", killed + 0.5, killed + 3.0)
        assert len(during) >= 0.6 * 25 * 2.5, len(during)  # b kept its 25 fps while a was gone
        assert max(np.diff(during)) < 0.5, "b's results stalled while a was lost"
        assert not results("a", killed + 1.5), "a gave results with its server gone"
        servers["a"] = serve_camera(path, ports["a"])
        back = time.monotonic()
        _wait(lambda: len(results("a", back)) >= 10, 20, "a to rejoin after its server restarted")
        assert len(results("b", back)) >= 10  # and b never stopped
    finally:
        stats = mp.stop() if "mp" in locals() else None
        for s in servers.values():
            s.kill()
            s.wait()
    per = stats["streams"]
    assert per["a"]["faults"].get("lost") == 1 and per["a"]["faults"].get("reconnect") == 1
    assert per["a"]["sources"]["video"]["reconnects"] == 1 and "lost" not in per["b"]["faults"]
    assert per["scenes"]["frames_out"] == per["scenes"]["frames_in"] == 20  # ended, while the cameras went on
    uris = {s["name"]: s["video"] for s in streams}
    assert all(source == uris[name] for _, name, source in got)  # every result routed to its own stream
    assert "errors" not in stats


def test_streams_are_checked_before_anything_opens(bundle, tmp_path):
    with pytest.raises(ConfigError, match="two streams are named 'x'"):
        stream_specs([{"name": "x", "video": scenes(1)}, {"name": "x", "video": scenes(2)}])
    with pytest.raises(ConfigError, match="unknown key\\(s\\) vidoe"):
        stream_specs([{"vidoe": scenes(1)}])
    with pytest.raises(ConfigError, match="a list of streams"):
        stream_specs(scenes(1))
    with pytest.raises(ConfigError, match="not a plain name"):
        stream_specs([{"name": "../x", "video": scenes(1)}])
    with pytest.raises(ConfigError, match="batch_wait_ms=-1"):
        MultiPipeline.from_bundle(bundle, [scenes(1)], batch_wait_ms=-1)
    with pytest.raises(DataError, match="stream s1: .*does not exist"):
        MultiPipeline.from_bundle(bundle, [scenes(1), f"file://{tmp_path}/missing.mp4"])
    bad = tmp_path / "sources.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="is not JSON") as e:
        read_sources(bad)
    assert '"video"' in e.value.fix
    bad.write_text(json.dumps({"streams": [scenes(1), {"video": scenes(2), "name": "two"}]}))
    assert [s.name for s in read_sources(bad)] == ["s0", "two"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_sdk", "run", *args], capture_output=True, text=True, timeout=180)


def test_cli_runs_several_streams_from_pairs_and_from_a_sources_file(bundle, tmp_path):
    stats, events = tmp_path / "stats.json", tmp_path / "events.jsonl"
    sources = tmp_path / "streams.json"
    sources.write_text(json.dumps([{"name": "left", "video": scenes(1, 2)}, {"name": "right", "video": scenes(2, 2)}]))
    run = _cli("--bundle", str(bundle.folder), "--sources", str(sources), "--headless", "--quiet", "--stats", str(stats), "--events", str(events))
    assert run.returncode == 0, run.stderr[-2000:]
    st = json.loads(stats.read_text())
    assert set(st["streams"]) == {"left", "right"} and st["frames_out"] == 20
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert {e["stream"] for e in lines if e["type"] == "result"} == {"left", "right"}
    pairs = _cli("--bundle", str(bundle.folder), "--video", scenes(1, 2), "--video", scenes(2, 2), "--headless", "--quiet", "--stats", str(stats))
    assert pairs.returncode == 0, pairs.stderr[-2000:]
    assert set(json.loads(stats.read_text())["streams"]) == {"s0", "s1"}
    odd = _cli("--bundle", str(bundle.folder), "--video", scenes(1), "--video", scenes(2), "--audio", "wav:///x.wav", "--headless")
    assert odd.returncode == 2 and "each --video needs its --audio" in odd.stderr and odd.stderr.count("\n") == 1
