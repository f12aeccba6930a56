"""Shared fixtures: the real data folder (skipped with a reason where it is absent)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from edge_sdk.media.corpora import default_data_dir

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = default_data_dir()
    if d is None:
        pytest.skip("../shared/data is absent: real-data tests need FSDD and MNIST beside the checkout")
    return d


@pytest.fixture(scope="session")
def fsdd(data_dir) -> Path:
    return data_dir / "fsdd" / "recordings"


@pytest.fixture(scope="session")
def mnist(data_dir) -> Path:
    return data_dir / "mnist"


# -- a virtual microphone: PulseAudio null sink, its monitor as the default source ----------------
def pactl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["pactl", *args], capture_output=True, text=True, timeout=10)


@pytest.fixture(scope="module")
def pulse():
    for tool in ("pulseaudio", "pactl", "paplay"):
        if shutil.which(tool) is None:
            pytest.skip(f"the {tool} binary is not installed (apt-get install pulseaudio pulseaudio-utils; toolchain/setup.sh does it)")
    started = False
    if pactl("info").returncode != 0:
        tries = (
            ["pulseaudio", "-D", "--exit-idle-time=-1"],  # as root it warns but runs
            ["pulseaudio", "-D", "--system", "--disallow-exit", "--exit-idle-time=-1"],
        )
        for cmd in tries:
            subprocess.run(cmd, capture_output=True, timeout=20)
            for _ in range(30):
                if pactl("info").returncode == 0:
                    break
                time.sleep(0.1)
            if pactl("info").returncode == 0:
                started = True
                break
        else:
            pytest.skip("pulseaudio would not start here (tried -D and --system); no virtual microphone")
    old = next((line.split(":", 1)[1].strip() for line in pactl("info").stdout.splitlines() if line.startswith("Default Source:")), None)
    load = pactl("load-module", "module-null-sink", "sink_name=edge_sdk_test")
    if load.returncode != 0:
        pytest.skip(f"pactl could not make a null sink: {load.stderr.strip()}")
    pactl("set-default-source", "edge_sdk_test.monitor")
    sd = pytest.importorskip("sounddevice", reason="sounddevice / PortAudio is not installed")
    sd._terminate()  # PortAudio lists devices once: rescan now that the PulseAudio server runs
    sd._initialize()
    if not any(d["max_input_channels"] > 0 for d in sd.query_devices()):
        pytest.skip(
            "PortAudio sees no input device although PulseAudio runs: install libasound2-plugins "
            "(its ALSA 'pulse' device routes PortAudio to PulseAudio)"
        )
    yield "edge_sdk_test"
    pactl("unload-module", load.stdout.strip())
    if old and old != "edge_sdk_test.monitor":
        pactl("set-default-source", old)
    if started:
        subprocess.run(["pulseaudio", "--kill"], capture_output=True, timeout=10)
