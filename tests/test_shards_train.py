"""Training from shards (issue 24) on the real clips of ../shared/data/video: two torchrun "nodes" on
127.0.0.1 (c10d rendezvous, gloo) reading disjoint shards, a result that evaluates; a rank killed
mid-run and restarted by torchrun, resuming exactly; one node with --nproc-per-node 2 training the
same weights; a single process killed with SIGKILL and resumed bit for bit (two loader workers)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_sdk.checkpoint import load_model
from edge_sdk.data.shard_writer import ShardOptions, write_shards
from edge_sdk.errors import DataError
from edge_sdk.recipe import load_recipe
from edge_sdk.spec import get_spec
from edge_sdk.train.shard_batches import ShardBatches, ShardSource
from edge_sdk.train.trainer import pretrain

TINY = """
name = "tiny_shards"
[model]
spec = "avnet_xs.avdigits"
[train]
epochs = 1
batch_size = 16
lr = 1e-3
warmup_steps = 2
checkpoint_every = 1
log_every = 1
[objectives.infonce]
"""
STEPS = 16  # 260 windows (4 clips at 5 fps) // 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


@pytest.fixture(scope="module")
def setup(data_dir, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("shard_train")
    shards = root / "shards"
    write_shards(
        data_dir / "video",
        shards,
        get_spec("avnet_xs.avdigits").contract(),
        ShardOptions(fps=5.0, max_clip_seconds=10.0, clips_per_shard=1),
        progress=False,
    )
    recipe = root / "tiny.toml"
    recipe.write_text(TINY)
    return {"root": root, "shards": shards, "recipe": recipe}


def _train_args(setup, out: Path, *extra) -> list[str]:
    return [
        "-m",
        "edge_sdk",
        "-v",
        "pretrain",
        "--recipe",
        str(setup["recipe"]),
        "--shards",
        str(setup["shards"]),
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


def _two_nodes(setup, out: Path, *, restarts: int = 0) -> list[subprocess.Popen]:
    """Two torchrun agents on 127.0.0.1, one process each, meeting through c10d rendezvous."""
    port = _free_port()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
           "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", f"t{port}", "--max-restarts", str(restarts), "--monitor-interval", "0.5",
           *_train_args(setup, out, "--resume", "auto")]  # fmt: skip
    env = _env(TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1")  # restarts reconnect (pytorch/pytorch#135712)
    return [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]


def _weights(path: Path) -> dict:
    model, _ = load_model(path)
    return model.state_dict()


def _same(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs"


@pytest.fixture(scope="module")
def two_nodes(setup) -> Path:
    out = setup["root"] / "two_nodes"
    agents = _two_nodes(setup, out)
    results = [a.communicate(timeout=300) for a in agents]
    for a, (_, err) in zip(agents, results):
        assert a.returncode == 0, err[-3000:]
    reports = [json.loads(o[o.index("{") :]) for o, _ in results]
    assert sorted(r["world_size"] for r in reports) == [2, 2] and all(r["steps"] == STEPS for r in reports)
    return out


def test_two_nodes_read_disjoint_shards_and_the_result_evaluates(setup, two_nodes, data_dir):
    from edge_sdk.eval.evaluate import EvalConfig, evaluate
    from edge_sdk.models.torch_runner import TorchTowers

    reads = [json.loads((two_nodes / "shard_reads" / f"rank-{r}.json").read_text()) for r in range(2)]
    assert [r["world"] for r in reads] == [2, 2]
    mine = [set(r["epochs"]["0"]) for r in reads]
    assert mine[0] and mine[1] and not mine[0] & mine[1], f"ranks shared shards: {mine}"
    assert mine[0] | mine[1] == {p.name for p in setup["shards"].glob("*.tar")}
    last = json.loads((two_nodes / "checkpoints" / "last.json").read_text())
    assert last["step"] == STEPS and last["shards"]["world"] == 2 and (last["shards"]["epoch"], last["shards"]["batch"]) == (1, 0)
    rows = [json.loads(line) for line in (two_nodes / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1)) and all(np.isfinite(r["loss"]) for r in rows)
    model, meta = load_model(two_nodes / "model.safetensors")
    assert meta["train"]["shards"]["digest"] == last["shards"]["digest"]
    cfg = EvalConfig(scenes=24, gallery_per_class=4, probe_images=60, sync_clips=8)
    res = evaluate(TorchTowers(model), data_dir / "fsdd" / "recordings", data_dir / "mnist", cfg)
    assert all(np.isfinite(res[k]) for k in ("pointing_acc", "a2i_r1", "probe_audio_acc"))


def _wait_for_step(out: Path, step: int, timeout_s: float) -> Path:
    """Wait until the run in ``out`` has checkpointed ``step`` (or ``timeout_s`` passed), to kill it mid-run; its last.json."""
    last, deadline = out / "checkpoints" / "last.json", time.time() + timeout_s
    while time.time() < deadline:
        try:
            if json.loads(last.read_text())["step"] >= step:
                return last
        except (OSError, ValueError, KeyError):
            pass  # not written yet, or being replaced
        time.sleep(0.005)
    return last


@pytest.mark.slow  # 25 s on 2 cores: torchrun restarts a killed rank
def test_a_killed_rank_is_restarted_and_resumes_exactly(setup, two_nodes):
    out = setup["root"] / "elastic"
    agents = _two_nodes(setup, out, restarts=1)
    last = _wait_for_step(out, 5, 240)
    children = Path(f"/proc/{agents[1].pid}/task/{agents[1].pid}/children").read_text().split()
    victim = next(int(c) for c in children if b"edge_sdk" in Path(f"/proc/{c}/cmdline").read_bytes())  # the agent's training process
    os.kill(victim, signal.SIGKILL)
    killed_at = json.loads(last.read_text())["step"]
    results = [a.communicate(timeout=300) for a in agents]
    for a, (_, err) in zip(agents, results):
        assert a.returncode == 0, err[-3000:]
    assert 5 <= killed_at < STEPS, f"the kill landed at step {killed_at}"
    resumed = [int(line.rsplit(" ", 1)[1]) for _, err in results for line in err.splitlines() if "resuming" in line and " at step " in line]
    assert len(resumed) == 2 and killed_at <= min(resumed), f"both restarted ranks resume from the last checkpoint: {resumed}"
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1)), "steps redone after the restart must not be logged twice"
    _same(two_nodes / "model.safetensors", out / "model.safetensors")


@pytest.mark.slow  # 10 s on 2 cores
def test_one_node_with_two_processes_trains_the_same_weights(setup, two_nodes):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *_train_args(setup, setup["root"] / "one_node")]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    _same(two_nodes / "model.safetensors", setup["root"] / "one_node" / "model.safetensors")


def test_batches_resumed_at_an_odd_step_are_the_same_with_two_loader_workers(setup):
    """Batch j comes from loader worker j mod 2: a stream opened at step 3 hands out what steps 3, 4, 5 were."""
    spec = get_spec("avnet_xs.avdigits")
    source = ShardSource(str(setup["shards"]), workers=2, buffer=64)
    straight = ShardBatches(source, spec, 16, 5, 0, 1, torch.device("cpu"), setup["root"] / "batches")
    want = [straight.batch(step)[1] for step in range(6)]
    resumed = ShardBatches(source, spec, 16, 5, 0, 1, torch.device("cpu"), setup["root"] / "batches")
    for step in (3, 4, 5):
        epoch, got = resumed.batch(step)
        assert epoch == 0 and all(torch.equal(got[k], want[step][k]) for k in ("image", "wave")), f"step {step} differs"
    assert not torch.equal(want[3]["wave"], want[4]["wave"])
    straight.close()
    resumed.close()


@pytest.mark.slow  # 30 s on 2 cores: three training runs
def test_a_killed_process_resumes_bit_for_bit(setup):
    run = setup["root"] / "killed"
    args = _train_args(setup, run, "--loader-workers", "2", "--shuffle-buffer", "64")
    ref = subprocess.run([sys.executable, *_train_args(setup, setup["root"] / "ref", "--loader-workers", "2", "--shuffle-buffer", "64")],
                         env=_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert ref.returncode == 0, ref.stderr[-3000:]
    proc = subprocess.Popen([sys.executable, *args], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = _wait_for_step(run, 5, 120)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    state = json.loads(last.read_text())
    assert 5 <= state["step"] < STEPS and not (run / "model.safetensors").exists()
    assert state["shards"]["batch"] == state["step"] and len(state["shards"]["windows_read_per_worker"]) == 2
    resumed = subprocess.run([sys.executable, *args, "--resume"], env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _same(setup["root"] / "ref" / "model.safetensors", run / "model.safetensors")
    recipe = load_recipe(setup["recipe"])
    with pytest.raises(DataError, match="other --loader-workers"):
        pretrain(recipe, run, progress=False, resume=True, shards=ShardSource(str(setup["shards"]), workers=3, buffer=64))
    with pytest.raises(DataError, match="trained on --shards"):
        pretrain(recipe, run, progress=False, resume=True)


@pytest.mark.slow  # 14 s: the teacher, its map offset and heatmaps
def test_distillation_streams_from_shards_too(setup):
    from edge_sdk.train.trainer import distill

    recipe = load_recipe(setup["recipe"])
    recipe.distill.teacher = "avnet_t.avdigits"
    report = distill(recipe, setup["root"] / "distilled", progress=False, max_steps=2, shards=str(setup["shards"]))
    assert report["steps"] == 2 and report["shards"]["batch"] == 2
    rows = [json.loads(line) for line in (setup["root"] / "distilled" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(np.isfinite(r["loss"]) for r in rows)


def test_the_command_line_describes_and_checks_shards(setup):
    helped = subprocess.run([sys.executable, "-m", "edge_sdk", "pretrain", "--help"], capture_output=True, text=True, timeout=60)
    assert "--shards" in helped.stdout and "--loader-workers" in helped.stdout and "--videos" in helped.stdout
    both = subprocess.run([sys.executable, *_train_args(setup, setup["root"] / "x", "--videos", str(setup["root"]))], capture_output=True, text=True)
    assert both.returncode == 2 and "--videos and --shards" in both.stderr
    assert not (setup["root"] / "x").exists()
