"""Distillation: the losses, the recipe rules, and a tiny end-to-end run from the shipped teacher."""

import dataclasses
import json

import pytest
import torch

from edge_sdk.checkpoint import load_model, load_tensors
from edge_sdk.errors import ConfigError, EdgeSDKError
from edge_sdk.models.avnet import AVNet
from edge_sdk.objectives.distill import EmbedCosine, MapKD, RelationKD
from edge_sdk.recipe import Recipe, load_recipe
from edge_sdk.spec import AudioSpec, get_spec
from edge_sdk.train.trainer import distill, load_teacher


def _outputs(spec_name, seed, batch=6):
    torch.manual_seed(seed)
    model = AVNet(get_spec(spec_name)).eval()
    wave = torch.randn(batch, model.spec.audio.num_samples) * 0.1
    image = torch.rand(batch, 3, 96, 96) * 255
    return model, model(wave, image)


def test_relation_and_map_losses_vanish_when_student_matches_teacher():
    model, out = _outputs("student_xs", 0)
    same = {"teacher": {k: v.detach() for k, v in out.items()}}
    for loss in (RelationKD(model, model), MapKD(model, model)):
        assert loss(out, same, model).item() == pytest.approx(0.0, abs=1e-5)
    teacher, t_out = _outputs("teacher", 1)
    other = {"teacher": {k: v.detach() for k, v in t_out.items()}}
    for loss in (RelationKD(model, teacher), MapKD(model, teacher)):
        assert loss(out, other, model).item() > 1e-3


def test_embed_cosine_projects_across_widths_and_trains_only_the_student():
    student, out = _outputs("student_xs", 0)  # 64-d embeddings
    teacher, t_out = _outputs("teacher", 1)  # 128-d
    loss_fn = EmbedCosine(student, teacher)
    loss = loss_fn(out, {"teacher": {k: v.detach() for k, v in t_out.items()}}, student)
    loss.backward()
    assert 0 < loss.item() <= 2
    assert student.audio.proj.weight.grad is not None and loss_fn.audio_proj.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())


def test_distill_objectives_need_a_teacher(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text('[model]\nspec = "avnet_xs.avdigits"\n[objectives.kd_map]\n')
    with pytest.raises(ConfigError, match="need a teacher"):
        load_recipe(p)


def test_a_teacher_must_take_the_students_inputs_but_not_its_front_end():
    spec = dataclasses.replace(get_spec("student_s"), audio=AudioSpec(sample_rate=8000, num_samples=8000))
    with pytest.raises(EdgeSDKError, match="take different inputs: sample_rate: 16000 != 8000"):
        load_teacher("avnet_t.avdigits", spec)
    cheaper = dataclasses.replace(get_spec("student_s"), audio=AudioSpec(n_fft=128, n_mels=32))  # the same waveform in
    assert load_teacher("avnet_t.avdigits", cheaper).spec.name == "avnet_t.avdigits"


def test_spec_aliases_name_the_students():
    assert get_spec("student_s").name == "avnet_s.avdigits" and get_spec("student_xs").name == "avnet_xs.avdigits"
    with pytest.raises(ConfigError, match="student_s"):
        get_spec("student_m")


TINY = """
name = "tiny_distill"
[model]
spec = "avnet_xs.avdigits"
[distill]
teacher = "avnet_t.avdigits"
[data]
k = 2
scenes_per_epoch = 16
[train]
epochs = 2
batch_size = 8
lr = 1e-3
warmup_steps = 1
checkpoint_every = 2
log_every = 1
[objectives.kd_embed]
[objectives.kd_relation]
[objectives.kd_map]
[objectives.mil_nce]
weight = 0.5
"""


def test_distill_end_to_end_keeps_the_teacher_frozen_and_out_of_checkpoints(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text(TINY)
    recipe = load_recipe(p)
    teacher_before = {k: v.clone() for k, v in load_teacher("avnet_t.avdigits", get_spec("student_xs")).state_dict().items()}
    report = distill(recipe, tmp_path / "run", progress=False)
    assert report["steps"] == 4
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"kd_embed", "kd_relation", "kd_map", "mil_nce"} <= set(rows[-1])
    model, meta = load_model(tmp_path / "run" / "model.safetensors")
    assert model.spec.name == "avnet_xs.avdigits" and meta["recipe"]["distill"]["teacher"] == "avnet_t.avdigits"
    ckpt = load_tensors(tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert not any("teacher" in k for k in ckpt) and any(k.startswith("module.objectives.kd_embed.") for k in ckpt)
    after = load_teacher("avnet_t.avdigits", get_spec("student_xs")).state_dict()
    assert all(torch.equal(teacher_before[k], after[k]) for k in after)


def test_distill_refuses_a_recipe_without_teacher(tmp_path):
    with pytest.raises(EdgeSDKError, match="names no teacher"):
        distill(Recipe(objectives={}), tmp_path / "x")


@pytest.mark.slow  # 14 s; DDP stays in the default run through tests/test_trainer.py and tests/test_shards_train.py; CI runs it in its second step
def test_distill_under_torchrun_ddp(tmp_path):
    import os
    import subprocess
    import sys

    p = tmp_path / "tiny.toml"
    p.write_text(TINY)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29537",
        "-m",
        "edge_sdk",
        "distill",
        "--recipe",
        str(p),
        "--synthetic",
        "--quiet",
        "--out",
        str(tmp_path / "ddp"),
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count('"world_size": 2') == 2
