"""The shipped models hold issue 22's targets on the speaker they never heard (`george`): synchrony
on `edge-sdk eval`'s 200 clips, the students against the teacher on its default 500 scenes and
gallery, on every fold shipped. Slow (4 minutes together here): CI runs them in its second step.

The synchrony models' other folds (each speaker held out in turn, `edge-sdk folds`, 40 minutes
a fold on a 2-core CPU) ship in `edge_sdk/assets/folds`, so `edge-sdk eval avsync_t --folds`
and the last test here measure every fold."""

from __future__ import annotations

import pytest

from edge_sdk.eval.evaluate import EvalConfig, evaluate
from edge_sdk.models.shipped import resolve_model, shipped_models
from edge_sdk.models.torch_runner import TorchTowers
from edge_sdk.train.folds import SPEAKERS, fold_models

pytestmark = pytest.mark.slow

SYNC_ACC, OFFSET_MAE_MS = 0.85, 100.0  # 5 candidates (chance 0.20); one frame at 10 fps
STUDENT_GAP = {"avnet_s.avdigits": 0.03, "avnet_xs.avdigits": 0.06}  # points below the teacher, pointing and a2i_r1


def _needs(*names: str) -> None:
    missing = [n for n in names if n not in shipped_models()]
    if missing:
        pytest.skip(f"not shipped: {', '.join(missing)}")


def _eval(model_or_path, fsdd, mnist, cfg: EvalConfig) -> dict:
    model, _ = resolve_model(str(model_or_path))
    return evaluate(TorchTowers(model), fsdd, mnist, cfg)


@pytest.mark.parametrize("name", ["avsync_t.avdigits", "avsync_s.avdigits"])
def test_shipped_sync_models_find_the_aligned_audio_and_its_offset(name, fsdd, mnist):
    _needs(name)
    res = _eval(name, fsdd, mnist, EvalConfig(sync_clips=200, scenes=40, gallery_per_class=5, probe_images=100))
    assert res["sync_chance"] == 0.2 and res["sync_acc"] >= SYNC_ACC and res["offset_mae_ms"] <= OFFSET_MAE_MS, res


# Folds trained and shipped that miss a target (issue 22, part 3, open): strict, so a fold that
# comes to meet them fails here until it leaves this list.
SHORT_FOLDS = {
    "jackson": "issue 22 part 3: without jackson the teacher reaches a2i_r1 0.778 (< 0.85), student_s points "
    "0.888 and student_xs 0.822, 4.0 and 10.6 points below the teacher's 0.928 (gaps 3 and 6)",
}


def _fold_params() -> list:
    short = {s: pytest.mark.xfail(strict=True, raises=AssertionError, reason=why) for s, why in SHORT_FOLDS.items()}
    return [pytest.param(s, marks=short[s]) if s in short else s for s in SPEAKERS]


@pytest.mark.parametrize("speaker", _fold_params())
def test_shipped_students_stay_near_the_teacher_on_every_fold(speaker, fsdd, mnist):
    """Each fold's students against that fold's teacher on its own held-out speaker: the shipped
    models (george) and every localization fold shipped in edge_sdk/assets/folds."""
    _needs("avnet_t.avdigits", *STUDENT_GAP)
    teachers = fold_models("avnet_t.avdigits")
    if speaker not in teachers:
        pytest.skip(f"no localization fold without {speaker} shipped (edge-sdk folds; README: Distillation)")
    cfg = EvalConfig(sync_clips=10, test_speakers=(speaker,))
    teacher = _eval(teachers[speaker], fsdd, mnist, cfg)
    assert teacher["pointing_acc"] >= 0.9 and teacher["a2i_r1"] >= 0.85, (speaker, teacher)
    for name, gap in STUDENT_GAP.items():
        students = fold_models(name)
        assert speaker in students, f"the {speaker} fold has a teacher but no {name}"
        student = _eval(students[speaker], fsdd, mnist, cfg)
        for metric in ("pointing_acc", "a2i_r1"):
            assert student[metric] >= teacher[metric] - gap, (speaker, name, metric, student[metric], teacher[metric])


@pytest.mark.parametrize("name", ["avsync_t.avdigits", "avsync_s.avdigits"])
def test_every_trained_sync_fold_holds_the_targets(name, fsdd, mnist):
    _needs(name)
    found = fold_models(name)  # the shipped model (george held out) and the shipped folds
    if len(found) < 2:
        pytest.skip(f"no other fold of {name} shipped in edge_sdk/assets/folds")
    for speaker, path in found.items():
        cfg = EvalConfig(sync_clips=200, scenes=40, gallery_per_class=5, probe_images=100, test_speakers=(speaker,))
        res = _eval(path, fsdd, mnist, cfg)
        assert res["sync_acc"] >= SYNC_ACC and res["offset_mae_ms"] <= OFFSET_MAE_MS, (speaker, res["sync_acc"], res["offset_mae_ms"])
