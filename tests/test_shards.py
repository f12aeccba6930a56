"""Shards (issue 24): ``edge-sdk shard`` on the real clips of ../shared/data/video, the tar layout
and index, bad clips skipped, damaged shards refused, every ``--shards`` form, the split over
ranks and workers, and the stream's exact replay (the resume of a killed run is in
test_shards_train.py, multi-node torchrun in test_shards_multinode.py)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from edge_sdk.contract import AudioContract, ImageContract, ModelContract
from edge_sdk.data.shard_stream import StreamPlan, WorkerStream, batches_before
from edge_sdk.data.shard_writer import ShardOptions, write_shards
from edge_sdk.data.shards import ShardReader, cut_window, open_shards
from edge_sdk.errors import DataError
from edge_sdk.spec import get_spec

SPEC = get_spec("avnet_xs.avdigits")
OPTS = ShardOptions(fps=5.0, max_clip_seconds=10.0, clips_per_shard=1)


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edge_sdk", *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.fixture(scope="module")
def shards(data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards") / "set"
    write_shards(data_dir / "video", out, SPEC.contract(), OPTS, progress=False)
    return out


def test_real_clips_become_indexed_shards(shards, data_dir):
    index = json.loads((shards / "index.json").read_text())
    t = index["totals"]
    # 4 clips with sound (rain.mp3 has no video and is not a video file); the 30 s clip is cut into 3 pieces of 10 s
    assert (t["files"], t["used"], t["skipped"], t["clips"], t["shards"]) == (4, 4, 0, 7, 7)
    sources = sorted({c["source"] for r in index["shards"] for c in r["clips"]})
    assert sources == ["big_buck_bunny_0_30.webm", "chaplin.mp4", "example2.mp4", "smpte-2997.mp4"]
    seconds = {c["source"]: 0.0 for r in index["shards"] for c in r["clips"]}
    for r in index["shards"]:
        data = (shards / r["name"]).read_bytes()
        assert len(data) == r["bytes"] and hashlib.sha256(data).hexdigest() == r["sha256"]
        for c in r["clips"]:
            seconds[c["source"]] += c["seconds"]
    assert seconds["big_buck_bunny_0_30.webm"] == pytest.approx(30.0, abs=0.25)
    assert seconds["chaplin.mp4"] == pytest.approx(9.6, abs=0.25) and seconds["example2.mp4"] == pytest.approx(2.0, abs=0.25)
    assert t["frames"] == sum(c["frames"] for r in index["shards"] for c in r["clips"])
    with tarfile.open(shards / index["shards"][0]["name"]) as tar:
        names = tar.getnames()
    clip = index["shards"][0]["clips"][0]
    assert f"{clip['key']}.json" in names and f"{clip['key']}.wav" in names
    assert sum(n.endswith(".jpg") for n in names) == clip["frames"]


def test_windows_match_a_direct_decode(shards, data_dir):
    """A window's sound is the audio that ends at its frame's time, its picture the frame shown then."""
    from edge_sdk.data.video import decode_av
    from edge_sdk.media.audio import audio_window

    s = open_shards(str(shards))
    i = next(n for n, r in enumerate(s.rows) if r["clips"][0]["source"] == "chaplin.mp4")
    reader = ShardReader(s, i)
    clip = reader.read()
    frames, audio, start = decode_av(data_dir / "video" / "chaplin.mp4", 16000, size=96)
    times = np.array([t for t, _ in frames])
    for k in (0, 7, 20, clip.meta["frames"] - 1):
        w = cut_window(clip, k, SPEC.contract())
        assert w["image"].shape == (3, 96, 96) and w["wave"].shape == (16000,)
        want = audio_window(audio, start, w["pts_s"], 16000, 16000)
        assert np.abs(w["wave"] - want).max() < 1e-3  # 16-bit PCM
        shown = frames[int(np.searchsorted(times, w["pts_s"] + 1e-6)) - 1][1].transpose(2, 0, 1)
        assert np.abs(w["image"] - shown).mean() < 4.0  # JPEG quality 90
    reader.close()


def test_frame_stacks_for_a_multi_frame_contract(shards):
    stack = ModelContract("stack", AudioContract(16000, 0.5), ImageContract(96, 96, frames=4, frame_rate=2.5), 8)
    clip = ShardReader(open_shards(str(shards)), 0).read()
    one = cut_window(clip, 9, SPEC.contract())
    w = cut_window(clip, 9, stack)
    assert w["image"].shape == (4, 3, 96, 96) and w["wave"].shape == (8000,)
    assert np.array_equal(w["image"][3], one["image"])  # the last frame is the present one
    assert np.array_equal(w["image"][2], cut_window(clip, 7, SPEC.contract())["image"])  # 2.5 fps from 5 fps: every other
    early = cut_window(clip, 1, stack)["image"]
    first = cut_window(clip, 0, SPEC.contract())["image"]
    assert all(np.array_equal(early[i], first) for i in range(3))  # before the clip: its first frame


def test_bad_clips_are_skipped_and_listed(tmp_path, data_dir):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(data_dir / "video" / "example2.mp4", videos)
    (videos / "cut.mp4").write_bytes((data_dir / "video" / "chaplin.mp4").read_bytes()[:20000])
    (videos / "notes.webm").write_text("not a video")
    out = _cli("shard", "--videos", videos, "--out", tmp_path / "s", "--quiet")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["used"] == 1 and report["skipped"] == 2 and report["shards"] == 1
    assert sorted(s["path"] for s in report["skipped_files"]) == ["cut.mp4", "notes.webm"]
    assert all(s["reason"] for s in report["skipped_files"])
    assert "skipping" in out.stderr and "cut.mp4" in out.stderr


def test_parallel_decoding_writes_the_same_shards(tmp_path, data_dir):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("example2.mp4", "chaplin.mp4"):
        shutil.copy(data_dir / "video" / name, videos)
    one = write_shards(videos, tmp_path / "one", SPEC.contract(), OPTS, progress=False)
    two = write_shards(videos, tmp_path / "two", SPEC.contract(), OPTS, progress=False, jobs=2)
    assert [r["sha256"] for r in one["shards"]] == [r["sha256"] for r in two["shards"]] and len(one["shards"]) == 2


def test_a_folder_with_no_usable_clip_writes_nothing_and_fails(tmp_path, data_dir):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes((data_dir / "video" / "chaplin.mp4").read_bytes()[:3000])
    out = _cli("shard", "--videos", videos, "--out", tmp_path / "s", "--quiet")
    assert out.returncode == 2 and "none of the 1 clips" in out.stderr and "-- fix:" in out.stderr
    assert not (tmp_path / "s").exists()
    missing = _cli("shard", "--videos", tmp_path / "nope", "--out", tmp_path / "s2", "--quiet")
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_a_damaged_shard_is_refused_by_name(shards, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(shards, copy)
    name = json.loads((copy / "index.json").read_text())["shards"][1]["name"]
    data = bytearray((copy / name).read_bytes())
    data[-20000] ^= 0xFF  # inside the last clip's frames: the tar still parses
    (copy / name).write_bytes(bytes(data))
    s = open_shards(str(copy))
    reader = ShardReader(s, 1)
    for _ in s.frames(1):
        reader.read()
    with pytest.raises(DataError, match=f"{name} does not match its index"):
        reader.verify()
    (copy / name).write_bytes(bytes(data[:4096]))
    with pytest.raises(DataError, match=f"{name}"):
        ShardReader(s, 1).read()


def test_every_shards_form_and_its_errors(shards, tmp_path):
    names = sorted(p.name for p in shards.glob("*.tar"))
    assert open_shards(str(shards)).names == names
    assert open_shards(str(shards / "shard-*.tar")).names == names
    assert open_shards(str(shards / "shard-{000001..000003}.tar")).names == names[1:4]
    assert open_shards(f"file://{shards}/shard-{{000000..000006}}.tar").names == names
    piped = open_shards(f"pipe:cat {shards}/shard-{{000002..000004}}.tar", index=str(shards / "index.json"))
    assert piped.names == names[2:5]
    with _Closing(ShardReader(piped, 0)) as r:  # a pipe: streams like a file
        assert r.read().meta["frames"] > 0
    with pytest.raises(DataError, match="--shard-index"):
        open_shards(f"pipe:cat {shards}/shard-000000.tar")
    with pytest.raises(DataError, match="do not exist"):
        open_shards(str(shards / "shard-{000005..000009}.tar"))
    with pytest.raises(DataError, match="matches no file"):
        open_shards(str(tmp_path / "*.tar"))
    stray = tmp_path / "stray"
    shutil.copytree(shards, stray)
    shutil.copy(stray / names[0], stray / "other.tar")
    with pytest.raises(DataError, match="other.tar is not in"):
        open_shards(str(stray))
    (stray / "index.json").unlink()
    with pytest.raises(DataError, match="no shard index"):
        open_shards(str(stray / names[0]))


class _Closing:
    def __init__(self, reader):
        self.reader = reader

    def __enter__(self):
        return self.reader

    def __exit__(self, *exc):
        self.reader.close()


def test_ranks_and_workers_read_disjoint_shards_each_epoch(shards):
    s = open_shards(str(shards))
    for epoch in range(3):
        plans = [StreamPlan(s, 7, r, 2, 2, 100, SPEC.contract()) for r in range(2)]
        parts = [set(p.worker_shards(epoch, w)) for p in plans for w in range(2)]
        assert sum(len(x) for x in parts) == len(s.urls) and set().union(*parts) == set(range(len(s.urls)))
    orders = {tuple(StreamPlan(s, 7, 0, 2, 1, 100, SPEC.contract()).rank_shards(e)) for e in range(4)}
    assert len(orders) > 1  # a fresh order each epoch
    with pytest.raises(DataError, match="re-shard into at least 8 shards"):
        StreamPlan(s, 7, 0, 8, 1, 100, SPEC.contract())


def test_a_resumed_stream_replays_to_the_same_batches(shards):
    """Skipping k batches (replayed from the index, unread) gives what batches k, k+1 ... were, across a
    second round of the worker's shards."""
    s = open_shards(str(shards))
    plan = StreamPlan(s, 3, 1, 2, 1, 40, SPEC.contract())
    held = sum(sum(s.frames(i)) for i in plan.worker_shards(0, 0))
    n = held // 16 + 3  # past the end of the first round
    straight = WorkerStream(plan, 0, 0).batches(16)
    want = [next(straight) for _ in range(n)]
    resumed = WorkerStream(plan, 0, 0).batches(16, skip_batches=n - 3)
    for b in want[-3:]:
        got = next(resumed)
        assert np.array_equal(got["image"], b["image"]) and np.array_equal(got["wave"], b["wave"])
    assert [batches_before(w, 5, 2) for w in range(2)] == [3, 2]
    other = next(WorkerStream(StreamPlan(s, 4, 1, 2, 1, 40, SPEC.contract()), 0, 0).batches(16))
    assert not np.array_equal(other["wave"], want[0]["wave"])  # another seed, another order


def test_shards_cut_for_another_sample_rate_are_refused(shards):
    other = ModelContract("other", AudioContract(22050, 1.0), ImageContract(96, 96), 8)
    with pytest.raises(DataError, match="16000 Hz, the model takes 22050 Hz") as e:
        open_shards(str(shards)).check_contract(other)
    assert "edge-sdk shard" in e.value.fix
    open_shards(str(shards)).check_contract(SPEC.contract())
