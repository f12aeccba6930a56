"""Models that see time in the runtime: a stack of frames 1/frame_rate apart ending at the
present one, built from the camera's own rate (runtime/stacks.py), and a real multi-frame
model (avsync_s, random weights) streamed through the pipeline on generated scenes."""

import numpy as np
import pytest

from edge_sdk.errors import DataError
from edge_sdk.runtime.frames import VideoFrame
from edge_sdk.runtime.stacks import FrameStack


def frame(i: int, fps: float = 30.0) -> VideoFrame:
    """Frame i of a camera at ``fps``; its picture's value is i (a 4x4 cut keeps it)."""
    return VideoFrame(int(i * 1e9 / fps), i, np.full((8, 8, 3), i, np.uint8))


def ids(stack: np.ndarray) -> list[int]:
    return [int(s[0, 0, 0]) for s in stack]


def test_a_stack_takes_the_frames_nearest_its_times_at_any_camera_rate():
    st = FrameStack(5, 10.0, (4, 4), keep_s=0.7)  # frames may wait 0.7 s for their sound
    for i in range(60):  # 2 s of a 30 fps camera
        st.add(frame(i))
    assert ids(st.input(frame(40))) == [28, 31, 34, 37, 40]  # a frame that waited (sync's look-ahead): its own past, not newer frames
    assert ids(st.input(frame(45))) == [33, 36, 39, 42, 45]  # 0.1 s apart, ending at the present frame
    odd = FrameStack(3, 10.0, (4, 4))
    for i in (0, 1, 2, 5, 6, 7):  # 25 fps with a hole (frames 3 and 4 never came)
        odd.add(frame(i, 25.0))
    assert ids(odd.input(frame(7, 25.0))) == [2, 5, 7]  # 80 ms and 200 ms back: the nearest frames that exist


def test_the_start_of_a_stream_repeats_its_first_frame_and_history_is_bounded():
    st = FrameStack(5, 10.0, (4, 4), keep_s=0.0)
    st.add(frame(0, 10.0))
    st.add(frame(1, 10.0))
    assert ids(st.input(frame(1, 10.0))) == [0, 0, 0, 0, 1]
    assert ids(st.input(frame(0, 10.0))) == [0, 0, 0, 0, 0]  # nothing before the first: the frame itself
    for i in range(2, 100):  # decoded far ahead of inference
        st.add(frame(i, 10.0))
    assert len(st.recent) == 54  # bounded all the same: the stack's 0.4 s and 0.5 s more at up to 60 fps
    st.input(frame(99, 10.0))
    assert len(st.recent) == 6  # inference let go of what no later stack needs
    single = FrameStack(1, 0.0, (4, 4))
    single.add(frame(3))
    assert single.input(frame(3)).shape == (4, 4, 3) and not single.recent  # one frame: no history kept


def test_a_multi_frame_model_streams_through_the_pipeline_with_the_sync_task():
    torch = pytest.importorskip("torch")
    from edge_sdk.models.avnet import AVNet
    from edge_sdk.models.torch_runner import TorchTowers
    from edge_sdk.runtime.opening import open_sources
    from edge_sdk.runtime.pipeline import Pipeline
    from edge_sdk.spec import get_spec

    torch.manual_seed(0)
    model = AVNet(get_spec("avsync_s.avdigits")).eval()
    contract = model.contract
    seen = []
    towers = TorchTowers(model, contract)
    run_both = towers.embed_both

    def embed_both(waves, images):
        seen.append(images.shape)
        return run_both(waves, images)

    towers.embed_both = embed_both
    video, audio = open_sources("synthetic://av-digits?seconds=3&fps=10", None, contract.audio.sample_rate)
    results = []
    stats = Pipeline(towers, contract, video, audio, "sync", callback=results.append).run()
    assert stats["frames_out"] == 30 and len(results) == 30
    assert seen and all(s[1:] == (5, 3, contract.image.height, contract.image.width) for s in seen)  # stacks of 5 frames
    assert all(abs(r.values["offset_ms"]) <= 700 and np.isfinite(r.values["offset_confidence"]) for r in results)


def test_calibration_pairs_of_a_model_that_sees_time_are_clip_stacks(tmp_path):
    from edge_sdk.media.pairs import read_pairs, write_pair
    from edge_sdk.quant.calib import load_calib_set, write_calib_set
    from edge_sdk.spec import get_spec

    spec = get_spec("avsync_s.avdigits")
    write_calib_set(tmp_path / "c", spec, n=8)
    calib = load_calib_set(tmp_path / "c", spec, min_clips=8)
    assert calib.images.shape == (8, 5, 3, 96, 96) and calib.waves.shape == (8, 8000)
    moving = np.abs(np.diff(calib.images, axis=1)).mean()
    assert moving > 0.1  # the digit pulses from frame to frame: stacks of a clip, not stills
    write_pair(tmp_path / "one.npz", calib.waves[0], np.zeros((96, 96, 3), np.uint8), 16000)  # one frame: a still stack
    write_pair(tmp_path / "bad.npz", calib.waves[0], np.zeros((3, 96, 96, 3), np.uint8), 16000)
    assert read_pairs([tmp_path / "one.npz"], spec.contract())[1].shape == (1, 5, 3, 96, 96)
    with pytest.raises(DataError, match=r"expected \(96, 96, 3\) or a stack of 5 \(5, 96, 96, 3\)"):
        read_pairs([tmp_path / "bad.npz"], spec.contract())
