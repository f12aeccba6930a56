"""The A/V aligner and the task geometry: pure logic, exact numbers."""

import numpy as np

from edge_sdk.runtime.align import AudioRing
from edge_sdk.runtime.frames import AudioBlock
from edge_sdk.runtime.tasks import Geometry

SR = 1000  # 1 sample per millisecond keeps the arithmetic readable


def _block(t_ms, values, seq=0):
    return AudioBlock(pts_ns=int(t_ms * 1e6), seq=seq, samples=np.asarray(values, np.float32), sample_rate=SR)


def test_window_ends_at_the_frame_time_and_reports_skew():
    ring = AudioRing(SR, seconds=1.0)
    ring.push(_block(0, np.arange(100)))  # samples 0..99 at t = 0..99 ms
    ring.push(_block(100, np.arange(100, 200)))
    w, skew = ring.window(int(150e6), 10)  # the 10 samples ending at 150 ms
    assert w.tolist() == list(range(140, 150)) and skew == int(50e6)
    w, skew = ring.window(int(250e6), 100)  # audio has not reached 250 ms: newest samples, negative skew
    assert w.tolist() == list(range(100, 200)) and skew == -int(50e6)


def test_audio_that_stopped_before_the_window_gives_silence_not_old_sound():
    ring = AudioRing(SR, seconds=1.0)
    ring.push(_block(0, np.arange(1, 201)))  # audio up to 200 ms, then the microphone stalls
    w, skew = ring.window(int(299e6), 100)  # late by 99 ms, less than the window: shifted
    assert w.tolist() == list(range(101, 201)) and skew == -int(99e6)
    w, skew = ring.window(int(450e6), 100)  # the window starts after the last sample: nothing to hear
    assert not w.any() and skew == -int(250e6)


def test_holes_are_filled_with_silence_and_counted_and_old_audio_expires():
    ring = AudioRing(SR, seconds=0.5)
    ring.push(_block(0, np.ones(100)))
    ring.push(_block(200, 2 * np.ones(100)))  # 100 ms missing
    w, _ = ring.window(int(300e6), 300)
    assert ring.gaps == 1 and w[:100].tolist() == [1] * 100 and w[100:200].tolist() == [0] * 100 and w[200:].tolist() == [2] * 100
    ring.push(_block(300, 3 * np.ones(400)))  # the ring holds 500 samples: the first block is overwritten
    w, _ = ring.window(int(700e6), 600)
    assert w[:100].tolist() == [0] * 100 and w[-400:].tolist() == [3] * 400


def test_a_window_across_the_ring_wrap_is_contiguous():
    ring = AudioRing(SR, seconds=0.5)  # 500 samples
    ring.push(_block(0, np.arange(400)))
    ring.push(_block(400, np.arange(400, 700)))  # wraps: samples 500..699 overwrite the oldest
    w, skew = ring.window(int(700e6), 450)
    assert w.tolist() == list(range(250, 700)) and skew == 0
    w, _ = ring.window(int(650e6), 100)  # ends before the newest sample, inside the wrapped part
    assert w.tolist() == list(range(550, 650))


def test_wait_until_times_out_without_audio():
    ring = AudioRing(SR)
    assert ring.wait_until(int(1e9), 0.05) is False
    ring.push(_block(0, np.zeros(2000)))
    assert ring.wait_until(int(1e9), 0.05) is True


def test_geometry_maps_cells_into_the_centre_crop_of_a_wide_frame():
    g = Geometry((720, 1280), 96, (12, 12), offset=(0, 0))  # 720x720 crop starting at x=280, 7.5 px per model px
    assert g.cell_to_frame(0, 0) == (280.0, 0.0)
    x, y = g.cell_to_frame(6, 6)
    assert (x, y) == (280 + 48 * 7.5, 48 * 7.5)
    cy, cx = g.box_to_cells((x - 10, y - 10, x + 10, y + 10))
    assert (cy.start, cx.start) == (6, 6) and (cy.stop, cx.stop) == (7, 7)
