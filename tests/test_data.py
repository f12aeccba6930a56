import gzip
import shutil
import wave

import numpy as np
import pytest

from edge_sdk.errors import DataError
from edge_sdk.media.audio import read_wav
from edge_sdk.media.avclips import AVDigitClips
from edge_sdk.media.avdigits import AVDigits, mask_sound, place_sound
from edge_sdk.media.corpora import load_fsdd, load_mnist
from edge_sdk.media.digits import load_bank, synthetic_bank
from edge_sdk.spec import get_spec

SPEC = get_spec("avnet_t.avdigits")


def _write_wav(path, rate=8000, channels=1, n=800):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.sin(np.arange(n * channels) / 5) * 10000).astype("<i2").tobytes())


def test_real_fsdd_and_mnist_read(fsdd, mnist):
    recs, rate = load_fsdd(fsdd)
    assert rate == 8000 and len(recs) == 2000
    assert {r.speaker for r in recs} == {"george", "jackson", "nicolas", "yweweler"}
    x, y = load_mnist(mnist)
    assert x.shape == (8000, 28, 28) and x.dtype == np.uint8 and set(y.tolist()) == set(range(10))
    samples, r, ch = read_wav(recs[0].path)
    assert r == 8000 and ch == 1 and -1 <= samples.min() < samples.max() <= 1


def test_splits_are_speaker_and_image_disjoint(fsdd, mnist):
    train = load_bank(fsdd, mnist, "train", 16000, ("george",))
    test = load_bank(fsdd, mnist, "test", 16000, ("george",))
    assert set(test.speakers) == {"george"} and "george" not in set(train.speakers)
    assert len(train.images) == 6000 and len(test.images) == 2000
    # 8 kHz recordings resampled to the model's 16 kHz: twice the samples.
    first_train = next(r for r in load_fsdd(fsdd)[0] if r.speaker != "george")
    assert abs(len(train.sounds[0]) - 2 * len(read_wav(first_train.path)[0])) <= 2


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_fsdd(tmp_path / "nope")
    with pytest.raises(DataError, match="no .*wav files"):
        load_fsdd(tmp_path)
    with pytest.raises(DataError, match="images-idx3-ubyte.gz"):
        load_mnist(tmp_path)


def test_wav_of_another_rate_or_channel_count_is_named(tmp_path):
    _write_wav(tmp_path / "0_a_0.wav")
    _write_wav(tmp_path / "1_a_0.wav", rate=16000)
    with pytest.raises(DataError, match=r"1_a_0.wav: sample rate 16000.*sox"):
        load_fsdd(tmp_path)
    (tmp_path / "1_a_0.wav").unlink()
    _write_wav(tmp_path / "2_a_0.wav", channels=2)
    with pytest.raises(DataError, match=r"2_a_0.wav: 2 channels"):
        load_fsdd(tmp_path)


def test_corrupt_wav_is_named(tmp_path):
    (tmp_path / "3_a_0.wav").write_bytes(b"RIFF\x00\x00garbage")
    with pytest.raises(DataError, match="3_a_0.wav"):
        load_fsdd(tmp_path)
    with pytest.raises(DataError, match="3_a_0.wav"):
        read_wav(tmp_path / "3_a_0.wav")


def test_corrupt_idx_files(tmp_path, mnist):
    shutil.copy(mnist / "labels-idx1-ubyte.gz", tmp_path)
    with gzip.open(mnist / "images-idx3-ubyte.gz") as f:
        raw = f.read()
    with gzip.open(tmp_path / "images-idx3-ubyte.gz", "wb") as f:
        f.write(raw[:5000])
    with pytest.raises(DataError, match="truncated IDX"):
        load_mnist(tmp_path)
    with gzip.open(tmp_path / "images-idx3-ubyte.gz", "wb") as f:
        f.write(b"\x00\x00\x08\x01" + raw[4:])
    with pytest.raises(DataError, match="wrong IDX magic"):
        load_mnist(tmp_path)
    (tmp_path / "images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="not a readable gzip"):
        load_mnist(tmp_path)


@pytest.fixture(scope="module")
def bank():
    return synthetic_bank("train", SPEC.audio.sample_rate)


def test_scenes_are_deterministic_and_change_with_epoch(bank):
    a, b = AVDigits(bank, SPEC, 8, seed=3), AVDigits(bank, SPEC, 8, seed=3)
    np.testing.assert_array_equal(a[5]["image"], b[5]["image"])
    np.testing.assert_array_equal(a[5]["wave"], b[5]["wave"])
    b.set_epoch(1)
    assert not np.array_equal(a[5]["image"], b[5]["image"])


def test_a_mix_of_scene_kinds_draws_k_per_scene(bank):
    ds = AVDigits(bank, SPEC, 40, seed=1)
    ds.set_k([1, 3])
    counts = [len(ds[i]["digits"]) for i in range(len(ds))]
    assert set(counts) == {1, 3} and counts == [len(ds[i]["digits"]) for i in range(len(ds))]
    singles = [ds[i] for i in range(len(ds)) if counts[i] == 1]
    assert all(it["label"] == it["digits"][0] for it in singles)
    assert max(it["box"][2] - it["box"][0] for it in singles) > 0.4 * SPEC.image.size  # a lone digit is drawn larger
    with pytest.raises(ValueError, match="1..10"):
        ds.set_k([0, 3])


def test_scene_contract(bank):
    ds = AVDigits(bank, SPEC, 20, k=3, train=False)
    for i in range(len(ds)):
        it = ds[i]
        s = SPEC.image.size
        assert it["image"].shape == (3, s, s) and it["image"].min() >= 0 and it["image"].max() <= 255
        assert it["wave"].shape == (SPEC.audio.num_samples,) and np.abs(it["wave"]).max() <= 1
        assert len(set(it["digits"].tolist())) == 3 and it["label"] in it["digits"]
        x0, y0, x1, y1 = it["box"]
        assert 0 <= x0 < x1 <= s and 0 <= y0 < y1 <= s
    with pytest.raises(IndexError):
        ds[20]


def test_spoken_digit_box_holds_its_ink(bank):
    ds = AVDigits(bank, SPEC, 10, k=1, train=False)
    for i in range(10):
        it = ds[i]
        x0, y0, x1, y1 = it["box"].astype(int)
        img = it["image"].max(0)
        inside = img[y0:y1, x0:x1].max()
        outside = np.concatenate([img[:y0].ravel(), img[y1:].ravel(), img[:, :x0].ravel(), img[:, x1:].ravel()])
        assert inside >= 150 and (outside.size == 0 or outside.max() < inside)


def test_clip_pulses_with_its_own_loudness(bank):
    clips = AVDigitClips(bank, SPEC, 6, train=False)
    corr = []
    for i in range(len(clips)):
        c = clips.item(i)
        area = np.array([(x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in c["boxes"]])
        hop = int(0.05 * SPEC.audio.sample_rate)
        loud = np.array([np.sqrt(np.mean(c["track"][e - hop : e] ** 2)) for e in c["frame_end"]])
        corr.append(np.corrcoef(area, loud)[0, 1])
    assert np.nanmean(corr) > 0.8
    view = clips[0]
    assert view["wave_shifted"].shape == (4, SPEC.audio.num_samples)
    assert not np.allclose(view["wave"], view["wave_shifted"][0])


def test_synthetic_bank_covers_every_class_and_disjoint_pitches():
    tr, te = synthetic_bank("train", 16000), synthetic_bank("test", 16000)
    assert set(tr.sound_labels.tolist()) == set(range(10)) == set(te.image_labels.tolist())
    assert not set(tr.speakers) & set(te.speakers)


def test_masks_zero_bands_and_spans_and_are_off_by_default():
    t = np.arange(16000) / 16000
    tone = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    cut = [mask_sound(tone, np.random.default_rng(i)) for i in range(50)]
    assert all(c.shape == tone.shape and c.dtype == np.float32 and np.isfinite(c).all() for c in cut)
    assert np.mean([np.mean(c == 0) > 0.005 for c in cut]) > 0.8  # a time span zeroed
    # A band over 1 kHz removed in some draws: the tone's energy drops there.
    assert min(float(np.sum(c**2)) for c in cut) < 0.5 * float(np.sum(tone**2))
    plain = place_sound(tone, 16000, np.random.default_rng(1), train=True)
    np.testing.assert_array_equal(plain, place_sound(tone, 16000, np.random.default_rng(1), train=True, mask=False))
    masked = place_sound(tone, 16000, np.random.default_rng(1), train=True, mask=True)
    assert not np.array_equal(plain, masked)
