"""Training recipes: TOML files validated into typed dataclasses.

A recipe names the model spec, the data, the optimisation and a weighted set of
objectives. Unknown keys, wrong types and unknown objectives are errors that name the
key and list what is allowed. Shipped recipes live in ``edge_sdk/recipes/``.
"""

from __future__ import annotations

import dataclasses
import inspect
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from edge_sdk.errors import ConfigError

__all__ = ["Recipe", "ModelCfg", "DataCfg", "TrainCfg", "DistillCfg", "ObjectiveCfg", "load_recipe", "recipe_path", "list_recipes"]

RECIPE_DIR = Path(__file__).parent / "recipes"
OBJECTIVE_NAMES = ("avc", "mil_nce", "infonce", "sync", "byol_audio", "zoom_eq", "kd_embed", "kd_relation", "kd_map")
DISTILL_NAMES = ("kd_embed", "kd_relation", "kd_map")


@dataclass
class ModelCfg:
    spec: str = "avnet_t.avdigits"


@dataclass
class DataCfg:
    kind: str = "scenes"  # "scenes", "clips" (AV-Digits) or "video" (a folder of your own clips)
    video_dir: str = ""  # kind = "video" only (or --videos DIR on the command line)
    k: int = 3
    k_curriculum: list[int] = field(default_factory=list)  # digits per scene in the first epochs, then k
    k_mix: list[int] = field(default_factory=list)  # after the curriculum, each scene draws its K from this list (default [k])
    scenes_per_epoch: int = 4096
    test_speakers: list[str] = field(default_factory=lambda: ["george"])
    mask_audio: bool = False  # scenes only: SpecAugment-style band and time masks on training sounds
    frames: int = 12  # clips only
    fps: float = 10.0  # clips only


@dataclass
class TrainCfg:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    seed: int = 0
    checkpoint_every: int = 50
    log_every: int = 10
    max_minutes: float = 0.0  # stop (with a checkpoint) after this long; 0 = no limit
    precision: str = "auto"  # "auto" (bf16 autocast on CUDA, fp32 on CPU), "bf16" (also on CPU: AMX/AVX512-BF16) or "fp32"


@dataclass
class DistillCfg:
    teacher: str = ""  # a checkpoint path or a shipped model name; empty = no distillation


@dataclass
class ObjectiveCfg:
    weight: float = 1.0
    start_epoch: int = 0  # switched on from this epoch (e.g. after a global InfoNCE warm-up)
    params: dict = field(default_factory=dict)  # passed to the objective's constructor


@dataclass
class Recipe:
    name: str = "recipe"
    model: ModelCfg = field(default_factory=ModelCfg)
    data: DataCfg = field(default_factory=DataCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    distill: DistillCfg = field(default_factory=DistillCfg)
    objectives: dict[str, ObjectiveCfg] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "recipe") -> "Recipe":
        d = dict(d)
        objectives = d.pop("objectives", {})
        sections = {"model": ModelCfg, "data": DataCfg, "train": TrainCfg, "distill": DistillCfg}
        kw = {"name": d.pop("name", Path(source).stem)}
        for key in list(d):
            if key not in sections:
                raise ConfigError(f"{source}: unknown key {key!r}", f"top-level keys are: name, objectives, {', '.join(sections)}")
            kw[key] = _build(sections[key], d.pop(key), f"{source}: [{key}]")
        if not isinstance(kw["name"], str):
            raise ConfigError(f"{source}: name must be a string", "write name = \"my_recipe\"")
        objs = {}
        for name, cfg in objectives.items():
            if name not in OBJECTIVE_NAMES:
                raise ConfigError(f"{source}: unknown objective {name!r}", f"use one of: {', '.join(OBJECTIVE_NAMES)}")
            cfg = dict(cfg)
            base = {k: cfg.pop(k) for k in ("weight", "start_epoch") if k in cfg}
            objs[name] = _build(ObjectiveCfg, {**base, "params": cfg}, f"{source}: [objectives.{name}]")
        recipe = cls(objectives=objs, **kw)
        recipe.validate(source)
        return recipe

    def validate(self, source: str = "recipe") -> None:
        from edge_sdk.objectives import OBJECTIVES  # torch: only when a recipe is really used

        if not self.objectives:
            raise ConfigError(f"{source}: no objectives", "add at least one [objectives.NAME] table, e.g. [objectives.infonce]")
        if self.data.kind not in ("scenes", "clips", "video"):
            raise ConfigError(f"{source}: [data] kind = {self.data.kind!r}", "use \"scenes\", \"clips\" or \"video\"")
        if "sync" in self.objectives and self.data.kind != "clips":
            raise ConfigError(f"{source}: the sync objective needs clips", "set [data] kind = \"clips\"")
        if any(not 1 <= k <= 10 for k in [self.data.k, *self.data.k_curriculum, *self.data.k_mix]):
            raise ConfigError(f"{source}: [data] k, k_curriculum and k_mix must be 1..10", "scenes hold distinct digits, at most 10")
        kd = sorted(set(self.objectives) & set(DISTILL_NAMES))
        if kd and not self.distill.teacher:
            raise ConfigError(f"{source}: {', '.join(kd)} need a teacher", "add [distill] teacher = \"avnet_t.avdigits\" (or pass --teacher)")
        if self.train.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"{source}: [train] precision = {self.train.precision!r}", "use \"auto\", \"bf16\" or \"fp32\"")
        if self.train.batch_size < 2:
            raise ConfigError(f"{source}: batch_size {self.train.batch_size}", "contrastive objectives need batch_size >= 2")
        for name, cfg in self.objectives.items():
            allowed = [p for p in inspect.signature(OBJECTIVES[name].__init__).parameters if p not in ("self", "model", "teacher")]
            bad = sorted(set(cfg.params) - set(allowed))
            if bad:
                raise ConfigError(f"{source}: [objectives.{name}] unknown key(s) {bad}", f"allowed: weight, start_epoch, {', '.join(allowed)}")


def _build(cls, values, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a table", "see edge_sdk/recipes/*.toml for examples")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"{where} unknown key {key!r}", f"allowed: {', '.join(fields)}")
        want = fields[key].type
        ok = {"int": isinstance(value, int) and not isinstance(value, bool),
              "float": isinstance(value, (int, float)) and not isinstance(value, bool),
              "str": isinstance(value, str), "dict": isinstance(value, dict),
              "list[str]": isinstance(value, list) and all(isinstance(v, str) for v in value),
              "list[int]": isinstance(value, list) and all(isinstance(v, int) for v in value)}.get(want, True)
        if not ok:
            raise ConfigError(f"{where} {key} = {value!r} is not a {want}", f"give {key} a {want} value")
    return cls(**values)


def recipe_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped = RECIPE_DIR / f"{name_or_path}.toml"
    if shipped.is_file():
        return shipped
    raise ConfigError(f"recipe {name_or_path} not found", f"give a .toml path or a shipped recipe: {', '.join(list_recipes())}")


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.toml"))


def load_recipe(name_or_path: str | Path) -> Recipe:
    path = recipe_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})", "fix the syntax at that line") from None
    return Recipe.from_dict(data, str(path))
