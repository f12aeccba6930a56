"""The streaming pipeline's inputs and outputs: sources without the track their role needs,
towers and manifests that do not take the spec's input, non-finite audio, the centre crop,
task values that stay JSON; sinks (by URI, failing at close) and ``edge-sdk run``. The
streaming itself: test_pipeline.py."""

import json
import subprocess
import sys
import wave

import numpy as np
import pytest
from pipeline_media import demo_bundle, float_wav, speech_clip

from edge_sdk.errors import ConfigError, DataError, ModelFileError
from edge_sdk.runtime.pipeline import Pipeline


@pytest.fixture(scope="module")
def bundle():
    return demo_bundle()


def test_centre_crop_resize_matches_one_area_resize():
    import cv2

    from edge_sdk.media.image import center_crop_resize

    yy, xx = np.mgrid[0:721, 0:1283]
    rgb = np.stack([(xx * 255 // 1282), (yy * 255 // 720), ((xx // 40 + yy // 40) % 2) * 255], -1).astype(np.uint8)
    for h, w, size in ((720, 1280, 96), (721, 1283, 96), (480, 640, 64), (96, 128, 96), (60, 80, 96)):
        img = np.ascontiguousarray(rgb[:h, :w])
        s = min(h, w)
        sq = img[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        ref = cv2.resize(sq, (size, size), interpolation=cv2.INTER_AREA if s > size else cv2.INTER_LINEAR)
        got = center_crop_resize(img, size)
        assert got.shape == (size, size, 3) and got.dtype == np.uint8
        diff = np.abs(got.astype(int) - ref)
        assert diff.mean() < 1.0 and diff.max() <= 12, (h, w, size, diff.mean(), diff.max())


def test_video_without_audio_keeps_running_and_counts_silence(bundle, tmp_path, caplog):
    clip = speech_clip(tmp_path, bundle, seconds=2)
    mute = tmp_path / "mute.mp4"
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(clip), "-an", "-c:v", "copy", str(mute)], check=True)
    Pipeline.from_bundle(bundle, f"file://{mute}", audio=f"wav://{clip}")  # sound from elsewhere: nothing to say
    assert "no audio track" not in caplog.text
    stats = Pipeline.from_bundle(bundle, f"file://{mute}", task="localize").run()
    assert stats["frames_out"] == 20 and stats["faults"].get("silent_audio", 0) == 20
    assert "mute.mp4 has no audio track; the localize task needs sound: pass --audio mic://default" in caplog.text


def test_nonfinite_audio_is_silenced_and_counted_never_nan_in_events(bundle, tmp_path, caplog):
    from edge_sdk.runtime.sinks import JsonlSink

    x = 0.3 * np.sin(np.arange(40000) / 16000 * 2 * np.pi * 440)
    x[8000:8100], x[24000:24005] = np.nan, np.inf
    results = []
    pipe = Pipeline.from_bundle(
        bundle,
        "synthetic://av-digits?seconds=2&fps=5",
        audio=f"wav://{float_wav(tmp_path / 'nan.wav', x)}",
        prefer="onnxruntime",
        precision="fp32",
        sinks=[JsonlSink(tmp_path / "e.jsonl")],
        callback=results.append,
    )
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
        for bad, said in (
            (np.zeros((2, n // 2), np.float32), rf"wave must be float32 \[B, {n}\] \(1 s at 16 kHz, mono.*got \(2, {n // 2}\)"),
            (np.zeros(n, np.float32), rf"got \({n},\).*wave\[None\]"),
            (np.zeros((0, n), np.float32), "the batch is empty"),
            (np.zeros((1, n), np.int16), "int16: x / 32768"),
            (nan_wave, r"wave holds NaN/inf \(batch item 2\)"),
        ):
            with pytest.raises(DataError, match=said):
                towers.embed_audio(bad)
        for bad, said in (
            (np.zeros((1, s, s, 3), np.float32), rf"image must be float32 \[B, 3, {s}, {s}\].*channels last"),
            (np.zeros((1, 3, 2 * s, 2 * s), np.float32), f"resize to {s} x {s}"),
            (inf_image, r"image holds NaN/inf \(batch item 1\)"),
        ):
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
    mute = speech_clip(tmp_path, bundle, seconds=1)
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(mute), "-an", "-c:v", "copy", str(tmp_path / "mute.mp4")], check=True)
    with pytest.raises(DataError, match="mute.mp4 has no audio track; the audio source needs sound"):
        Pipeline.from_bundle(bundle, "synthetic://av-digits?seconds=1", audio=f"file://{tmp_path / 'mute.mp4'}")


def test_a_manifest_that_does_not_match_its_models_is_refused_by_name(bundle, tmp_path):
    import shutil

    from edge_sdk.bundle import read_bundle

    shutil.copytree(bundle.folder, tmp_path / "b")
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    m["contract"]["image"]["height"] = m["contract"]["image"]["width"] = 128  # edited by hand: the graphs still take 96 px
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelFileError, match="was edited after export"):  # the contract's digest
        read_bundle(tmp_path / "b")
    from edge_sdk.contract import ModelContract

    m["contract"]["name"] = "my_model"  # and the digest recomputed to match: the graphs still tell
    m["contract_sha256"] = ModelContract.from_dict(m["contract"]).digest()
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ConfigError, match="do not take the preprocessing its manifest declares"):
        Pipeline.from_bundle(read_bundle(tmp_path / "b"), "synthetic://av-digits?seconds=1")


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
    values, _ = task(
        VideoFrame(0, 0, np.zeros((240, 320, 3), np.uint8)),
        rng.normal(size=(1, 8)),
        rng.normal(size=8),
        rng.normal(size=(8, 6, 6)),
        Geometry((240, 320), 96, (6, 6)),
    )
    assert values["faces"][0]["score"] is None and values["speaker"] == 1
    json.dumps(values, allow_nan=False)


def test_cli_run_writes_events_and_stats(bundle, tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_sdk",
            "run",
            "--bundle",
            str(bundle.folder),
            "--video",
            "synthetic://av-digits?seconds=2&fps=5",
            "--task",
            "localize",
            "--headless",
            "--quiet",
            "--events",
            str(tmp_path / "e.jsonl"),
            "--stats",
            str(tmp_path / "s.json"),
            "--out-video",
            str(tmp_path / "o.mp4"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-1500:]
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["frames_out"] == 10 and {"frames_in", "dropped", "faults", "latency_ms"} <= set(stats)
    events = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert sum(e["type"] == "result" for e in events) == 10 and "peak_xy" in events[0]
    assert (tmp_path / "o.mp4").stat().st_size > 1000
    bad = subprocess.run(
        [sys.executable, "-m", "edge_sdk", "run", "--bundle", str(bundle.folder), "--video", "flie:///x.mp4", "--headless"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "file" in bad.stderr


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


def test_sinks_given_by_uri_write_the_events_and_a_video_with_the_files_sound(bundle, tmp_path):
    clip = speech_clip(tmp_path, bundle)  # 4 s at 10 fps, with speech
    (tmp_path / "out").mkdir()
    pipe = Pipeline.from_bundle(
        bundle, f"file://{clip}", task="localize", sinks=[str(tmp_path / "out" / "e.jsonl"), f"file://{tmp_path}/out/o.mp4?fps=10"]
    )
    stats = pipe.run()
    events = [json.loads(line) for line in (tmp_path / "out" / "e.jsonl").read_text().splitlines()]
    assert stats["frames_out"] == 40 and [e["seq"] for e in events if e["type"] == "result"] == list(range(40))
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,avg_frame_rate:format=duration",
            "-of",
            "json",
            str(tmp_path / "out" / "o.mp4"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    info = json.loads(probe.stdout)
    kinds = {s["codec_type"]: s for s in info["streams"]}
    assert set(kinds) == {"video", "audio"} and kinds["video"]["avg_frame_rate"] == "10/1"  # the clip's sound, muxed back
    assert abs(float(info["format"]["duration"]) - 4.0) < 0.3
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["e.jsonl", "o.mp4"]  # no temporary left behind
