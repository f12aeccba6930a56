"""A training run killed for real (SIGKILL) and resumed, or started twice into one folder
(issue 21): metrics.jsonl holds each step once and ends at the final step, --resume without a
checkpoint is refused, and a second run into a busy folder is refused naming the first."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

RECIPE = """
name = "tiny"
[model]
spec = "avnet_xs.avdigits"
[data]
k = 2
k_curriculum = [1]
scenes_per_epoch = 64
[train]
epochs = 2
batch_size = 8
lr = 1e-3
warmup_steps = 2
checkpoint_every = {every}
log_every = 1
[objectives.infonce]
"""
TOTAL = 16  # 8 steps an epoch, 2 epochs


def _recipe(tmp_path: Path, every: int) -> Path:
    p = tmp_path / f"tiny{every}.toml"
    p.write_text(RECIPE.format(every=every))
    return p


def _cli(*args) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "edge_sdk", *map(str, args)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _rows(run: Path) -> int:
    try:
        return len([x for x in (run / "metrics.jsonl").read_text().splitlines() if x.endswith("}")])
    except FileNotFoundError:
        return 0


def _kill_when(proc: subprocess.Popen, cond, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, f"training ended before the kill: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < end, "training made no progress"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow  # 19 s on 2 cores: three runs; the resume after a checkpoint is tested by default below
def test_a_run_killed_before_its_first_checkpoint_starts_over_with_clean_metrics(tmp_path):
    recipe, run = _recipe(tmp_path, every=1000), tmp_path / "run"
    proc = _cli("pretrain", "--recipe", recipe, "--synthetic", "--quiet", "--out", run)
    _kill_when(proc, lambda: _rows(run) >= 3)
    assert not (run / "checkpoints" / "last.json").exists() and _steps(run)[:3] == [1, 2, 3]
    resumed = _cli("pretrain", "--recipe", recipe, "--synthetic", "--quiet", "--out", run, "--resume")
    assert resumed.wait(120) == 2
    err = [x for x in resumed.stderr.read().splitlines() if not x.startswith("WARNING")]
    assert err == [
        f"edge-sdk pretrain: error: --resume: {run} holds no checkpoint (a run killed before its first one starts over) "
        "-- fix: check the --out folder, or leave out --resume to start a new run there"
    ]
    again = _cli("pretrain", "--recipe", recipe, "--synthetic", "--quiet", "--out", run)
    assert again.wait(300) == 0, again.stderr.read()[-2000:]
    assert _steps(run) == list(range(1, TOTAL + 1)), "the killed attempt's rows were kept"


def test_rows_logged_after_the_last_checkpoint_are_dropped_on_resume(tmp_path):
    recipe, run = _recipe(tmp_path, every=4), tmp_path / "run"
    proc = _cli("pretrain", "--recipe", recipe, "--synthetic", "--quiet", "--out", run)
    last = run / "checkpoints" / "last.json"

    def past_a_checkpoint() -> bool:
        try:
            step = json.loads(last.read_text())["step"]
        except (FileNotFoundError, json.JSONDecodeError):
            return False
        return _rows(run) >= step + 2  # rows the next attempt will log again

    _kill_when(proc, past_a_checkpoint)
    killed_at, rows = json.loads(last.read_text())["step"], _steps(run)
    assert killed_at < TOTAL and max(rows) > killed_at, (killed_at, rows)
    resumed = _cli("pretrain", "--recipe", recipe, "--synthetic", "--quiet", "--out", run, "--resume")
    assert resumed.wait(300) == 0, resumed.stderr.read()[-2000:]
    assert _steps(run) == list(range(1, TOTAL + 1))
    assert not (run / ".edge_sdk.lock").exists()


def test_a_second_run_into_a_busy_folder_is_refused_naming_the_first(tmp_path):
    recipe, run = _recipe(tmp_path, every=4), tmp_path / "run"
    first = _cli("pretrain", "--recipe", recipe, "--synthetic", "--quiet", "--out", run)
    try:
        end = time.monotonic() + 120
        while _rows(run) < 1:
            assert first.poll() is None and time.monotonic() < end, first.stderr.read()[-2000:]
            time.sleep(0.01)
        second = _cli("pretrain", "--recipe", recipe, "--synthetic", "--quiet", "--out", run)
        assert second.wait(120) == 2
        err = [x for x in second.stderr.read().splitlines() if not x.startswith("WARNING")]
        assert len(err) == 1 and f"{run} is in use by another edge-sdk process (pid {first.pid})" in err[0], err
    finally:
        assert first.wait(300) == 0
    assert _steps(run) == list(range(1, TOTAL + 1))
