"""The ``edge-sdk pipeline --recipe R`` command's every-stage-in-one-go run: pretrain ->
distill -> calibrate -> quantize + export -> bench, each stage skipped when its output is
already there (and training resumed from its last checkpoint), ending in one report a
person reads instead of logs (``report.md`` with the loss curves, the export parity table
and the benchmark chart). Not the runtime's streaming :mod:`edge_sdk.runtime.pipeline`.

A pipeline recipe (``edge_sdk/recipes/pipelines/*.toml`` or a path) names the training
recipes and what to export::

    [pipeline]
    teacher = "teacher"            # pretraining recipe
    student = "distill_s"          # distillation recipe (its teacher is the one just trained)
    formats = "onnx,executorch"
    precisions = "fp32,int8"
    calib_pairs = 256
    eval_scenes = 500
    teacher_max_steps = 0          # 0: the recipe's own schedule
    student_max_steps = 0
    allow_mismatch = false         # keep a bundle whose parity missed its tolerance (recorded)
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import tomllib

from edge_sdk.errors import ConfigError
from edge_sdk.media.pairs import MIN_CLIPS
from edge_sdk.recipe import at_least, check_field

__all__ = ["PipelineRecipe", "load_pipeline", "run_pipeline", "STAGES"]

log = logging.getLogger(__name__)

STAGES = ("teacher", "student", "calib", "export", "bench")


@dataclass
class PipelineRecipe:
    name: str = "pipeline"
    teacher: str = "teacher"
    student: str = "distill_s"
    formats: str = "onnx,executorch"
    precisions: str = "fp32,int8"
    calib_pairs: int = at_least(256, MIN_CLIPS)  # INT8 calibration needs that many
    eval_scenes: int = at_least(500, 1)
    teacher_max_steps: int = at_least(0, 0)
    student_max_steps: int = at_least(0, 0)
    bench_seconds: float = at_least(2.0, 0, strict=True)
    allow_mismatch: bool = False


def _recipes_dir() -> Path:
    from edge_sdk.recipe import RECIPE_DIR

    return RECIPE_DIR / "pipelines"


def load_pipeline(name_or_path: str) -> PipelineRecipe:
    p = Path(name_or_path)
    if not p.is_file():
        p = _recipes_dir() / f"{name_or_path}.toml"
    if not p.is_file():
        have = sorted(x.stem for x in _recipes_dir().glob("*.toml"))
        raise ConfigError(f"pipeline recipe {name_or_path} not found", f"give a .toml path or one of: {', '.join(have)}")
    try:
        data = tomllib.loads(p.read_text()).get("pipeline", {})
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML ({e})", "fix the syntax at that line") from None
    known = {f.name for f in fields(PipelineRecipe)}
    if bad := sorted(set(data) - known):
        raise ConfigError(f"{p}: unknown [pipeline] key(s) {bad}", f"use: {', '.join(sorted(known))}")
    for f in fields(PipelineRecipe):
        check_field(f, data.get(f.name, f.default), f"{p}: [pipeline]")
    return PipelineRecipe(**{"name": p.stem, **data})


def _state(out: Path) -> dict:
    f = out / "state.json"
    return json.loads(f.read_text()) if f.is_file() else {}


def _save_state(out: Path, state: dict) -> None:
    from edge_sdk.checkpoint import atomic_write_text

    atomic_write_text(out / "state.json", json.dumps(state, indent=2, default=str))


def run_pipeline(recipe: PipelineRecipe, out: str | Path, fsdd=None, mnist=None, progress: bool = True) -> dict:
    """Run every stage not yet done in ``out``; returns the state (one entry per stage)."""
    from edge_sdk.eval.evaluate import EvalConfig
    from edge_sdk.recipe import load_recipe
    from edge_sdk.train.trainer import distill, pretrain

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = _state(out)
    n = recipe.eval_scenes  # a short run evaluates on proportionally fewer probes and clips
    cfg = EvalConfig(scenes=n, gallery_per_class=min(50, max(5, n // 10)), probe_images=min(2000, 10 * n), sync_clips=min(200, n))
    state["recipe"] = asdict(recipe)
    teacher_w, student_w = out / "teacher" / "model.safetensors", out / "student" / "model.safetensors"

    def stage(name, fn):
        if state.get(name, {}).get("done"):
            log.info("pipeline: %s already done, skipped", name)
            return
        log.info("pipeline: %s", name)
        t0 = time.monotonic()
        result = fn()
        state[name] = {"done": True, "seconds": round(time.monotonic() - t0, 1), "result": result}
        _save_state(out, state)

    def train_teacher():
        r = load_recipe(recipe.teacher)
        return pretrain(r, out / "teacher", fsdd, mnist, resume=True, progress=progress, max_steps=recipe.teacher_max_steps or None)

    def train_student():
        r = load_recipe(recipe.student)
        r.distill.teacher = str(teacher_w)
        return distill(r, out / "student", fsdd, mnist, resume=True, progress=progress, max_steps=recipe.student_max_steps or None)

    def calib():
        import shutil

        from edge_sdk.models.shipped import resolve_model
        from edge_sdk.quant.calib import write_calib_set

        shutil.rmtree(out / "calib", ignore_errors=True)  # a half-written set from a killed run
        write_calib_set(out / "calib", resolve_model(str(student_w))[0].spec, recipe.calib_pairs, fsdd, mnist)
        return {"pairs": recipe.calib_pairs}

    def export():
        import shutil

        from edge_sdk.export.engine import export_bundle

        shutil.rmtree(out / "bundle", ignore_errors=True)
        rep = export_bundle(
            str(student_w),
            out / "bundle",
            recipe.formats,
            recipe.precisions,
            calib=out / "calib",
            fsdd=fsdd,
            mnist=mnist,
            eval_cfg=cfg,
            allow_mismatch=recipe.allow_mismatch,
        )
        return {"passed": rep["passed"], "rows": [{k: r.get(k) for k in ("exporter", "precision", "status")} for r in rep["rows"]]}

    def bench():
        from edge_sdk.export.bench import bench_bundle, format_bench, plot_bench

        rep = bench_bundle(out / "bundle", teacher=str(teacher_w), seconds=recipe.bench_seconds, fsdd=fsdd, mnist=mnist, eval_cfg=cfg)
        (out / "bench.md").write_text(format_bench(rep))
        (out / "bench.json").write_text(json.dumps(rep["rows"], indent=2))
        plot_bench(rep, out / "bench.png")
        return {"ratios": rep["ratios"]}

    for name, fn in zip(STAGES, (train_teacher, train_student, calib, export, bench)):
        stage(name, fn)
    (out / "report.md").write_text(format_pipeline_report(out, state))
    return state


def format_pipeline_report(out: Path, state: dict) -> str:
    r = state["recipe"]
    lines = [
        f"# Pipeline report: {r['name']}",
        "",
        f"teacher recipe `{r['teacher']}` -> student recipe `{r['student']}` -> {r['formats']} x {r['precisions']}",
        "",
        "| stage | seconds | result |",
        "|---|---:|---|",
    ]
    for name in STAGES:
        s = state.get(name, {})
        res = s.get("result") or {}
        brief = {
            "teacher": lambda x: f"{x.get('steps')} steps",
            "student": lambda x: f"{x.get('steps')} steps",
            "calib": lambda x: f"{x.get('pairs')} pairs",
            "export": lambda x: "passed" if x.get("passed") else "FAILED",
            "bench": lambda x: ", ".join(f"{k} {v}x" for k, v in x.get("ratios", {}).items()),
        }[name]
        lines.append(f"| {name} | {s.get('seconds', '-')} | {brief(res) if s.get('done') else 'not done'} |")
    for title, png in (("Teacher training", "teacher/loss.png"), ("Student distillation", "student/loss.png"), ("Benchmark", "bench.png")):
        if (out / png).is_file():
            lines += ["", f"## {title}", "", f"![{title}]({png})"]
    for md in ("bundle/report.md", "bench.md"):
        if (out / md).is_file():
            lines += ["", (out / md).read_text().replace("# ", "## ", 1)]
    return "\n".join(lines) + "\n"
