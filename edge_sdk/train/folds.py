"""Speaker folds: every model trained with each of the corpus's speakers held out in turn.

One held-out speaker is one sample of "a voice the model never heard"; four are a spread.
A fold is a folder ``ROOT/<speaker>/`` holding the models trained without that speaker:
the teacher (pretrained with ``speaker`` as the test split, then fine-tuned from those
weights as the shipped teacher was) and the students distilled from *that* teacher (a teacher
that heard the speaker would leak it into its students). The shipped models are the ``george`` fold; ``edge_sdk/assets/folds/`` holds the others.

:func:`train_folds` trains what is missing (each run resumes where it stopped, and a fold model
already shipped in :data:`FOLDS_DIR` by the same recipe is copied, not trained again: a fold
is hours on a CPU, so a fresh checkout carries on where the shipped folds end);
:func:`fold_models` finds a model's fold copies; ``edge-sdk eval MODEL --folds`` evaluates
each on its own held-out speaker and reports the mean and the worst fold.
"""

from __future__ import annotations

import filecmp
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from edge_sdk.errors import EdgeSDKError

__all__ = ["SPEAKERS", "FOLDS_DIR", "FoldPlan", "fold_models", "shipped_folds", "train_folds"]

log = logging.getLogger(__name__)

SPEAKERS = ("george", "jackson", "nicolas", "yweweler")  # the shared FSDD subset's speakers
FOLDS_DIR = Path(__file__).resolve().parent.parent / "assets" / "folds"


@dataclass
class FoldPlan:
    """What one fold trains: a pretraining recipe, optionally a fine-tune of its model (the
    shipped teacher's second stage), then distillation recipes from the resulting teacher."""

    teacher: str = "teacher"
    students: tuple[str, ...] = ("distill_s", "distill_xs")
    finetune: str | None = "teacher_finetune"  # None: the teacher is the pretraining recipe's model
    precision: str | None = None  # every recipe's [train] precision when set (fp32 where bf16 has no units)

    def __post_init__(self):
        if self.precision not in (None, "auto", "bf16", "fp32"):
            raise EdgeSDKError(f"fold precision {self.precision!r}", 'use "auto", "bf16" or "fp32" (or None: each recipe\'s own)')


def shipped_folds() -> dict[str, list[str]]:
    """Held-out speaker -> the models shipped in :data:`FOLDS_DIR` trained without that speaker."""
    return {d.name: sorted(p.stem for p in d.glob("*.safetensors")) for d in sorted(FOLDS_DIR.glob("*")) if d.is_dir()}


def fold_models(spec_name: str, root: str | Path | None = None) -> dict[str, Path]:
    """Speaker -> the checkpoint of ``spec_name`` trained without that speaker: the shipped model
    for its own held-out speaker, and ``root/<speaker>/<spec_name>.safetensors`` for the others."""
    from edge_sdk.checkpoint import read_sidecar
    from edge_sdk.models.shipped import shipped_models

    root = Path(root) if root else FOLDS_DIR
    found: dict[str, Path] = {}
    shipped = shipped_models().get(spec_name)
    if shipped is not None:
        held = (read_sidecar(shipped).get("recipe") or {}).get("data", {}).get("test_speakers", ["george"])
        found[held[0]] = shipped
    for folder in sorted(p for p in root.glob("*") if p.is_dir()):
        f = folder / f"{spec_name}.safetensors"
        if f.is_file():
            found[folder.name] = f
    if not found:
        raise EdgeSDKError(f"no fold models of {spec_name} in {root}", "train them: edge-sdk folds --out DIR, then pass --folds DIR")
    return dict(sorted(found.items()))


def _copy_model(src: Path, dest: Path) -> None:
    """``src`` (``.safetensors``) and its sidecar to ``dest``, atomically, the sidecar first: a model file means done."""
    import shutil

    for suffix in (".json", ".safetensors"):
        shutil.copyfile(src.with_suffix(suffix), dest.with_suffix(suffix + ".tmp"))
        dest.with_suffix(suffix + ".tmp").replace(dest.with_suffix(suffix))


def _settings(recipe: dict) -> dict:
    """A recipe's settings without what differs between machines: file paths (the model's init,
    the distillation teacher) and precision (bf16 where the CPU has the units, fp32 elsewhere)."""
    d = json.loads(json.dumps(recipe))  # a deep copy with tuples as lists, as in a sidecar
    d.get("model", {}).pop("init", None)
    d.get("distill", {}).pop("teacher", None)
    d.get("train", {}).pop("precision", None)
    return d


def _shipped_copy(shipped: Path | None, speaker: str, recipe) -> Path | None:
    """The fold model ``shipped/<speaker>/<spec>`` when ``recipe`` (as a fold runs it) trained it:
    the same settings, the same held-out speaker."""
    from edge_sdk.checkpoint import read_sidecar

    f = shipped / speaker / f"{recipe.model.spec}.safetensors" if shipped else None
    if f is None or not f.is_file():
        return None
    return f if _settings(read_sidecar(f).get("recipe") or {}) == _settings(recipe.to_dict()) else None


def _fold_recipe(name: str, speaker: str, plan: FoldPlan):
    """Recipe ``name`` as a fold runs it: ``speaker`` held out, the same steps in every fold, the plan's precision."""
    from edge_sdk.recipe import load_recipe

    recipe = load_recipe(name)
    recipe.data.test_speakers, recipe.train.max_minutes = [speaker], 0.0
    recipe.train.precision = plan.precision or recipe.train.precision
    return recipe


def train_folds(
    out: str | Path, speakers, fsdd, mnist, plan: FoldPlan | None = None, progress: bool = True, shipped: Path | None = FOLDS_DIR
) -> dict[str, dict[str, str]]:
    """Train ``plan``'s teacher (and its fine-tune) and students for each held-out speaker into
    ``out/<speaker>/`` (``<spec name>.safetensors`` + sidecar, copied from each run's folder; the
    first teacher stage stays in its run folder); resumable. A fold model in ``shipped`` that the
    same recipe trained without the same speaker is copied instead (``shipped=None``: train all)."""
    from edge_sdk.train.trainer import distill, pretrain

    plan, out = plan or FoldPlan(), Path(out)
    if not (fsdd and mnist):
        raise EdgeSDKError("speaker folds need the real spoken digits", "pass --fsdd and --mnist (../shared/data is used when present)")
    stages = (plan.teacher, *([plan.finetune] if plan.finetune else []), *plan.students)
    last_teacher = 1 if plan.finetune else 0  # the stage whose model is the fold's teacher
    done: dict[str, dict[str, str]] = {}
    for speaker in speakers:
        fold, done[speaker] = out / speaker, {}
        teacher = None
        for name in stages[last_teacher:]:  # fold models the same recipes shipped: copied, not trained again
            recipe = _fold_recipe(name, speaker, plan)
            dest = fold / f"{recipe.model.spec}.safetensors"
            copy = _shipped_copy(shipped, speaker, recipe)
            if copy is not None and not dest.is_file():
                log.info("folds: %s without %s: the shipped %s", recipe.name, speaker, copy)
                fold.mkdir(parents=True, exist_ok=True)
                _copy_model(copy, dest)
            if name == stages[last_teacher] and (copy is None or not filecmp.cmp(copy, dest, shallow=False)):
                break  # the fold's teacher is not the shipped one: shipped students were distilled from another
        for i, name in enumerate(stages):
            recipe = _fold_recipe(name, speaker, plan)
            if 0 < i <= last_teacher:
                recipe.model.init = str(teacher)  # fine-tune this fold's pretrained model
            elif i:
                recipe.distill.teacher = str(teacher)
            run = fold / "runs" / recipe.name  # a recipe given as a .toml path runs under its own name
            in_fold = fold / f"{recipe.model.spec}.safetensors"  # the fold's teacher and students; a first stage stays in its run
            if i < last_teacher and in_fold.is_file():
                continue  # the fine-tuned teacher is done: its first stage is not needed again
            final = in_fold if i >= last_teacher else run / "model.safetensors"
            if not final.is_file():
                resume = "auto" if (run / "checkpoints" / "last.json").exists() else False
                log.info("folds: %s without %s", recipe.name, speaker)
                (distill if i > last_teacher else pretrain)(recipe, run, fsdd, mnist, resume=resume, progress=progress)
                if final == in_fold:
                    _copy_model(run / "model.safetensors", final)
            if i <= last_teacher:
                teacher = final
            if final == in_fold:
                done[speaker][recipe.model.spec] = str(final)
    return done
