"""The streaming pipeline end to end: real sources (generated scenes with speech, real
files), the shipped demo bundle on ONNX Runtime, tasks, batching, live pacing, the consumer
and stats. What goes in and out (inputs refused or repaired, sinks, the CLI):
test_pipeline_io.py."""

import itertools
import time

import numpy as np
import pytest
from pipeline_media import demo_bundle, speech_clip

from edge_sdk.errors import ConfigError
from edge_sdk.runtime.pipeline import Pipeline


@pytest.fixture(scope="module")
def bundle():
    return demo_bundle()


def test_synthetic_scenes_are_localized_with_stats(bundle):
    results = []
    pipe = Pipeline.from_bundle(bundle, "synthetic://av-digits?seconds=20&fps=5&seed=3", task="localize", callback=results.append)
    stats = pipe.run()
    assert stats["frames_out"] == stats["frames_in"] == 100 and stats["dropped"] == 0
    hits, heard = [], []
    for r in results:
        box = r.frame.meta["box"]
        x, y = r.values["peak_xy"]
        hits.append(box[0] <= x <= box[2] and box[1] <= y <= box[3])
        # a scene every 2 s, its digit spoken in the first: the 1 s window ending 0.6-1.4 s in holds most of it
        heard.append(0.6 <= (r.pts_ns - results[0].pts_ns) / 1e9 % 2 <= 1.4)
    hits, heard = np.array(hits), np.array(heard)
    assert hits[heard].mean() >= 0.8, hits[heard].mean()  # the model points at the spoken digit (0.97 measured)
    assert hits.mean() > hits[~heard].mean()  # and less well on windows of silence or of the scene before
    assert all(b.pts_ns > a.pts_ns for a, b in itertools.pairwise(results))
    lat = stats["latency_ms"]
    assert {"preprocess", "inference", "task", "capture_to_result", "skew"} <= set(lat) and lat["inference"]["p50"] > 0
    # scenes generated as fast as possible carry media time: latency counts from when each frame was
    # read (it was -929 ms at the median from the media time), and audio decoded ahead is no skew
    assert stats["latency_from"] == "read" and 0 < lat["capture_to_result"]["p50"] < 1000 and lat["skew"]["p99"] == 0
    assert all(0 < r.latency_ms < 1000 for r in results)  # each result says the same


def test_offline_file_and_realtime_streaming_agree(bundle, tmp_path):
    clip = speech_clip(tmp_path, bundle)
    offline = list(Pipeline.from_bundle(bundle, f"file://{clip}", task="localize"))
    # policy=block (never drop) also waits until the audio reaches each frame, as offline always can
    exact = list(Pipeline.from_bundle(bundle, f"file://{clip}?realtime=1", task="localize", policy="block"))
    assert len(offline) == len(exact) == 40
    for a, b in zip(offline, exact):  # one code path: the same numbers, frame for frame
        assert a.seq == b.seq and a.values["peak_xy"] == b.values["peak_xy"]
        assert a.values["score"] == pytest.approx(b.values["score"], abs=1e-5)
    # the live default cuts the audio that has arrived (up to 30 ms short of the frame): nearly the same
    live = list(Pipeline.from_bundle(bundle, f"file://{clip}?realtime=1", task="localize"))
    assert len(live) >= 38 and all(abs(r.skew_ns) <= 40e6 for r in live)
    near = [np.hypot(*np.subtract(a.values["peak_xy"], b.values["peak_xy"])) <= 12 for a, b in zip(offline, live) if a.seq == b.seq]
    assert np.mean(near) >= 0.8  # within 5% of the 240 px frame: audio a few ms shorter moves a peak a little


def test_offline_frames_run_in_batches_with_the_same_results(bundle, tmp_path):
    clip = speech_clip(tmp_path, bundle)
    one = Pipeline.from_bundle(bundle, f"file://{clip}", task="sync", batch=1)
    single = list(one)
    many = Pipeline.from_bundle(bundle, f"file://{clip}", task="sync", batch=8)
    batched = list(many)
    assert len(single) == len(batched) == 40
    assert one.stats.counters["inference_batches"] == 40
    assert many.stats.counters["inference_batches"] < 40  # frames queued up and ran together
    for a, b in zip(single, batched):  # sync: shifted windows per frame, a history across frames
        assert a.seq == b.seq and a.values["offset_ms"] == b.values["offset_ms"]
        assert a.values["score"] == pytest.approx(b.values["score"], abs=1e-4)
    # every window complete: one frame at a time, the queue still holds the 0.7 s of frames read
    # before the sound that the first one needs (it held 0.2 s: windows 0.5 s short, after a wait)
    assert all(r.skew_ns == 0 for r in single[:-7])


@pytest.mark.parametrize(
    "task", ["sync", pytest.param("speaker", marks=pytest.mark.slow)]
)  # speaker: 18 s; tests/test_demo.py runs it on a real clip
def test_other_tasks_run_on_a_real_clip(bundle, task, data_dir):
    clip = data_dir / "video" / "chaplin.mp4"
    results = []
    stats = Pipeline.from_bundle(bundle, f"file://{clip}", task=task, callback=results.append).run(max_seconds=20)
    assert stats["frames_out"] > 10 and results
    if task == "sync":
        assert all(abs(r.values["offset_ms"]) <= 700 and r.values["offset_confidence"] >= 0 for r in results) and "belongs" in results[-1].values
    else:
        assert all("faces" in r.values for r in results)


def test_retrieval_gallery_and_bad_task(bundle, tmp_path):
    import cv2

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"g{i}.png"), np.full((64, 64, 3), 60 * i, np.uint8))
    results = []
    Pipeline.from_bundle(
        bundle, "synthetic://av-digits?seconds=1&fps=2", task="retrieval", task_opts={"gallery": str(tmp_path)}, callback=results.append
    ).run()
    assert len(results[0].values["images_for_sound"]) == 3
    with pytest.raises(ConfigError, match="unknown task"):
        Pipeline.from_bundle(bundle, "synthetic://av-digits?seconds=1", task="segment")
    with pytest.raises(ConfigError, match="gallery") as e:
        Pipeline.from_bundle(bundle, "synthetic://av-digits?seconds=1", task="retrieval")
    assert "None" not in str(e.value) and "--gallery DIR" in e.value.fix
    from edge_sdk.runtime.tasks import make_task

    assert make_task("retrieve", gallery=str(tmp_path)).name == "retrieval"  # the demo's word works too


def test_stats_without_frames_and_the_live_rate_after_they_stop():
    from edge_sdk.runtime.clock import now_ns
    from edge_sdk.runtime.stats import Stats

    st = Stats()
    assert st.to_dict()["latency_ms"]["capture_to_result"] == {"p50": None, "p95": None, "p99": None, "n": 0}
    t = now_ns() - int(5e9)
    for i in range(20):  # 10 fps for 2 s, ending 3 s ago: the camera was lost
        st.count("frames_out")
        st.mark(t + i * 100_000_000)
    assert st.fps() == pytest.approx(10.0) and st.fps(2.0) == 0.0 and st.line().startswith("   0.0 fps")
    assert st.line().endswith("faults 0")
    for kind in ("silent_audio", "silent_audio", "lost", "black_frame", "silent_audio"):
        st.fault(kind)
    assert st.line().endswith("faults 5 (silent_audio 3, lost 1)")  # what they are, the most frequent first
    for i in range(5):  # reconnected: five frames the camera had buffered, in one burst
        st.count("frames_out")
        st.mark(now_ns() - (5 - i) * 1_000_000)
    assert st.fps(2.0) == pytest.approx(2.5)  # five in the last 2 s, not 1000 per second
    young = Stats()
    for i in range(3):  # a run younger than the window: its own rate
        young.count("frames_out")
        young.mark(now_ns() - (2 - i) * 100_000_000)
    assert young.fps(2.0) == pytest.approx(10.0, rel=0.05)


def test_audio_tower_at_its_own_rate_and_mjpeg_preview(bundle):
    import urllib.request

    from edge_sdk.runtime.sinks import MjpegSink

    sink = MjpegSink(port=0)
    got = {}

    def fetch():
        with urllib.request.urlopen(sink.url, timeout=10) as r:
            got["head"] = r.read(400)

    import threading

    t = threading.Thread(target=fetch, daemon=True)
    t.start()
    pipe = Pipeline.from_bundle(bundle, "synthetic://av-digits?seconds=4&fps=5&realtime=1", task="localize", audio_hop_ms=1000, sinks=[sink])
    stats = pipe.run()
    t.join(5)
    assert stats["frames_out"] == 20
    assert 4 <= stats["counters"]["audio_inferences"] <= 6  # once a second, not on every frame
    assert b"--frame" in got.get("head", b"") and b"image/jpeg" in got["head"]


def test_audio_hop_holds_for_a_file_read_in_batches(bundle):
    # A file is read as fast as it decodes, frames taken up to 8 at a time: the hop still
    # counts in the file's own time, across and within batches.
    pipe = Pipeline.from_bundle(bundle, "synthetic://av-digits?seconds=4&fps=10", task="localize", audio_hop_ms=500)
    stats = pipe.run()
    assert stats["frames_out"] == 40 and stats["counters"]["inference_batches"] < 40  # batched
    assert stats["counters"]["audio_inferences"] == 8  # at 0.0, 0.5, ... 3.5 s


def test_live_sync_waits_for_the_sound_after_each_frame_without_dropping(bundle):
    """sync scores audio up to +0.7 s after the frame: on a live source each frame waits for it
    in the queue (was: a 0.25 s wait, then windows with missing audio and most frames dropped)."""
    results = []
    pipe = Pipeline.from_bundle(bundle, "synthetic://av-digits?seconds=3&fps=10&realtime=1", task="sync", callback=results.append)
    stats = pipe.run()
    assert stats["latency_from"] == "capture" and stats["dropped"] == 0 and stats["frames_out"] >= 25
    inside = results[:-7]  # the last 0.7 s of frames: the stream ends before their sound does
    assert all(r.skew_ns == 0 for r in inside) and min(r.latency_ms for r in inside) >= 700  # every window complete


def test_live_sync_stays_a_look_ahead_late_when_inference_falls_behind(bundle):
    """Inference slower than the camera: frames whose sound is complete pile up; the pipeline
    skips to the newest of them (counted as dropped) rather than letting latency grow."""
    results = []
    pipe = Pipeline.from_bundle(bundle, "synthetic://av-digits?seconds=5&fps=10&realtime=1", task="sync", callback=results.append)
    run_both = pipe.towers.embed_both

    def slow(*a, **kw):
        time.sleep(0.15)  # 6.7 inferences per second for 10 frames per second
        return run_both(*a, **kw)

    pipe.towers.embed_both = slow
    stats = pipe.run()
    lat = [r.latency_ms for r in results]
    assert stats["dropped"] > 0 and max(lat) < 700 + 1000  # the look-ahead and a little: no growth (it grew to 4.2 s)
    assert np.mean(lat[-10:]) < 700 + 600, lat


def test_a_slow_consumer_of_a_file_gets_every_result_in_order(bundle):
    with Pipeline.from_bundle(bundle, "synthetic://av-digits?seconds=5&fps=10", task="localize") as pipe:  # 50 > 32 queued
        time.sleep(1.0)  # started, not yet taken: the file waits for its consumer
        seqs = []
        for r in pipe:
            seqs.append(r.seq)
            time.sleep(0.06)  # slower than inference
    stats = pipe.stop()
    assert seqs == list(range(50)) and stats["results_dropped"] == 0 and stats["seconds"] > 0  # the end pushed none out
    assert list(pipe) == []  # a finished pipeline yields nothing more (it used to wait forever)
    with pytest.raises(ConfigError, match="already started"):
        pipe.start()
    stopped = Pipeline.from_bundle(bundle, "synthetic://av-digits?seconds=5&fps=10", task="localize")
    stopped.run(on_result=lambda r: r.seq < 4)
    assert list(stopped) == []  # stopped early: what was left queued is stale


def test_a_sound_file_beside_a_video_file_keeps_pace_with_a_slow_consumer(bundle, data_dir):
    # Both decode as fast as they are taken; the sound, far cheaper, used to wrap the 8 s ring
    # while a slow consumer held the video back, and the frames' windows were cut from zeros.
    rain = data_dir / "video" / "rain.mp3"
    pipe = Pipeline.from_bundle(bundle, "synthetic://av-digits?seconds=12&fps=10", audio=f"wav://{rain}", task="localize")
    for _ in pipe:
        time.sleep(0.03)
    stats = pipe.stop()
    assert stats["frames_out"] == 120 and stats["faults"].get("silent_audio", 0) <= 5  # its first 0.3 s are quiet


def test_stop_from_a_callback_ends_the_run_cleanly(bundle):
    seen = []

    def callback(result):
        seen.append(result.seq)
        if len(seen) == 5:
            pipe.stop()  # on the inference thread: it must not join itself

    pipe = Pipeline.from_bundle(bundle, "synthetic://av-digits?seconds=5&fps=10", task="localize", callback=callback)
    stats = pipe.run()
    assert seen[:5] == [0, 1, 2, 3, 4] and len(seen) < 50 and "errors" not in stats


def test_queue_size_below_one_is_refused(bundle):
    with pytest.raises(ConfigError, match="queue_size=0"):
        Pipeline.from_bundle(bundle, "synthetic://av-digits?seconds=1", queue_size=0)


def test_every_attribute_is_created_in_init_and_the_backend_is_named(bundle):
    pipe = Pipeline.from_bundle(bundle, "synthetic://av-digits?seconds=1&fps=5", task="localize", batch=2)
    before = set(vars(pipe))
    stats = pipe.run()
    assert set(vars(pipe)) == before, set(vars(pipe)) ^ before
    assert pipe.backend == stats["backend"] == "onnxruntime/int8" and pipe.config.batch == 2


def test_the_pipeline_reads_no_queue_internals():
    import ast
    import inspect

    from edge_sdk.runtime import pipeline

    tree = ast.parse(inspect.getsource(pipeline))
    attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert not attrs & {"mutex", "not_empty", "not_full", "all_tasks_done", "queue"}
