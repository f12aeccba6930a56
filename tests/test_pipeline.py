"""The streaming pipeline end to end: real sources (generated scenes with speech, real
files), the shipped demo bundle on ONNX Runtime, tasks, sinks, stats and faults."""

import json
import struct
import subprocess
import sys
import time
import wave

import numpy as np
import pytest

from edge_sdk.bundle import shipped_bundles
from edge_sdk.errors import ConfigError, DataError, ModelFileError
from edge_sdk.runtime.pipeline import Pipeline


@pytest.fixture(scope="module")
def bundle():
    if "avnet_s-demo" not in shipped_bundles():
        pytest.skip("the demo bundle is not shipped in this checkout")
    from edge_sdk.bundle import read_bundle

    return read_bundle(shipped_bundles()["avnet_s-demo"])


def _clip(tmp_path, bundle, seconds=4):
    from edge_sdk.media.clipfile import write_clip
    from edge_sdk.media.corpora import default_data_dir

    root = default_data_dir()
    fsdd, mnist = (root / "fsdd" / "recordings", root / "mnist") if root else (None, None)
    return write_clip(tmp_path / "clip.mp4", bundle.spec, seconds=seconds, fps=10, size=(320, 240), fsdd=fsdd, mnist=mnist)


def test_synthetic_scenes_are_localized_with_stats(bundle):
    results = []
    pipe = Pipeline.from_bundle(bundle, "synthetic://av-digits?seconds=6&fps=5&seed=3", task="localize", callback=results.append)
    stats = pipe.run()
    assert stats["frames_out"] == stats["frames_in"] == 30 and stats["dropped"] == 0
    hits = []
    for r in results:
        box = r.frame.meta["box"]
        x, y = r.values["peak_xy"]
        hits.append(box[0] <= x <= box[2] and box[1] <= y <= box[3])
    assert np.mean(hits) >= 0.6, np.mean(hits)  # the model points at the spoken digit
    assert all(b.pts_ns > a.pts_ns for a, b in zip(results, results[1:]))
    lat = stats["latency_ms"]
    assert {"preprocess", "inference", "task", "capture_to_result", "skew"} <= set(lat) and lat["inference"]["p50"] > 0
    # scenes generated as fast as possible carry media time: latency counts from when each frame was
    # read (it was -929 ms at the median from the media time), and audio decoded ahead is no skew
    assert stats["latency_from"] == "read" and 0 < lat["capture_to_result"]["p50"] < 1000 and lat["skew"]["p99"] == 0
    assert all(0 < r.latency_ms < 1000 for r in results)  # each result says the same


def test_offline_file_and_realtime_streaming_agree(bundle, tmp_path):
    clip = _clip(tmp_path, bundle)
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
    clip = _clip(tmp_path, bundle)
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


def test_centre_crop_resize_matches_one_area_resize():
    import cv2

    from edge_sdk.media.image import center_crop_resize

    yy, xx = np.mgrid[0:721, 0:1283]
    rgb = np.stack([(xx * 255 // 1282), (yy * 255 // 720), ((xx // 40 + yy // 40) % 2) * 255], -1).astype(np.uint8)
    for h, w, size in ((720, 1280, 96), (721, 1283, 96), (480, 640, 64), (96, 128, 96), (60, 80, 96)):
        img = np.ascontiguousarray(rgb[:h, :w])
        s = min(h, w)
        sq = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        ref = cv2.resize(sq, (size, size), interpolation=cv2.INTER_AREA if s > size else cv2.INTER_LINEAR)
        got = center_crop_resize(img, size)
        assert got.shape == (size, size, 3) and got.dtype == np.uint8
        diff = np.abs(got.astype(int) - ref)
        assert diff.mean() < 1.0 and diff.max() <= 12, (h, w, size, diff.mean(), diff.max())


@pytest.mark.parametrize("task", ["sync", "speaker"])
def test_other_tasks_run_on_a_real_clip(bundle, task, data_dir):
    clip = data_dir / "video" / "chaplin.mp4"
    results = []
    stats = Pipeline.from_bundle(bundle, f"file://{clip}", task=task, callback=results.append).run(max_seconds=20)
    assert stats["frames_out"] > 10 and results
    if task == "sync":
        assert all(abs(r.values["offset_ms"]) <= 400 for r in results) and "belongs" in results[-1].values
    else:
        assert all("faces" in r.values for r in results)


def test_retrieval_gallery_and_bad_task(bundle, tmp_path):
    import cv2

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"g{i}.png"), np.full((64, 64, 3), 60 * i, np.uint8))
    results = []
    Pipeline.from_bundle(bundle, "synthetic://av-digits?seconds=1&fps=2", task="retrieval", task_opts={"gallery": str(tmp_path)},
                         callback=results.append).run()
    assert len(results[0].values["images_for_sound"]) == 3
    with pytest.raises(ConfigError, match="unknown task"):
        Pipeline.from_bundle(bundle, "synthetic://av-digits?seconds=1", task="segment")
    with pytest.raises(ConfigError, match="gallery") as e:
        Pipeline.from_bundle(bundle, "synthetic://av-digits?seconds=1", task="retrieval")
    assert "None" not in str(e.value) and "--gallery DIR" in e.value.fix
    from edge_sdk.runtime.tasks import make_task

    assert make_task("retrieve", gallery=str(tmp_path)).name == "retrieval"  # the demo's word works too


def test_video_without_audio_keeps_running_and_counts_silence(bundle, tmp_path, caplog):
    clip = _clip(tmp_path, bundle, seconds=2)
    mute = tmp_path / "mute.mp4"
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(clip), "-an", "-c:v", "copy", str(mute)], check=True)
    Pipeline.from_bundle(bundle, f"file://{mute}", audio=f"wav://{clip}")  # sound from elsewhere: nothing to say
    assert "no audio track" not in caplog.text
    stats = Pipeline.from_bundle(bundle, f"file://{mute}", task="localize").run()
    assert stats["frames_out"] == 20 and stats["faults"].get("silent_audio", 0) == 20
    assert "mute.mp4 has no audio track; the localize task needs sound: pass --audio mic://default" in caplog.text


def _wav(path, x, rate: int = 16000):
    """A float32 WAV (IEEE float, format 3): what a recorder or numpy pipeline may leave NaN in."""
    data = np.asarray(x, "<f4").tobytes()
    path.write_bytes(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 3, 1, rate, rate * 4, 4, 32)
                     + b"data" + struct.pack("<I", len(data)) + data)
    return path


def test_nonfinite_audio_is_silenced_and_counted_never_nan_in_events(bundle, tmp_path, caplog):
    from edge_sdk.runtime.sinks import JsonlSink

    x = 0.3 * np.sin(np.arange(40000) / 16000 * 2 * np.pi * 440)
    x[8000:8100], x[24000:24005] = np.nan, np.inf
    results = []
    pipe = Pipeline.from_bundle(bundle, "synthetic://av-digits?seconds=2&fps=5", audio=f"wav://{_wav(tmp_path / 'nan.wav', x)}",
                                prefer="onnxruntime", precision="fp32", sinks=[JsonlSink(tmp_path / "e.jsonl")], callback=results.append)
    stats = pipe.run()
    assert stats["frames_out"] == 10 and stats["faults"]["nonfinite_audio"] >= 2
    assert caplog.text.count("audio holds NaN/inf samples") == 1  # said once, counted always
    assert all(np.isfinite(r.values["score"]) for r in results)

    def no_nan(name):
        raise AssertionError(f"{name} in the events file")

    assert len([json.loads(line, parse_constant=no_nan) for line in (tmp_path / "e.jsonl").read_text().splitlines()]) == 10


def test_the_towers_refuse_what_the_spec_does_not_take(bundle, caplog):
    """Every backend of the bundle: a DataError naming the input and the spec's shape, where the
    runtimes said InvalidArgument, 'set_inputs() failed with error 0x10' or 'Output size is too small'."""
    from edge_sdk.runtime.backends import open_towers

    n, s = bundle.spec.audio.num_samples, bundle.spec.image.size
    nan_wave, inf_image = np.zeros((3, n), np.float32), np.zeros((2, 3, s, s), np.float32)
    nan_wave[2, 5], inf_image[1, 0, 0, 0] = np.nan, np.inf
    for c in bundle.choices():
        towers = open_towers(bundle, c.backend, c.precision)
        for bad, said in ((np.zeros((2, n // 2), np.float32), rf"wave must be float32 \[B, {n}\] \(1 s at 16 kHz, mono.*got \(2, {n // 2}\)"),
                          (np.zeros(n, np.float32), rf"got \({n},\).*wave\[None\]"),
                          (np.zeros((0, n), np.float32), "the batch is empty"),
                          (np.zeros((1, n), np.int16), "int16: x / 32768"),
                          (nan_wave, r"wave holds NaN/inf \(batch item 2\)")):
            with pytest.raises(DataError, match=said):
                towers.embed_audio(bad)
        for bad, said in ((np.zeros((1, s, s, 3), np.float32), rf"image must be float32 \[B, 3, {s}, {s}\].*channels last"),
                          (np.zeros((1, 3, 2 * s, 2 * s), np.float32), f"resize to {s} x {s}"),
                          (inf_image, r"image holds NaN/inf \(batch item 1\)")):
            with pytest.raises(DataError, match=said):
                towers.embed_image(bad)
        with pytest.raises(DataError, match="wave holds NaN/inf"):
            towers.embed_both(nan_wave, np.zeros((3, 3, s, s), np.float32))
    towers.embed_image(np.full((2, 3, s, s), 0.5, np.float32))
    towers.embed_image(np.full((2, 3, s, s), 0.5, np.float32))
    assert caplog.text.count("images in 0..1: the model takes RGB in 0..255") == 1
    caplog.clear()
    open_towers(bundle).embed_image(np.ones((1, 3, s, s), np.float32))  # a dark 0..255 frame: nothing to say
    assert "0..1" not in caplog.text
    towers.embed_audio(np.full((2, n), 1200.0, np.float32))  # float PCM left at int16 scale
    towers.embed_audio(np.full((2, n), 1200.0, np.float32))
    assert caplog.text.count("waves at RMS 1200: the model takes float audio in [-1, 1]") == 1


def test_a_source_without_the_track_its_role_needs_is_refused_at_open(bundle, tmp_path):
    with wave.open(str(tmp_path / "rain.wav"), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes(np.zeros(16000, np.int16).tobytes())
    for uri in (f"file://{tmp_path / 'rain.wav'}", f"wav://{tmp_path / 'rain.wav'}"):
        with pytest.raises(DataError, match="rain.wav has no video track; the video source needs pictures") as e:
            Pipeline.from_bundle(bundle, uri)
        assert "--audio" in e.value.fix
    mute = _clip(tmp_path, bundle, seconds=1)
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(mute), "-an", "-c:v", "copy", str(tmp_path / "mute.mp4")], check=True)
    with pytest.raises(DataError, match="mute.mp4 has no audio track; the audio source needs sound"):
        Pipeline.from_bundle(bundle, "synthetic://av-digits?seconds=1", audio=f"file://{tmp_path / 'mute.mp4'}")


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


def test_speaker_faces_outside_the_model_square_have_no_score_not_nan():
    from types import SimpleNamespace

    from edge_sdk.runtime.frames import VideoFrame
    from edge_sdk.runtime.tasks import Geometry, make_task

    try:
        task = make_task("speaker")
    except ConfigError as e:
        pytest.skip(str(e))
    # a 320x240 frame: the model sees x 40..280; the first face lies right of it
    task.detector = SimpleNamespace(detectMultiScale=lambda *a, **k: [(290, 100, 30, 40), (100, 100, 40, 40)])
    rng = np.random.default_rng(0)
    values, _ = task(VideoFrame(0, 0, np.zeros((240, 320, 3), np.uint8)), rng.normal(size=(1, 8)), rng.normal(size=8),
                     rng.normal(size=(8, 6, 6)), Geometry((240, 320), 96, (6, 6)))
    assert values["faces"][0]["score"] is None and values["speaker"] == 1
    json.dumps(values, allow_nan=False)


def test_cli_run_writes_events_and_stats(bundle, tmp_path):
    out = subprocess.run([sys.executable, "-m", "edge_sdk", "run", "--bundle", str(bundle.folder), "--video",
                          "synthetic://av-digits?seconds=2&fps=5", "--task", "localize", "--headless", "--quiet",
                          "--events", str(tmp_path / "e.jsonl"), "--stats", str(tmp_path / "s.json"),
                          "--out-video", str(tmp_path / "o.mp4")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-1500:]
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["frames_out"] == 10 and {"frames_in", "dropped", "faults", "latency_ms"} <= set(stats)
    events = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert sum(e["type"] == "result" for e in events) == 10 and "peak_xy" in events[0]
    assert (tmp_path / "o.mp4").stat().st_size > 1000
    bad = subprocess.run([sys.executable, "-m", "edge_sdk", "run", "--bundle", str(bundle.folder), "--video", "flie:///x.mp4",
                          "--headless"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "file" in bad.stderr


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
    pipe = Pipeline.from_bundle(bundle, "synthetic://av-digits?seconds=4&fps=5&realtime=1", task="localize",
                                audio_hop_ms=1000, sinks=[sink])
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


def test_a_manifest_that_does_not_match_its_models_is_refused_by_name(bundle, tmp_path):
    import shutil

    from edge_sdk.bundle import read_bundle

    shutil.copytree(bundle.folder, tmp_path / "b")
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    m["spec"]["image"]["size"] = 128  # preprocessing edited by hand: the graphs still take 96 px
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelFileError, match="is not the one the bundle was exported with"):  # the spec's digest
        read_bundle(tmp_path / "b")
    m.pop("spec_sha256", None)  # a manifest without the digest, of a spec no registry knows: the graphs still tell
    m["spec"]["name"] = "my_spec"
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ConfigError, match="do not take the preprocessing its manifest declares"):
        Pipeline.from_bundle(read_bundle(tmp_path / "b"), "synthetic://av-digits?seconds=1")


def test_live_sync_waits_for_the_sound_after_each_frame_without_dropping(bundle):
    """sync scores audio up to +0.4 s after the frame: on a live source each frame waits for it
    in the queue (was: a 0.25 s wait, then windows with missing audio and most frames dropped)."""
    results = []
    pipe = Pipeline.from_bundle(bundle, "synthetic://av-digits?seconds=3&fps=10&realtime=1", task="sync", callback=results.append)
    stats = pipe.run()
    assert stats["latency_from"] == "capture" and stats["dropped"] == 0 and stats["frames_out"] >= 25
    inside = results[:-4]  # the last 0.4 s of frames: the stream ends before their sound does
    assert all(r.skew_ns == 0 for r in inside) and min(r.latency_ms for r in inside) >= 400  # every window complete


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
    assert stats["dropped"] > 0 and max(r.latency_ms for r in results) < 1000  # grew to 4.2 s before


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
    for r in pipe:
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


def test_a_sink_that_fails_at_close_loses_neither_the_others_nor_the_statistics(bundle, tmp_path):
    from edge_sdk.runtime.sinks import JsonlSink

    class FullDisk:
        def __init__(self, after):
            self.n, self.after = 0, after

        def result(self, r):
            self.n += 1
            if self.n > self.after:
                raise OSError(28, "No space left on device")

        def gap(self, g):
            pass

        def close(self):
            raise OSError(28, "No space left on device")

    for after in (3, 100):  # full during the run, or only when the last buffer is flushed
        events = tmp_path / f"e{after}.jsonl"
        sinks = [FullDisk(after), JsonlSink(events)]
        stats = Pipeline.from_bundle(bundle, "synthetic://av-digits?seconds=2&fps=5", task="localize", sinks=sinks).run()
        assert stats["frames_out"] == 10 and len(events.read_text().splitlines()) == 10  # the sink after it was finished
        assert stats["errors"] == ["sink FullDisk: OSError: [Errno 28] No space left on device"]  # said once
        assert sinks[0].n == min(after + 1, 10)  # left out after failing


def test_queue_size_below_one_is_refused(bundle):
    with pytest.raises(ConfigError, match="queue_size=0"):
        Pipeline.from_bundle(bundle, "synthetic://av-digits?seconds=1", queue_size=0)


def test_sinks_given_by_uri_write_the_events_and_a_video_with_the_files_sound(bundle, tmp_path):
    clip = _clip(tmp_path, bundle)  # 4 s at 10 fps, with speech
    (tmp_path / "out").mkdir()
    pipe = Pipeline.from_bundle(bundle, f"file://{clip}", task="localize",
                                sinks=[str(tmp_path / "out" / "e.jsonl"), f"file://{tmp_path}/out/o.mp4?fps=10"])
    stats = pipe.run()
    events = [json.loads(line) for line in (tmp_path / "out" / "e.jsonl").read_text().splitlines()]
    assert stats["frames_out"] == 40 and [e["seq"] for e in events if e["type"] == "result"] == list(range(40))
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,avg_frame_rate:format=duration",
                            "-of", "json", str(tmp_path / "out" / "o.mp4")], capture_output=True, text=True, check=True)
    info = json.loads(probe.stdout)
    kinds = {s["codec_type"]: s for s in info["streams"]}
    assert set(kinds) == {"video", "audio"} and kinds["video"]["avg_frame_rate"] == "10/1"  # the clip's sound, muxed back
    assert abs(float(info["format"]["duration"]) - 4.0) < 0.3
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["e.jsonl", "o.mp4"]  # no temporary left behind


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
