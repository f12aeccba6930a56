"""The trainer end to end on generated data with the smallest spec: outputs, exact resume, DDP."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from edge_sdk.checkpoint import load_model
from edge_sdk.errors import EdgeSDKError, ModelFileError
from edge_sdk.eval.evaluate import map_offset_of
from edge_sdk.models.shipped import model_path
from edge_sdk.recipe import load_recipe
from edge_sdk.train.trainer import pretrain

TINY = """
name = "tiny"
[model]
spec = "avnet_xs.avdigits"
[data]
k = 2
k_curriculum = [1]
scenes_per_epoch = {scenes}
[train]
epochs = {epochs}
batch_size = 8
lr = 1e-3
warmup_steps = 2
checkpoint_every = 1
log_every = 1
[objectives.infonce]
[objectives.mil_nce]
start_epoch = 1
[objectives.byol_audio]
weight = 0.5
"""


def _recipe(tmp_path, scenes=16, epochs=3):
    p = tmp_path / "tiny.toml"
    p.write_text(TINY.format(scenes=scenes, epochs=epochs))
    return p


def _cli(*args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "edge_sdk", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_pretrain_writes_model_metrics_and_plot(tmp_path):
    report = pretrain(load_recipe(_recipe(tmp_path)), tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert report["steps"] == 6
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 7))
    assert "mil_nce" not in rows[0] and "mil_nce" in rows[-1] and "byol_audio" in rows[0]
    assert (run / "loss.png").stat().st_size > 1000 and (run / "heatmaps.png").stat().st_size > 1000
    model, meta = load_model(run / "model.safetensors")
    assert meta["recipe"]["name"] == "tiny" and model.spec.name == "avnet_xs.avdigits"
    assert tuple(meta["map_offset_px"]) == map_offset_of(model)  # one definition: what eval measures for a checkpoint
    assert not list(run.rglob("*.pt")) and not list(run.rglob("*.pkl"))


def test_bf16_training_on_cpu_saves_plain_fp32_weights(tmp_path):
    recipe = load_recipe(_recipe(tmp_path, scenes=16, epochs=1))
    recipe.train.precision = "bf16"
    pretrain(recipe, tmp_path / "run", progress=False)
    model, _ = load_model(tmp_path / "run" / "model.safetensors")
    weights = dict(model.state_dict())
    assert all(v.dtype in (torch.float32, torch.int64) and torch.isfinite(v.float()).all() for v in weights.values())
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(np.isfinite(r["loss"]) for r in rows)


def test_fine_tuning_starts_from_the_init_weights_and_refuses_another_architecture(tmp_path):
    recipe = load_recipe(_recipe(tmp_path, scenes=8, epochs=1))
    recipe.train.lr = 1e-12  # one step that barely moves: the result is the starting point
    recipe.model.init = "avnet_xs.avdigits"
    pretrain(recipe, tmp_path / "ft", progress=False)
    shipped = dict(load_model(model_path("avnet_xs.avdigits"))[0].named_parameters())  # not BN statistics: a step moves those
    tuned = dict(load_model(tmp_path / "ft" / "model.safetensors")[0].named_parameters())
    assert shipped.keys() == tuned.keys()
    assert all(torch.allclose(shipped[k], tuned[k], atol=1e-6) for k in shipped)
    recipe.model.init = "avnet_s.avdigits"  # a wider student: other tensor shapes
    with pytest.raises(EdgeSDKError, match="is not a avnet_xs.avdigits: .* tensors differ"):
        pretrain(recipe, tmp_path / "wrong", progress=False)
    recipe.model.init = str(tmp_path / "missing.safetensors")
    with pytest.raises(ModelFileError, match="missing.safetensors"):
        pretrain(recipe, tmp_path / "missing", progress=False)


@pytest.mark.slow  # 19 s: a step of the full teacher; CI runs it in its second step
def test_a_trained_teacher_stores_the_map_offset_eval_measures(tmp_path, fsdd, mnist):
    """One definition of the label-free map offset: measured on the data where training left it
    (a mix of one- to three-digit scenes), the shipped teacher's came out 5 px from eval's."""
    recipe = load_recipe("teacher_finetune")
    recipe.model.init, recipe.train.lr, recipe.train.precision = "avnet_t.avdigits", 1e-12, "fp32"
    recipe.data.scenes_per_epoch, recipe.train.batch_size, recipe.train.epochs = 48, 48, 1
    recipe.objectives = {"infonce": recipe.objectives["infonce"]}
    pretrain(recipe, tmp_path / "ft", fsdd, mnist, progress=False)
    model, meta = load_model(tmp_path / "ft" / "model.safetensors")
    assert tuple(meta["map_offset_px"]) == map_offset_of(model, fsdd, mnist)


def test_existing_run_is_never_overwritten_without_resume(tmp_path):
    recipe = load_recipe(_recipe(tmp_path, epochs=1))
    pretrain(recipe, tmp_path / "run", progress=False)
    before = (tmp_path / "run" / "model.safetensors").read_bytes()
    with pytest.raises(EdgeSDKError, match="--resume"):
        pretrain(recipe, tmp_path / "run", progress=False)
    lr, recipe.train.lr = recipe.train.lr, 0.5
    with pytest.raises(EdgeSDKError, match="another recipe .*train"):
        pretrain(recipe, tmp_path / "run", progress=False, resume=True)
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == before
    recipe.train.lr, recipe.train.max_minutes = lr, 7.5  # a time budget is not the recipe: resuming with another is fine
    pretrain(recipe, tmp_path / "run", progress=False, resume=True)


def test_resume_refuses_a_damaged_last_json_and_drops_a_cut_metrics_row(tmp_path):
    recipe = load_recipe(_recipe(tmp_path, epochs=1))
    run = tmp_path / "run"
    pretrain(recipe, run, progress=False)
    last = run / "checkpoints" / "last.json"
    good = last.read_text()
    for damaged in (good[: len(good) // 2], "[]", '{"step": 2}'):
        last.write_text(damaged)
        with pytest.raises(ModelFileError, match=f"{last} is damaged") as e:
            pretrain(recipe, run, progress=False, resume=True)
        assert f"delete {run}" in e.value.fix
    last.write_text(good)
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 3, "lo')  # a kill mid-write
    pretrain(recipe, run, progress=False, resume=True)
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def _weights(path):
    model, _ = load_model(path)
    return model.state_dict()


@pytest.mark.slow  # 34 s: three training runs (the sharded kill-and-resume test stays in the default run); CI runs it in its second step
def test_resume_after_kill_mid_epoch_is_exact(tmp_path):
    recipe = _recipe(tmp_path, scenes=64, epochs=6)  # 8 steps an epoch, 48 steps
    ref = _cli("pretrain", "--recipe", str(recipe), "--synthetic", "--quiet", "--out", str(tmp_path / "ref"))
    assert ref.wait(timeout=300) == 0, ref.stderr.read()

    run = tmp_path / "killed"
    proc = _cli("pretrain", "--recipe", str(recipe), "--synthetic", "--quiet", "--out", str(run))
    last = run / "checkpoints" / "last.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        if last.exists() and json.loads(last.read_text())["step"] >= 11:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(last.read_text())["step"]
    assert 11 <= killed_at < 48 and killed_at % 8, f"kill landed at step {killed_at}, not mid-run/mid-epoch"
    assert not (run / "model.safetensors").exists()

    resumed = _cli("pretrain", "--recipe", str(recipe), "--synthetic", "--quiet", "--out", str(run), "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 49)), "metrics of redone steps must not be logged twice"
    a, b = _weights(tmp_path / "ref" / "model.safetensors"), _weights(run / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"


@pytest.mark.slow  # 13 s on 2 cores; tests/test_shards_train.py trains two DDP ranks by default
def test_ddp_two_processes_on_cpu(tmp_path):
    recipe = _recipe(tmp_path, scenes=16, epochs=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        "-m",
        "edge_sdk",
        "pretrain",
        "--recipe",
        str(recipe),
        "--synthetic",
        "--quiet",
        "--out",
        str(tmp_path / "ddp"),
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count('"world_size": 2') == 2 and out.stdout.count('"steps": 4') == 2  # both ranks report
    rows = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4  # only rank 0 logs
    model, _ = load_model(tmp_path / "ddp" / "model.safetensors")
    assert model.spec.name == "avnet_xs.avdigits"


def test_pretrain_on_a_folder_of_real_videos(tmp_path, data_dir):
    import shutil

    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(data_dir / "video" / "example2.mp4", videos)
    shutil.copy(data_dir / "video" / "chaplin.mp4", videos)
    recipe = load_recipe(_recipe(tmp_path, scenes=16, epochs=1))
    recipe.data.kind, recipe.data.video_dir = "video", str(videos)
    recipe.objectives.pop("mil_nce")
    report = pretrain(recipe, tmp_path / "run", progress=False, max_steps=2)
    assert report["steps"] == 2
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in rows)
