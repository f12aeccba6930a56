"""Speaker folds (issue 22, part 3): a teacher and its students trained without one speaker,
resumable, found by ``fold_models`` and evaluated per fold by ``edge-sdk eval --folds``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_sdk.errors import EdgeSDKError
from edge_sdk.models.shipped import shipped_models
from edge_sdk.train.folds import FoldPlan, fold_models, train_folds

TEACHER = """
name = "tiny_teacher"
[model]
spec = "avnet_t.avdigits"
[data]
k = 2
scenes_per_epoch = 16
[train]
epochs = 1
batch_size = 8
warmup_steps = 1
precision = "bf16"
[objectives.infonce]
"""
FINETUNE = TEACHER.replace("tiny_teacher", "tiny_finetune")  # its [model] init: each fold's own first stage
STUDENT = """
name = "tiny_student"
[model]
spec = "avnet_xs.avdigits"
[distill]
teacher = "avnet_t.avdigits"
[data]
k = 2
scenes_per_epoch = 16
[train]
epochs = 1
batch_size = 8
warmup_steps = 1
[objectives.kd_embed]
"""


@pytest.fixture(scope="module")
def folds(tmp_path_factory, fsdd, mnist):
    root = tmp_path_factory.mktemp("folds")
    (root / "t.toml").write_text(TEACHER)
    (root / "s.toml").write_text(STUDENT)
    (root / "f.toml").write_text(FINETUNE)
    plan = FoldPlan(str(root / "t.toml"), (str(root / "s.toml"),), precision="fp32", finetune=str(root / "f.toml"))
    done = train_folds(root / "out", ["jackson"], fsdd, mnist, plan, progress=False, shipped=None)
    return root / "out", plan, done


def test_a_fold_trains_the_teacher_then_its_students_without_the_speaker(folds):
    out, _, done = folds
    assert set(done) == {"jackson"} and set(done["jackson"]) == {"avnet_t.avdigits", "avnet_xs.avdigits"}
    teacher = json.loads((out / "jackson" / "avnet_t.avdigits.json").read_text())
    student = json.loads((out / "jackson" / "avnet_xs.avdigits.json").read_text())
    assert teacher["recipe"]["data"]["test_speakers"] == ["jackson"] == student["recipe"]["data"]["test_speakers"]
    assert teacher["recipe"]["train"]["precision"] == "fp32"  # the plan's precision over the recipe's bf16
    assert student["recipe"]["distill"]["teacher"] == str(out / "jackson" / "avnet_t.avdigits.safetensors")  # this fold's teacher
    first = out / "jackson" / "runs" / "tiny_teacher" / "model.safetensors"  # the teacher's first stage, fine-tuned into the fold's
    assert teacher["recipe"]["name"] == "tiny_finetune" and teacher["recipe"]["model"]["init"] == str(first) and first.is_file()


def test_a_finished_fold_is_not_trained_again(folds, fsdd, mnist):
    out, plan, _ = folds
    files = sorted((out / "jackson").glob("*.safetensors"))
    before = [f.stat().st_mtime_ns for f in files]
    train_folds(out, ["jackson"], fsdd, mnist, plan, progress=False)
    assert [f.stat().st_mtime_ns for f in files] == before
    first = out / "jackson" / "runs" / "tiny_teacher"
    first.rename(first.with_name("moved"))  # a finished fold needs no first teacher stage
    train_folds(out, ["jackson"], fsdd, mnist, plan, progress=False)
    assert [f.stat().st_mtime_ns for f in files] == before and not first.exists()
    first.with_name("moved").rename(first)


def test_fold_models_shipped_by_the_same_recipes_are_copied_not_trained(folds, fsdd, mnist, tmp_path):
    shipped, plan, _ = folds  # the fixture's folds stand for edge_sdk/assets/folds
    done = train_folds(tmp_path / "a", ["jackson"], fsdd, mnist, plan, progress=False, shipped=shipped)
    for spec, path in done["jackson"].items():
        assert Path(path).read_bytes() == (shipped / "jackson" / f"{spec}.safetensors").read_bytes()
    assert not (tmp_path / "a" / "jackson" / "runs").exists()  # nothing trained, not even the teacher's first stage
    changed = tmp_path / "s2.toml"  # the student recipe of the same name, one setting changed: trained, from the copied teacher
    changed.write_text(STUDENT.replace("warmup_steps = 1", "warmup_steps = 2"))
    other = FoldPlan(plan.teacher, (str(changed),), precision="fp32", finetune=plan.finetune)
    train_folds(tmp_path / "b", ["jackson"], fsdd, mnist, other, progress=False, shipped=shipped)
    assert (tmp_path / "b" / "jackson" / "runs" / "tiny_student" / "model.safetensors").is_file()
    assert not (tmp_path / "b" / "jackson" / "runs" / "tiny_teacher").exists()
    teacher = tmp_path / "c" / "jackson" / "avnet_t.avdigits.safetensors"  # a teacher of its own in --out: no shipped student
    teacher.parent.mkdir(parents=True)
    for suffix in (".json", ".safetensors"):
        teacher.with_suffix(suffix).write_bytes((tmp_path / "b" / "jackson" / f"avnet_t.avdigits{suffix}").read_bytes())
    teacher.write_bytes(teacher.read_bytes()[:-4] + b"\0\0\0\0")  # other weights (the same size)
    train_folds(tmp_path / "c", ["jackson"], fsdd, mnist, plan, progress=False, shipped=shipped)
    assert (tmp_path / "c" / "jackson" / "runs" / "tiny_student" / "model.safetensors").is_file()


def test_eval_folds_reports_every_fold_its_mean_and_its_worst(folds, fsdd, mnist, tmp_path):
    out, _, _ = folds
    found = fold_models("avnet_xs.avdigits", out)
    assert found["jackson"] == out / "jackson" / "avnet_xs.avdigits.safetensors"
    if "avnet_xs.avdigits" in shipped_models():
        assert "george" in found  # the shipped model is the fold of its own held-out speaker
    js = tmp_path / "folds.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["eval", "avnet_xs.avdigits", "--folds", str(out), "--scenes", "8", "--fsdd", str(fsdd), "--mnist", str(mnist), "--json", str(js)]
    proc = subprocess.run([sys.executable, "-m", "edge_sdk", *args], capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "avnet_xs.avdigits without jackson" in proc.stdout and "worst fold" in proc.stdout
    report = json.loads(js.read_text())
    rows = report["folds"]
    assert len(rows) == len(found)
    pointing = [r["pointing_acc"] for r in rows.values()]
    assert report["worst"]["pointing_acc"] == min(pointing) and report["mean"]["pointing_acc"] == pytest.approx(sum(pointing) / len(pointing))


def test_the_folds_command_trains_each_stage_at_the_precision_given(folds, fsdd, mnist, tmp_path):
    from edge_sdk.toolchain.cli import main

    root = folds[0].parent  # the fixture's recipe files
    args = ["folds", "--out", str(tmp_path), "--speakers", "jackson", "--teacher", str(root / "t.toml"), "--finetune", str(root / "f.toml"),
            "--students", str(root / "s.toml"), "--precision", "fp32", "--fsdd", str(fsdd), "--mnist", str(mnist), "--quiet"]  # fmt: skip
    assert main(args) == 0
    for spec in ("avnet_t.avdigits", "avnet_xs.avdigits"):
        recipe = json.loads((tmp_path / "jackson" / f"{spec}.json").read_text())["recipe"]
        assert recipe["train"]["precision"] == "fp32" and recipe["name"] == ("tiny_finetune" if spec == "avnet_t.avdigits" else "tiny_student")
    with pytest.raises(EdgeSDKError, match="fold precision 'teacher_finetune'"):
        FoldPlan("teacher", ("distill_s",), "fp32", "teacher_finetune")  # fields in order: teacher, students, finetune, precision


def test_folds_of_an_unknown_speaker_are_refused(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "edge_sdk", "folds", "--out", str(tmp_path / "f"), "--speakers", "alice"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "alice not in the corpus" in proc.stderr
