"""VideoFolderDataset on the real clips in ../shared/data/video: decoding, A/V alignment, errors."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="PyAV is not installed (pip install 'edge_sdk[live]')")

from edge_sdk.data.video import VideoFolderDataset, decode_av  # noqa: E402
from edge_sdk.errors import DataError  # noqa: E402
from edge_sdk.media.audio import audio_window  # noqa: E402
from edge_sdk.spec import get_spec  # noqa: E402

VIDEO_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "video"
SR = 16000
# clip -> length in seconds, from ../shared/data/README.md
CLIPS = {"chaplin.mp4": 9.6, "big_buck_bunny_0_30.webm": 30.0, "smpte-2997.mp4": 10.0}
SPEC = get_spec("avnet_s.avdigits")


def clip(name: str) -> Path:
    p = VIDEO_DIR / name
    if not p.is_file():
        pytest.skip(f"real clip {p} is absent (../shared/data/video is not on this machine)")
    return p


@pytest.fixture(scope="module")
def decoded():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = decode_av(clip(name), SR, size=SPEC.image.size)
        return cache[name]

    return get


def folder_with(tmp_path: Path, *names: str) -> Path:
    for n in names:
        (tmp_path / n).symlink_to(clip(n))
    return tmp_path


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_decode_real_clip(decoded, name):
    frames, audio, start = decoded(name)
    length = CLIPS[name]
    pts = np.array([t for t, _ in frames])
    assert np.all(np.diff(pts) > 0), "frame timestamps must increase"
    assert pts[0] < 0.5 and abs(pts[-1] - length) < 0.5, (pts[0], pts[-1], length)
    assert 0 <= start < 0.5
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size - length * SR) < 0.15 * SR, (audio.size / SR, length)
    assert 0.01 < np.abs(audio).max() <= 1.0
    img = frames[len(frames) // 2][1]
    assert img.shape == (96, 96, 3) and img.dtype == np.uint8 and img.std() > 1


def test_full_resolution_frames():
    frames, _, _ = decode_av(clip("chaplin.mp4"), SR, max_frames=2)
    assert len(frames) == 2 and frames[0][1].shape == (360, 640, 3) and frames[0][1].dtype == np.uint8


def test_item_wave_ends_at_frame_pts(tmp_path, decoded):
    root = folder_with(tmp_path, "chaplin.mp4")
    ds = VideoFolderDataset(root, SPEC, max_frames_per_file=75)  # the first 3 s at 25 fps
    assert len(ds) == 75 and ds.skipped == []
    frames, audio, start = decoded("chaplin.mp4")
    n = SPEC.audio.num_samples
    item = ds[60]
    assert item["path"] == str(root / "chaplin.mp4")
    assert item["pts_s"] == pytest.approx(frames[60][0]) and item["pts_s"] == pytest.approx(2.4)
    end = int(round((item["pts_s"] - start) * SR))
    np.testing.assert_array_equal(item["wave"], audio[end - n : end])
    assert item["wave"].shape == (n,) and item["wave"].dtype == np.float32 and item["wave"].std() > 1e-3
    # Independent check: PyAV's own resampler straight to 16 kHz mono; the best lag must be ~0.
    with av.open(str(clip("chaplin.mp4"))) as c:
        rs = av.AudioResampler(format="flt", layout="mono", rate=SR)
        ref = np.concatenate([o.to_ndarray().reshape(-1) for f in c.decode(audio=0) for o in rs.resample(f)])
    lags = range(-40, 41)
    corr = [np.dot(item["wave"], ref[end - n + k : end + k]) for k in lags]
    assert abs(lags[int(np.argmax(corr))]) <= 2
    # A frame 0.5 s in: the first half of its window precedes the audio and is zero-padded.
    early = ds[int(np.argmin([abs(ds[i]["pts_s"] - 0.5) for i in range(20)]))]
    pad = n - int(round((early["pts_s"] - start) * SR))
    assert np.all(early["wave"][:pad] == 0) and early["wave"][pad:].std() > 1e-3


def test_items_images_and_frame_step(tmp_path):
    root = folder_with(tmp_path, "smpte-2997.mp4", "big_buck_bunny_0_30.webm")
    ds = VideoFolderDataset(root, SPEC, frame_step=5, max_frames_per_file=4)
    assert len(ds) == 8 and [p.name for p in ds.files] == ["big_buck_bunny_0_30.webm", "smpte-2997.mp4"]
    assert [Path(ds[i]["path"]).name for i in (0, 3, 4, 7)] == ["big_buck_bunny_0_30.webm"] * 2 + ["smpte-2997.mp4"] * 2
    for i in range(len(ds)):
        it = ds[i]
        assert it["image"].shape == (3, 96, 96) and it["image"].dtype == np.float32
        assert it["image"].min() >= 0 and it["image"].max() <= 255
        assert it["wave"].shape == (SPEC.audio.num_samples,)
    assert ds[len(ds) - 1]["image"].std() > 1  # Big Buck Bunny opens on black; SMPTE bars do not
    assert [round(ds[i]["pts_s"], 2) for i in range(4, 8)] == [0.0, 0.2, 0.4, 0.6]  # every 5th frame at 25 fps
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_audio_window_pads_both_ends():
    audio = np.arange(1, 11, dtype=np.float32)
    np.testing.assert_array_equal(audio_window(audio, 0.0, 0.3, 10, 5), [0, 0, 1, 2, 3])
    np.testing.assert_array_equal(audio_window(audio, 0.5, 1.7, 10, 5), [8, 9, 10, 0, 0])


def test_missing_and_empty_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        VideoFolderDataset(tmp_path / "nope", SPEC)
    with pytest.raises(DataError, match=r"no video files.*\.mp4.*\.webm"):
        VideoFolderDataset(tmp_path, SPEC)


def test_audio_only_file_is_not_video(tmp_path):
    root = folder_with(tmp_path, "rain.mp3")
    with pytest.raises(DataError, match="no video files") as e:
        VideoFolderDataset(root, SPEC)
    assert ".mkv" in str(e.value)


def test_truncated_file(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(clip("chaplin.mp4").read_bytes()[:2048])
    with pytest.raises(DataError, match="broken.mp4") as e:
        VideoFolderDataset(tmp_path, SPEC)
    assert "Traceback" not in str(e.value) and e.value.fix
    folder_with(tmp_path, "example2.mp4")
    ds = VideoFolderDataset(tmp_path, SPEC, max_frames_per_file=3, skip_bad=True)
    assert len(ds) == 3 and Path(ds[0]["path"]).name == "example2.mp4"
    assert [Path(p).name for p, _ in ds.skipped] == ["broken.mp4"]


def test_all_files_bad_with_skip_bad(tmp_path):
    (tmp_path / "sub").mkdir()  # nested folders are searched too
    (tmp_path / "sub" / "cut.webm").write_bytes(b"\x1a\x45\xdf\xa3" + bytes(100))
    (tmp_path / "junk.mkv").write_bytes(b"not a video")
    with pytest.raises(DataError, match="none of the 2 video files") as e:
        VideoFolderDataset(tmp_path, SPEC, skip_bad=True)
    assert "cut.webm" in str(e.value) and "junk.mkv" in str(e.value)


def _strip_audio(src: Path, dst: Path, seconds: float = 1.0) -> None:
    if shutil.which("ffmpeg"):
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-an", "-t", str(seconds), "-c:v", "copy", str(dst)], check=True)
        return
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:  # no ffmpeg CLI: remux with PyAV
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        for pkt in inp.demux(vin):
            if pkt.dts is None:
                continue
            if pkt.dts * vin.time_base > seconds:
                break
            pkt.stream = vout
            out.mux(pkt)


def test_video_without_audio(tmp_path):
    silent = tmp_path / "silent.mp4"
    _strip_audio(clip("chaplin.mp4"), silent)
    with av.open(str(silent)) as c:
        assert c.streams.video and not c.streams.audio
    with pytest.raises(DataError, match="silent.mp4 has no audio") as e:
        VideoFolderDataset(tmp_path, SPEC)
    assert "VideoFolderDataset needs clips with sound" in str(e.value)
    folder_with(tmp_path, "example2.mp4")
    ds = VideoFolderDataset(tmp_path, SPEC, max_frames_per_file=2, skip_bad=True)
    assert len(ds) == 2 and ds.skipped[0][0] == str(silent) and "audio" in ds.skipped[0][1]
