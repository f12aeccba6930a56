"""Training recipes: TOML files validated into typed dataclasses.

A recipe names the model spec, the data, the optimisation and a weighted set of
objectives. Unknown keys, wrong types, out-of-range or non-finite numbers and unknown
objectives are errors that name the key and say what is allowed. Shipped recipes live
in ``edge_sdk/recipes/``.
"""

from __future__ import annotations

try:  # Python 3.11+; tomli (a dependency on 3.10, JetPack 6's Python) is the same parser
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

import dataclasses
import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path

from edge_sdk.errors import ConfigError

__all__ = [
    "Recipe",
    "ModelCfg",
    "DataCfg",
    "TrainCfg",
    "DistillCfg",
    "ObjectiveCfg",
    "load_recipe",
    "recipe_path",
    "list_recipes",
    "at_least",
    "check_field",
]

RECIPE_DIR = Path(__file__).parent / "recipes"
OBJECTIVE_NAMES = ("avc", "mil_nce", "infonce", "sync", "byol_audio", "zoom_eq", "av_mae", "clusters", "kd_embed", "kd_relation", "kd_map")
DISTILL_NAMES = ("kd_embed", "kd_relation", "kd_map")


def at_least(default, low, strict: bool = False):
    """A number field that must be >= ``low`` (> ``low`` when ``strict``); :meth:`Recipe.validate` checks it."""
    return field(default=default, metadata={"low": low, "strict": strict})


@dataclass
class ModelCfg:
    spec: str = "avnet_t.avdigits"
    init: str = ""  # fine-tuning: start from these weights (a checkpoint path or shipped model name of the same spec)


@dataclass
class DataCfg:
    kind: str = "scenes"  # "scenes", "clips" (AV-Digits) or "video" (a folder of your own clips)
    video_dir: str = ""  # kind = "video" only (or --videos DIR on the command line)
    k: int = 3
    k_curriculum: list[int] = field(default_factory=list)  # digits per scene in the first epochs, then k
    k_mix: list[int] = field(default_factory=list)  # after the curriculum, each scene draws its K from this list (default [k])
    scenes_per_epoch: int = at_least(4096, 1)
    test_speakers: list[str] = field(default_factory=lambda: ["george"])
    mask_audio: bool = False  # scenes only: SpecAugment-style band and time masks on training sounds
    frames: int = at_least(12, 1)  # clips only
    fps: float = at_least(10.0, 0, strict=True)  # clips only


@dataclass
class TrainCfg:
    epochs: int = at_least(10, 1)
    batch_size: int = at_least(64, 2)  # contrastive objectives need negatives
    lr: float = at_least(2e-3, 0, strict=True)
    weight_decay: float = at_least(1e-4, 0)
    warmup_steps: int = at_least(50, 0)
    seed: int = at_least(0, 0)
    checkpoint_every: int = at_least(50, 1)
    log_every: int = at_least(10, 1)
    max_minutes: float = at_least(0.0, 0)  # stop (with a checkpoint) after this long; 0 = no limit
    precision: str = "auto"  # "auto" (bf16 autocast on CUDA, fp32 on CPU), "bf16" (also on CPU: AMX/AVX512-BF16) or "fp32"


@dataclass
class DistillCfg:
    teacher: str = ""  # a checkpoint path or a shipped model name; empty = no distillation


@dataclass
class ObjectiveCfg:
    weight: float = at_least(1.0, 0)
    start_epoch: int = at_least(0, 0)  # switched on from this epoch (e.g. after a global InfoNCE warm-up)
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
    def from_dict(cls, d: dict, source: str = "recipe") -> Recipe:
        d = dict(d)
        objectives = d.pop("objectives", {})
        sections = {"model": ModelCfg, "data": DataCfg, "train": TrainCfg, "distill": DistillCfg}
        kw = {"name": d.pop("name", Path(source).stem)}
        for key in list(d):
            if key not in sections:
                raise ConfigError(f"{source}: unknown key {key!r}", f"top-level keys are: name, objectives, {', '.join(sections)}")
            kw[key] = _build(sections[key], d.pop(key), f"{source}: [{key}]")
        if not isinstance(kw["name"], str):
            raise ConfigError(f"{source}: name must be a string", 'write name = "my_recipe"')
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
        """Check every field's type and range, then how the sections fit together (also after
        changing a loaded recipe, e.g. by command-line overrides)."""
        from edge_sdk.objectives import OBJECTIVES  # torch: only when a recipe is really used

        parts = [(f"[{n}]", getattr(self, n)) for n in ("model", "data", "train", "distill")]
        for where, cfg in parts + [(f"[objectives.{n}]", c) for n, c in self.objectives.items()]:
            for f in dataclasses.fields(cfg):
                check_field(f, getattr(cfg, f.name), f"{source}: {where}")
        if self.data.kind != "video" and self.data.scenes_per_epoch < self.train.batch_size:
            raise ConfigError(
                f"{source}: [data] scenes_per_epoch = {self.data.scenes_per_epoch} is below [train] batch_size = {self.train.batch_size}",
                "an epoch needs at least one batch: raise scenes_per_epoch or lower batch_size",
            )
        if not self.objectives:
            raise ConfigError(f"{source}: no objectives", "add at least one [objectives.NAME] table, e.g. [objectives.infonce]")
        if self.data.kind not in ("scenes", "clips", "video"):
            raise ConfigError(f"{source}: [data] kind = {self.data.kind!r}", 'use "scenes", "clips" or "video"')
        if "sync" in self.objectives and self.data.kind != "clips":
            raise ConfigError(f"{source}: the sync objective needs clips", 'set [data] kind = "clips"')
        if any(not 1 <= k <= 10 for k in [self.data.k, *self.data.k_curriculum, *self.data.k_mix]):
            raise ConfigError(f"{source}: [data] k, k_curriculum and k_mix must be 1..10", "scenes hold distinct digits, at most 10")
        kd = sorted(set(self.objectives) & set(DISTILL_NAMES))
        if kd and not self.distill.teacher:
            raise ConfigError(f"{source}: {', '.join(kd)} need a teacher", 'add [distill] teacher = "avnet_t.avdigits" (or pass --teacher)')
        if self.train.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"{source}: [train] precision = {self.train.precision!r}", 'use "auto", "bf16" or "fp32"')
        for name, cfg in self.objectives.items():
            allowed = [p for p in inspect.signature(OBJECTIVES[name].__init__).parameters if p not in ("self", "model", "teacher")]
            bad = sorted(set(cfg.params) - set(allowed))
            if bad:
                raise ConfigError(f"{source}: [objectives.{name}] unknown key(s) {bad}", f"allowed: weight, start_epoch, {', '.join(allowed)}")


def _build(cls, values, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a table", "see edge_sdk/recipes/*.toml for examples")
    fields = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in fields:
            raise ConfigError(f"{where} unknown key {key!r}", f"allowed: {', '.join(fields)}")
    return cls(**values)


_TYPES = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "dict": lambda v: isinstance(v, dict),
    "list[str]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "list[int]": lambda v: isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v),
}


def check_field(f: dataclasses.Field, value, where: str) -> None:
    """One field: its annotated type, a finite float, and its range (``_at_least``)."""
    if not _TYPES[f.type](value):
        raise ConfigError(f"{where} {f.name} = {value!r} is not a {f.type}", f"give {f.name} a {f.type} value")
    low, strict = f.metadata.get("low"), f.metadata.get("strict", False)
    finite = f.type != "float" or math.isfinite(value)
    if not finite or (low is not None and (value < low or (strict and value == low))):
        rule = f"{f.name} {'>' if strict else '>='} {low}" if low is not None else f.name
        raise ConfigError(f"{where} {f.name} = {value!r} is out of range", f"use a finite {rule}" if f.type == "float" else f"use {rule}")


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
