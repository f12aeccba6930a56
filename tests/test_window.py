"""Window mode as a person sees it: ``edge-sdk demo`` and the ``window://`` sink on a real X
server (Xvfb), the screen read back with ffmpeg's x11grab, keys sent with xdotool."""

import json
import os
import shutil
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from edge_sdk.bundle import shipped_bundles
from edge_sdk.runtime.window import MIN_SIDE, window_kind

SCREEN = (1024, 768)
pytestmark = pytest.mark.skipif("avnet_s-demo" not in shipped_bundles(), reason="the demo bundle is not shipped in this checkout")
needs_x = pytest.mark.skipif(
    not shutil.which("Xvfb") or not shutil.which("xdotool"), reason="needs Xvfb and xdotool (apt install xvfb xdotool; toolchain/setup.sh does)"
)


@pytest.fixture
def display(monkeypatch):
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", "1", "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24", "-nolisten", "tcp"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    name = f":{xvfb.stdout.readline().decode().strip()}"
    monkeypatch.setenv("DISPLAY", name)
    yield name
    xvfb.terminate()
    xvfb.wait(10)


def press(title: str, key: str, child) -> bool:
    """Type ``key`` into the visible window named ``title``. No window manager runs under Xvfb:
    the window is given the focus directly. A toolkit may map more than one window under that
    name (a wrapper, or one not viewable yet: focusing it fails), so each visible one is tried,
    for up to 10 s."""
    for _ in range(10):
        found = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", title], capture_output=True, text=True, timeout=30)
        for wid in found.stdout.split():
            if subprocess.run(["xdotool", "windowfocus", "--sync", wid, "key", key], capture_output=True, timeout=30).returncode == 0:
                return True
        if child.poll() is not None:
            return False
        time.sleep(1.0)
    return False


def _screen(display: str, path) -> np.ndarray:
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "x11grab",
            "-video_size",
            f"{SCREEN[0]}x{SCREEN[1]}",
            "-i",
            display,
            "-frames:v",
            "1",
            str(path),
        ],
        check=True,
        timeout=30,
    )
    return cv2.imread(str(path))[:, :, ::-1]


def _window_on(shot: np.ndarray) -> np.ndarray | None:
    """The drawn area of the screen (Xvfb's root window is black), or None before the first frame."""
    ys, xs = np.nonzero(shot.max(axis=2) > 0)
    if len(ys) < 1000:
        return None
    win = shot[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    return win if np.ptp(win) > 100 else None  # not just the empty (grey) window before the first frame


@needs_x
def test_demo_window_shows_the_heatmap_and_status_and_q_stops_it(display, tmp_path):
    assert window_kind()[0] in ("opencv", "tk")
    demo = subprocess.Popen(
        [sys.executable, "-m", "edge_sdk", "demo", "localize", "--max-seconds", "60", "--out", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ.copy(),
    )
    try:
        win, deadline = None, time.monotonic() + 60
        while win is None and time.monotonic() < deadline and demo.poll() is None:
            time.sleep(1.0)
            win = _window_on(_screen(display, tmp_path / "screen.png"))
        assert win is not None, f"no window appeared: {demo.poll()} {demo.stdout.read() if demo.poll() is not None else ''}"
        time.sleep(3.0)  # let a few scenes go by
        win = _window_on(_screen(display, tmp_path / "screen.png"))
        started = time.monotonic()
        assert press("edge-sdk demo localize", "q", demo)
        out, _ = demo.communicate(timeout=30)
    finally:
        demo.kill()
    assert demo.returncode == 0, out[-2000:]
    assert time.monotonic() - started < 20  # q ended a 60 s demo

    # What the screen showed: the 96 px scene enlarged to MIN_SIDE with the colour heatmap over
    # it, the score and latency in white at the top, backend and FPS in yellow at the bottom.
    h, w = win.shape[:2]
    assert min(h, w) >= MIN_SIDE, win.shape
    hsv = cv2.cvtColor(np.ascontiguousarray(win), cv2.COLOR_RGB2HSV)
    assert np.mean(hsv[..., 1] > 80) > 0.3  # the heatmap colours the scene (digits and background are grey-toned)
    top, bottom = win[: h // 8], win[-h // 8 :]
    yellow = (bottom[..., 0] > 200) & (bottom[..., 1] > 200) & (bottom[..., 2] < 80)
    assert yellow.sum() > 200  # "onnxruntime/int8  10 fps"
    assert (top.min(axis=2) > 230).sum() > 200  # "score 0.53  4 ms"

    summary = json.loads((tmp_path / "localize" / "summary.json").read_text())
    assert summary["window"]["kind"] in ("opencv", "tk") and summary["window"]["frames_shown"] >= 20
    assert not any("no display" in n for n in summary["notes"])
    assert summary["pointing_acc"] >= 0.5  # the results drawn point at the speaking digit


@needs_x
def test_run_draws_into_a_window_too(display, tmp_path):
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge_sdk",
            "run",
            "--bundle",
            str(shipped_bundles()["avnet_s-demo"]),
            "--video",
            "synthetic://av-digits?seconds=6&realtime=1",
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    win, deadline = None, time.monotonic() + 60
    while win is None and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.5)
        win = _window_on(_screen(display, tmp_path / "screen.png"))
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0 and "headless" not in err, err[-2000:]
    assert win is not None and min(win.shape[:2]) >= MIN_SIDE
    assert json.loads(out)["frames_out"] > 20


def test_a_display_that_is_not_there_falls_back_to_headless(tmp_path, monkeypatch):
    from edge_sdk.apps.demo import run_demo

    monkeypatch.setenv("DISPLAY", ":987")  # no X server there
    s = run_demo("localize", out=tmp_path, max_seconds=2)
    assert s["window"] is None and s["stats"]["frames_out"] > 0
    assert any("cannot open a window on DISPLAY=:987" in n and "headless" in n for n in s["notes"]), s["notes"]


# In-process windows run in a child Python: Tk keeps its X connection open until the process
# exits, and an Xvfb stopped under it (each test has its own) ends the process that holds it.
_SINK_RUN = """
import json, sys, time
from edge_sdk.bundle import shipped_bundles
from edge_sdk.runtime.pipeline import Pipeline

title, events, iterate = sys.argv[1], sys.argv[2], sys.argv[3] == "iterate"
pipe = Pipeline.from_bundle(shipped_bundles()["avnet_s-demo"], "synthetic://av-digits?seconds=60&realtime=1", task="localize",
                            sinks=[f"window://{title}", events])
window = next(s for s in pipe.sinks if s.on_caller_thread)
started = time.monotonic()
if iterate:
    with pipe:
        seen = sum(1 for _ in pipe)
    stats = pipe.final_stats()
else:
    stats, seen = pipe.run(max_seconds=90), None
print(json.dumps({"seconds": time.monotonic() - started, "shown": window.shown, "open": window.window.open, "seen": seen,
                  "stats": stats}))
"""


def _sink_run(tmp_path, title: str, key: str, how: str) -> dict:
    """``_SINK_RUN`` in a child Python; ``key`` typed into its window once it has drawn for a while."""
    child = subprocess.Popen(
        [sys.executable, "-c", _SINK_RUN, title, str(tmp_path / "e.jsonl"), how],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        subprocess.run(["xdotool", "search", "--sync", "--name", title], check=True, timeout=60, capture_output=True)
        time.sleep(2.0)  # frames drawn (10 fps)
        sent = press(title, key, child)
        out, err = child.communicate(timeout=60)
        assert sent, f"no window named {title!r} took the key; the run: {err[-1500:]}"
    finally:
        child.kill()
    assert child.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


@needs_x
def test_the_window_sink_draws_on_the_running_thread_and_q_ends_the_run(display, tmp_path):
    title = "edge-sdk sink test"
    got = _sink_run(tmp_path, title, "q", "run")
    stats = got["stats"]
    assert got["seconds"] < 30 and stats["frames_out"] >= 10  # q ended a 60 s source
    assert "errors" not in stats and got["shown"] >= 10 and not got["open"]  # drawn on the running thread: another is refused (below)
    assert len((tmp_path / "e.jsonl").read_text().splitlines()) == stats["frames_out"]  # the other sinks closed whole
    gone = subprocess.run(["xdotool", "search", "--name", title], capture_output=True, timeout=30)
    assert gone.returncode != 0  # the window went with the run


@needs_x
def test_iterating_draws_the_window_too_and_esc_ends_the_iteration(display, tmp_path):
    got = _sink_run(tmp_path, "edge-sdk iteration test", "Escape", "iterate")
    assert got["seconds"] < 30 and 10 <= got["seen"] < 300 and got["shown"] >= 10 and "errors" not in got["stats"]


_OTHER_THREAD = """
import threading

import numpy as np
from edge_sdk.errors import ConfigError
from edge_sdk.runtime.frames import Result, VideoFrame
from edge_sdk.runtime.sinks import open_sink

sink = open_sink("window://", title="thread test")
result = Result("localize", 0, 0, 0, {}, None, VideoFrame(0, 0, np.zeros((96, 96, 3), np.uint8)), 0, 0)

def draw():
    try:
        sink.result(result)
    except ConfigError as e:
        print(e)

t = threading.Thread(target=draw, name="not-the-gui-thread")
t.start()
t.join(10)
sink.result(result)  # on its own thread: drawn
print("pumped", sink.pump(), "shown", sink.shown)
sink.close()
"""


@needs_x
def test_a_window_fed_from_another_thread_is_refused_by_name(display):
    out = subprocess.run([sys.executable, "-c", _OTHER_THREAD], capture_output=True, text=True, timeout=60, env=os.environ.copy())
    assert out.returncode == 0, out.stderr[-2000:]
    refused, drawn = out.stdout.strip().splitlines()
    assert "used from thread not-the-gui-thread" in refused and "Pipeline.run()" in refused
    assert drawn == "pumped True shown 1"
