"""The ``edge-sdk pipeline --recipe R`` command's every-stage-in-one-go run: pretrain ->
distill -> calibrate -> quantize + export -> bench (for the user's own model, ``--model``:
calibrate on their clips -> export -> bench), each stage skipped when its output is
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

try:  # Python 3.11+; tomli (a dependency on 3.10, JetPack 6's Python) is the same parser
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from edge_sdk.errors import ConfigError
from edge_sdk.media.pairs import MIN_CLIPS
from edge_sdk.outputs import atomic_write_text
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
    atomic_write_text(out / "state.json", json.dumps(state, indent=2, default=str))


@dataclass
class _Stages:
    """The stages of one pipeline run, each a method returning its result for ``state.json``."""

    recipe: PipelineRecipe
    out: Path
    fsdd: str | None
    mnist: str | None
    progress: bool
    user: dict | None  # factory, weights, contract: the user's own model (no training stages)
    videos: str | None

    @property
    def cfg(self):
        from edge_sdk.eval.evaluate import EvalConfig

        return EvalConfig.scaled(self.recipe.eval_scenes)  # a short run evaluates on proportionally fewer probes and clips

    def weights(self, role: str) -> Path:
        return self.out / role / "model.safetensors"

    def teacher(self) -> dict:
        from edge_sdk.recipe import load_recipe
        from edge_sdk.train.trainer import pretrain

        if self.user:
            return {"skipped": "your model (--model)"}
        r, steps = load_recipe(self.recipe.teacher), self.recipe.teacher_max_steps or None
        return pretrain(r, self.out / "teacher", self.fsdd, self.mnist, resume="auto", progress=self.progress, max_steps=steps)

    def student(self) -> dict:
        from edge_sdk.recipe import load_recipe
        from edge_sdk.train.trainer import distill

        if self.user:
            return {"skipped": "your model (--model)"}
        r, steps = load_recipe(self.recipe.student), self.recipe.student_max_steps or None
        r.distill.teacher = str(self.weights("teacher"))
        return distill(r, self.out / "student", self.fsdd, self.mnist, resume="auto", progress=self.progress, max_steps=steps)

    def calib(self) -> dict:
        from edge_sdk.models.loading import open_model
        from edge_sdk.quant.calib import write_calib_set, write_clip_pairs

        shutil.rmtree(self.out / "calib", ignore_errors=True)  # a half-written set from a killed run
        contract = open_model(None if self.user else str(self.weights("student")), **(self.user or {})).model.contract
        if self.videos:
            write_clip_pairs(self.out / "calib", contract, self.videos, self.recipe.calib_pairs)
        else:
            write_calib_set(self.out / "calib", contract, self.recipe.calib_pairs, self.fsdd, self.mnist)
        return {"pairs": self.recipe.calib_pairs}

    def export(self) -> dict:
        from edge_sdk.export.engine import export_bundle

        shutil.rmtree(self.out / "bundle", ignore_errors=True)
        plan = self.recipe
        rep = export_bundle(
            None if self.user else str(self.weights("student")), self.out / "bundle", plan.formats, plan.precisions, calib=self.out / "calib",
            fsdd=self.fsdd, mnist=self.mnist, eval_cfg=self.cfg, allow_mismatch=plan.allow_mismatch, videos=self.videos, **(self.user or {}),
        )  # fmt: skip
        return {"passed": rep["passed"], "rows": [{k: r.get(k) for k in ("exporter", "precision", "status")} for r in rep["rows"]]}

    def bench(self) -> dict:
        from edge_sdk.export.bench import bench_bundle, format_bench, plot_bench

        rep = bench_bundle(
            self.out / "bundle", teacher=None if self.user else str(self.weights("teacher")), seconds=self.recipe.bench_seconds,
            fsdd=self.fsdd, mnist=self.mnist, eval_cfg=self.cfg, videos=self.videos, trusted=(self.user["factory"],) if self.user else (),
        )  # fmt: skip
        atomic_write_text(self.out / "bench.md", format_bench(rep))
        atomic_write_text(self.out / "bench.json", json.dumps(rep, indent=2))
        plot_bench(rep, self.out / "bench.png")
        return {"ratios": rep["ratios"]}


def run_pipeline(
    recipe: PipelineRecipe, out: str | Path, fsdd=None, mnist=None, progress: bool = True, user: dict | None = None, videos=None
) -> dict:
    """Run every stage not yet done in ``out``; returns the state (one entry per stage). ``user``
    (``factory``, ``weights``, ``contract``: the user's own model) skips the training stages and
    deploys that model, calibrated and checked on ``videos`` (a folder of their clips) if given."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = _state(out)
    state["recipe"] = asdict(recipe)
    user = {k: v for k, v in (user or {}).items() if v} or None
    stages = _Stages(recipe, out, fsdd, mnist, progress, user, str(videos) if videos else None)
    for name in STAGES:
        if state.get(name, {}).get("done"):
            log.info("pipeline: %s already done, skipped", name)
            continue
        log.info("pipeline: %s", name)
        t0 = time.monotonic()
        result = getattr(stages, name)()
        state[name] = {"done": True, "seconds": round(time.monotonic() - t0, 1), "result": result}
        _save_state(out, state)
    atomic_write_text(out / "report.md", format_pipeline_report(out, state))
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
            "teacher": lambda x: x.get("skipped") or f"{x.get('steps')} steps",
            "student": lambda x: x.get("skipped") or f"{x.get('steps')} steps",
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
