"""The streaming pipeline end to end: real sources (generated scenes with speech, real
files), the shipped demo bundle on ONNX Runtime, tasks, sinks, stats and faults."""

import json
import subprocess
import sys

import numpy as np
import pytest

from edge_sdk.bundle import shipped_bundles
from edge_sdk.errors import ConfigError
from edge_sdk.runtime.pipeline import Pipeline, pick_backend


@pytest.fixture(scope="module")
def bundle():
    if "avnet_s-demo" not in shipped_bundles():
        pytest.skip("the demo bundle is not shipped in this checkout")
    from edge_sdk.bundle import read_bundle

    return read_bundle(shipped_bundles()["avnet_s-demo"])


def _clip(tmp_path, bundle, seconds=4):
    from edge_sdk.data.clipfile import write_clip
    from edge_sdk.data.sources import default_data_dir

    root = default_data_dir()
    fsdd, mnist = (root / "fsdd" / "recordings", root / "mnist") if root else (None, None)
    return write_clip(tmp_path / "clip.mp4", bundle.spec, seconds=seconds, fps=10, size=(320, 240), fsdd=fsdd, mnist=mnist)


def test_backend_choice_prefers_int8_onnxruntime_on_this_cpu(bundle):
    c = pick_backend(bundle)
    assert (c.backend, c.precision) == ("onnxruntime", "int8")
    assert pick_backend(bundle, prefer="executorch").backend == "executorch"
    with pytest.raises(Exception, match="--backend"):
        pick_backend(bundle, prefer="tensorrt")


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

    from edge_sdk.data.video import center_crop_resize

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
    with pytest.raises(ConfigError, match="gallery"):
        Pipeline.from_bundle(bundle, "synthetic://av-digits?seconds=1", task="retrieval")


def test_video_without_audio_keeps_running_and_counts_silence(bundle, tmp_path):
    clip = _clip(tmp_path, bundle, seconds=2)
    mute = tmp_path / "mute.mp4"
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(clip), "-an", "-c:v", "copy", str(mute)], check=True)
    stats = Pipeline.from_bundle(bundle, f"file://{mute}", task="localize").run()
    assert stats["frames_out"] == 20 and stats["faults"].get("silent_audio", 0) == 20


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


def test_a_manifest_that_does_not_match_its_models_is_refused_by_name(bundle, tmp_path):
    import shutil

    from edge_sdk.bundle import read_bundle

    shutil.copytree(bundle.folder, tmp_path / "b")
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    m["spec"]["image"]["size"] = 128  # preprocessing edited by hand: the graphs still take 96 px
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ConfigError, match="do not take the preprocessing its manifest declares"):
        Pipeline.from_bundle(read_bundle(tmp_path / "b"), "synthetic://av-digits?seconds=1")
