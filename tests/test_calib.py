"""Calibration sets: written from training scenes, hashed, and checked against the spec."""

import numpy as np
import pytest

from edge_sdk.errors import DataError
from edge_sdk.media.pairs import MIN_CLIPS
from edge_sdk.quant.calib import load_calib_set, write_calib_set
from edge_sdk.spec import get_spec

SPEC = get_spec("student_s")


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    return write_calib_set(tmp_path_factory.mktemp("calib") / "set", SPEC, n=40)


def test_written_set_loads_with_a_stable_hash(calib_dir):
    a, b = load_calib_set(calib_dir, SPEC), load_calib_set(calib_dir, SPEC)
    assert len(a) == 40 and a.sha256 == b.sha256 and len(a.sha256) == 64
    assert a.waves.shape == (40, SPEC.audio.num_samples) and a.images.shape == (40, 3, 96, 96)
    assert a.images.max() > 100 and np.abs(a.waves).max() > 0.01


def test_hash_changes_when_a_pair_changes(calib_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(calib_dir, copy)
    with np.load(copy / "scene_00000.npz") as z:
        d = dict(z)
    d["wave"][0] += 0.01
    np.savez(copy / "scene_00000.npz", **d)
    assert load_calib_set(copy, SPEC).sha256 != load_calib_set(calib_dir, SPEC).sha256


def test_too_small_a_set_says_how_many_are_needed(calib_dir, tmp_path):
    import shutil

    small = tmp_path / "small"
    small.mkdir()
    for f in sorted(calib_dir.glob("*.npz"))[:5]:
        shutil.copy(f, small)
    with pytest.raises(DataError, match=f"has 5 pairs; at least {MIN_CLIPS} are needed"):
        load_calib_set(small, SPEC)


def test_another_sample_rate_is_refused_naming_the_file(calib_dir, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(calib_dir, bad)
    with np.load(bad / "scene_00003.npz") as z:
        d = dict(z)
    d["sample_rate"] = np.int64(8000)
    np.savez(bad / "scene_00003.npz", **d)
    with pytest.raises(DataError, match=r"scene_00003.npz: audio at 8000 Hz, the model takes 16000 Hz"):
        load_calib_set(bad, SPEC)


def test_missing_empty_and_corrupt_sets(tmp_path, calib_dir):
    import shutil

    with pytest.raises(DataError, match="does not exist"):
        load_calib_set(tmp_path / "nope", SPEC)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no .npz pairs or video files"):
        load_calib_set(tmp_path / "empty", SPEC)
    broken = tmp_path / "broken"
    shutil.copytree(calib_dir, broken)
    (broken / "scene_00001.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="scene_00001.npz: not a calibration pair"):
        load_calib_set(broken, SPEC)


def test_a_large_set_is_read_evenly_not_from_its_start(calib_dir):
    full = load_calib_set(calib_dir, SPEC, min_clips=1)
    part = load_calib_set(calib_dir, SPEC, min_clips=1, max_pairs=len(full) // 2)
    assert len(part) == len(full) // 2 and f"{len(part)} of {len(full)} .npz pairs, evenly spaced" in part.source
    np.testing.assert_array_equal(part.waves[-1], full.waves[2 * (len(part) - 1)])  # every second pair, to the end
    assert part.sha256 != full.sha256  # the hash names the pairs used


def test_refuses_to_write_into_a_non_empty_folder(calib_dir):
    with pytest.raises(DataError, match="is not empty"):
        write_calib_set(calib_dir, SPEC, n=4)


def test_a_folder_of_real_clips_is_a_calibration_set(data_dir):
    video = data_dir / "video"
    if not any(video.iterdir()):
        pytest.skip("no clips in ../shared/data/video")
    calib = load_calib_set(video, SPEC, max_pairs=64)
    assert len(calib) >= MIN_CLIPS and "video files" in calib.source


def _edit_pairs(src, dest, edit, files):
    import shutil

    shutil.copytree(src, dest)
    for f in files(dest):
        with np.load(f) as z:
            d = dict(z)
        edit(d)
        np.savez(f, **d)
    return dest


def test_a_pair_with_nan_is_named(calib_dir, tmp_path):
    bad = _edit_pairs(calib_dir, tmp_path / "bad", lambda d: d["wave"].__setitem__(7, np.nan), lambda p: [p / "scene_00002.npz"])
    with pytest.raises(DataError, match=r"scene_00002.npz: its wave holds NaN or inf"):
        load_calib_set(bad, SPEC)


def test_a_set_of_0_to_1_images_is_refused_but_one_dark_float_frame_is_fine(calib_dir, tmp_path):
    def unit(d):
        d["image"] = d["image"].astype(np.float32) / 255.0

    dark = _edit_pairs(calib_dir, tmp_path / "dark", unit, lambda p: [p / "scene_00002.npz"])
    assert len(load_calib_set(dark, SPEC)) == 40
    scaled = _edit_pairs(calib_dir, tmp_path / "scaled", unit, lambda p: sorted(p.glob("*.npz")))
    with pytest.raises(DataError, match=r"every image is within 0..1; the model takes RGB in 0..255"):
        load_calib_set(scaled, SPEC)


def test_a_clip_without_sound_is_named_with_the_folder(tmp_path):
    import shutil
    import subprocess

    if not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg is not installed (apt install ffmpeg)")
    (tmp_path / "clips").mkdir()
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=10", "-t", "1", "-an", str(tmp_path / "clips" / "mute.mp4")],
        check=True,
    )
    with pytest.raises(DataError) as e:
        load_calib_set(tmp_path / "clips", SPEC)
    assert f"calibration folder {tmp_path / 'clips'}" in str(e.value) and "mute.mp4 has no audio track" in str(e.value)
    assert "skip_bad" not in str(e.value) and "remove or re-encode" in e.value.fix
