"""Model specs: the architecture and the preprocessing contract, in one registry.

A :class:`ModelSpec` is the single source of truth for every number that training,
export, bundles and the runtime must agree on: audio sample rate and window, STFT and
mel parameters, image size and normalisation, embedding size. Nothing downstream
re-states them (timm's ``PretrainedCfg`` idea). Names follow ``arch_size.tag``.

Specs are validated when built (types, positive sizes, ``f_min < f_max <= sample_rate / 2``,
towers that leave at least one cell), so a damaged sidecar or manifest fails with the
field's name instead of deep inside torch. :meth:`ModelSpec.drift` tells whether a spec
read back from a file is still the one its weights were saved with.

This module imports no torch: the runtime reads specs from bundles without it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field

from edge_sdk.contract import AudioContract, ImageContract, MapContract, ModelContract
from edge_sdk.errors import ConfigError

__all__ = ["AudioSpec", "ImageSpec", "TowerSpec", "ModelSpec", "spec_digest", "ALIASES", "register", "get_spec", "list_specs"]


@dataclass(frozen=True)
class AudioSpec:
    """Waveform in, log-mel inside the model. Raw mono float32 in [-1, 1] at ``sample_rate``."""

    sample_rate: int = 16000
    num_samples: int = 16000  # window length the model takes (1.0 s)
    n_fft: int = 256
    hop_length: int = 160
    n_mels: int = 40
    f_min: float = 60.0
    f_max: float = 4000.0  # telephone band: the mels never look above it

    @property
    def window_seconds(self) -> float:
        return self.num_samples / self.sample_rate

    @property
    def num_frames(self) -> int:
        return 1 + (self.num_samples - self.n_fft) // self.hop_length


@dataclass(frozen=True)
class ImageSpec:
    """Raw RGB frames in (float32 in [0, 255], NCHW), normalised inside the model; with
    ``frames`` > 1 a stack [T, 3, S, S] of frames ``1 / frame_rate`` s apart, the last one
    the present (a tower that sees time: the synchrony models)."""

    size: int = 96
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    frames: int = 1
    frame_rate: float = 10.0

    @property
    def height(self) -> int:  # the names a contract uses (our towers take squares)
        return self.size

    @property
    def width(self) -> int:
        return self.size


@dataclass(frozen=True)
class TowerSpec:
    """A conv tower: ``block`` is "basic" (ResNet 3x3) or "dw" (inverted residual, MobileNetV2)."""

    block: str = "basic"
    stem: int = 32
    channels: tuple[int, ...] = (32, 64, 128)
    depths: tuple[int, ...] = (1, 2, 2)
    expand: int = 4  # only for "dw" blocks
    stem_stride: int = 2  # 4 = a 4x4 "patchify" stem: fewer positions, wider layers (INT8 kernels like width)

    @property
    def stride(self) -> int:
        """How much the tower shrinks its input: the stem, then 2 in each later stage."""
        return self.stem_stride * 2 ** (len(self.channels) - 1)


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build a model and feed it correctly."""

    name: str
    role: str  # "teacher" or "student"
    embed_dim: int
    image_tower: TowerSpec
    audio_tower: TowerSpec
    audio: AudioSpec = field(default_factory=AudioSpec)
    image: ImageSpec = field(default_factory=ImageSpec)
    description: str = ""
    audio_pool: str = "max"  # "max" over the whole map, or "time": max over frequency, every time cell kept (when things happen)

    @property
    def map_size(self) -> int:
        """Side of ``image_map``: the image tower downsamples by ``stem_stride`` in the stem and 2 in each later stage."""
        return self.image.size // self.image_tower.stride

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Each exported graph input's shape without the batch axis: ``wave``, ``image``."""
        i = self.image
        return {"wave": (self.audio.num_samples,), "image": (3, i.size, i.size) if i.frames == 1 else (i.frames, 3, i.size, i.size)}

    def __post_init__(self):
        _check_fields(self, "")
        for part in _PARTS:
            _check_fields(getattr(self, part), f"{part}.")
        a, towers = self.audio, {"image_tower": self.image_tower, "audio_tower": self.audio_tower}
        rules = [
            (self.name != "", "name", self.name, "a non-empty string"),
            (self.role in ("teacher", "student"), "role", self.role, '"teacher" or "student"'),
            (self.audio_pool in ("max", "time"), "audio_pool", self.audio_pool, '"max" or "time"'),
            (
                a.f_min < a.f_max <= a.sample_rate / 2,
                "audio.f_max",
                a.f_max,
                f"above f_min ({a.f_min}) and at most sample_rate / 2 ({a.sample_rate / 2})",
            ),
            (a.n_fft <= a.num_samples, "audio.n_fft", a.n_fft, f"at most num_samples ({a.num_samples})"),
            (min(self.image.std) > 0, "image.std", self.image.std, "all above 0"),
            *((t.block in ("basic", "dw"), f"{n}.block", t.block, '"basic" or "dw"') for n, t in towers.items()),
            *((len(t.depths) == len(t.channels), f"{n}.depths", t.depths, f"one depth per channel ({len(t.channels)})") for n, t in towers.items()),
            (self.map_size >= 1, "image.size", self.image.size, f"at least the image tower's stride ({self.image_tower.stride})"),
            # a patchify stem floors, the stride-2 stages after it round up: one stem patch leaves a cell
            (
                min(a.n_mels, a.num_frames) >= self.audio_tower.stem_stride,
                "audio",
                f"{a.n_mels} mels x {a.num_frames} frames",
                f"at least the audio tower's stem stride ({self.audio_tower.stem_stride}) on both axes",
            ),
        ]
        for ok, where, value, want in rules:
            if not ok:
                raise _invalid(where, value, want)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def contract(self, map_offset=(0, 0)) -> ModelContract:
        """This architecture's inputs and outputs: waveform and RGB 0..255 in (preprocessing is in the
        model), the embeddings, and the map with cell j looking at pixel ``stride * j`` (3x3 stride-2
        convolutions, padding 1) plus a trained model's measured ``map_offset`` (its checkpoint says)."""
        a, size, grid = self.audio, self.image.size, self.map_size
        image = ImageContract(size, size, self.image.frames, self.image.frame_rate if self.image.frames > 1 else 0.0)
        return ModelContract(
            name=self.name, audio=AudioContract(a.sample_rate, a.num_samples / a.sample_rate), image=image,
            embed_dim=self.embed_dim, map=MapContract((grid, grid), (size / grid, size / grid), tuple(map_offset)),
            description=self.description,
        )  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        """Build a spec from its JSON form; a ConfigError names the malformed or invalid field."""
        try:
            return cls(**{**d, **{k: part(**d[k]) for k, part in _PARTS.items() if k in d}})
        except TypeError as e:
            raise ConfigError(f"model spec is malformed: {e}", _FIX) from None

    def digest(self) -> str:
        """:func:`spec_digest` of this spec's JSON form."""
        return spec_digest(self.to_dict())

    def differences(self, other: ModelSpec, parts: tuple[str, ...] | None = None) -> list[str]:
        """``field: mine != theirs`` for every field where two specs disagree (only the top-level
        fields in ``parts`` when given; the description is never compared)."""
        a, b = _flat(self.to_dict()), _flat(other.to_dict())
        keys = [k for k in a if k != "description" and (parts is None or k.split(".")[0] in parts)]
        return [f"{k}: {a[k]} != {b[k]}" for k in keys if a[k] != b[k]]

    def preprocessing_mismatch(self, other: ModelSpec) -> list[str]:
        """Names of preprocessing fields where two specs disagree (empty when compatible)."""
        return self.differences(other, ("audio", "image"))

    def drift(self, saved: ModelSpec | None) -> list[str]:
        """How this spec, read from a sidecar or manifest, differs from the one its weights were saved with.

        ``saved`` is the spec stored with the weights (a checkpoint's safetensors metadata) and
        is compared field by field. Files written before specs were stored with the weights
        have none: they are compared with the registered spec of the same name, on the
        preprocessing only. Changed preprocessing (sample rate, mels, normalisation, image
        size) leaves every tensor shape intact, so nothing else would catch it, and the
        registry's preprocessing is the contract; its towers are not compared, since old runs
        may keep towers the registry has since changed, and tensor shapes catch those. A
        spec whose name is not registered and that has no stored spec cannot be checked.
        """
        if saved is not None:
            return self.differences(saved)
        registered = _REGISTRY.get(self.name)
        return self.preprocessing_mismatch(registered) if registered else []


def spec_digest(d: dict) -> str:
    """sha256 of a spec's JSON form as stored (canonical key order; the description aside): what
    a bundle manifest keeps to notice a spec edited after export. Taken over the stored dict,
    not a re-parsed spec, so a field a later release adds (with its default) changes nothing."""
    d = {k: v for k, v in d.items() if k != "description"}
    return hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


_PARTS = {"image_tower": TowerSpec, "audio_tower": TowerSpec, "audio": AudioSpec, "image": ImageSpec}
_FIX = "give valid values (the registered specs, listed by edge-sdk info, are examples)"


def _invalid(where: str, value, want: str) -> ConfigError:
    return ConfigError(f"model spec {where} = {value!r} is invalid: want {want}", _FIX)


# The largest value each numeric spec field may take (a manifest or sidecar read from disk is
# checked against them before anything is allocated: a window of 10^9 samples is refused, not run)
_MAX = {"sample_rate": 384_000, "num_samples": 60 * 384_000, "n_fft": 16384, "hop_length": 16384, "n_mels": 512,
        "f_min": 192_000.0, "f_max": 192_000.0, "size": 4096, "mean": 1e6, "std": 1e6, "embed_dim": 65536,
        "stem": 8192, "channels": 8192, "depths": 64, "expand": 16, "stem_stride": 64, "frames": 64, "frame_rate": 240.0}  # fmt: skip


def _number(value, where: str, kind: str):
    """``kind`` "int": an integer above 0; "float": a finite number >= 0, returned as a float
    (so a spec written ``4000`` and one written ``4000.0`` have the same JSON and digest); both
    at most the field's :data:`_MAX`."""
    top = _MAX.get(where.split(".")[-1].split("[")[0])
    span = f" up to {top}" if top is not None else ""
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or (top is not None and value > top):
            raise _invalid(where, value, f"an integer above 0{span}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (top is not None and value > top):
        raise _invalid(where, value, f"a finite number >= 0{span}")
    return float(value)


def _check_fields(obj, prefix: str) -> None:
    """Check a spec dataclass's fields by their annotations (ints, floats, tuples of them,
    strings, nested parts) and store them normalised (tuples, floats) on the frozen object;
    fields of other types (a subclass's own) pass unchecked."""
    for f in dataclasses.fields(obj):
        value, where = getattr(obj, f.name), prefix + f.name
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")  # a module without postponed annotations
        if kind in ("int", "float"):
            value = _number(value, where, kind)
        elif kind.startswith("tuple["):
            item, size = kind[6:].split(",")[0].rstrip("]"), None if "..." in kind else kind.count(",") + 1
            if not isinstance(value, (tuple, list)) or not value or len(value) != (size or len(value)):
                raise _invalid(where, value, f"a list of {size or 'one or more'} {item}s")
            value = tuple(_number(v, f"{where}[{i}]", item) for i, v in enumerate(value))
        elif kind == "str":
            if not isinstance(value, str):
                raise _invalid(where, value, "a string")
        elif f.name in _PARTS and not isinstance(value, _PARTS[f.name]):
            raise _invalid(where, value, f"a {kind}")
        object.__setattr__(obj, f.name, value)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"spec {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


# Role names users type (``edge-sdk distill --student student_s``) -> registered specs.
ALIASES = {"teacher": "avnet_t.avdigits", "student_s": "avnet_s.avdigits", "student_xs": "avnet_xs.avdigits",
           "sync_teacher": "avsync_t.avdigits", "sync_student": "avsync_s.avdigits"}  # fmt: skip


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[ALIASES.get(name, name)]
    except KeyError:
        raise ConfigError(f"unknown model spec {name!r}", f"use one of: {', '.join(sorted([*_REGISTRY, *ALIASES]))}") from None


def list_specs(role: str | None = None) -> list[ModelSpec]:
    return [s for s in _REGISTRY.values() if role is None or s.role == role]


register(
    ModelSpec(
        name="avnet_t.avdigits",
        role="teacher",
        embed_dim=128,
        image_tower=TowerSpec(block="basic", stem=32, channels=(32, 64, 128), depths=(1, 2, 2)),
        audio_tower=TowerSpec(block="basic", stem=32, channels=(64, 128, 256), depths=(1, 1, 1)),
        description="Teacher: ResNet-style image and audio towers, trained on AV-Digits.",
    )
)
register(
    ModelSpec(
        name="avnet_s.avdigits",
        role="student",
        embed_dim=128,
        image_tower=TowerSpec(block="basic", stem=32, channels=(32, 64), depths=(1, 1), stem_stride=4),
        audio_tower=TowerSpec(block="basic", stem=32, channels=(32, 64, 96), depths=(1, 1, 1), stem_stride=4),
        description="Student S: dense 3x3 towers behind a 4x4 patchify stem (few positions, wide layers: "
        "what INT8 kernels run fast), under 1/10 of the teacher's MACs.",
    )
)
register(
    ModelSpec(
        name="avnet_xs.avdigits",
        role="student",
        embed_dim=64,
        image_tower=TowerSpec(block="dw", stem=16, channels=(16, 48), depths=(1, 2), expand=2, stem_stride=4),
        audio_tower=TowerSpec(block="dw", stem=16, channels=(16, 32, 64), depths=(1, 1, 1), expand=2, stem_stride=4),
        description="Student XS: MobileNetV2 inverted residuals behind a 4x4 patchify stem, under 1/40 of the teacher's MACs "
        "(3.6 M of its 8.1 M are the fixed log-mel front end).",
    )
)
register(
    ModelSpec(
        name="avsync_t.avdigits",
        role="teacher",
        embed_dim=128,
        image_tower=TowerSpec(block="basic", stem=32, channels=(32, 64, 128), depths=(1, 1, 1)),
        audio_tower=TowerSpec(block="basic", stem=32, channels=(32, 64, 128), depths=(1, 1, 1)),
        audio=AudioSpec(num_samples=8000),
        image=ImageSpec(frames=5, frame_rate=10.0),
        audio_pool="time",
        description="Synchrony teacher: 5 frames 0.1 s apart fused in the first conv (the stack sees when the digit grows), "
        "0.5 s of sound pooled over frequency only (each 80 ms cell kept: when it was loud).",
    )
)
register(
    ModelSpec(
        name="avsync_s.avdigits",
        role="student",
        embed_dim=128,
        image_tower=TowerSpec(block="basic", stem=32, channels=(32, 64), depths=(1, 1), stem_stride=4),
        audio_tower=TowerSpec(block="basic", stem=32, channels=(32, 64, 96), depths=(1, 1, 1)),
        audio=AudioSpec(num_samples=8000),
        image=ImageSpec(frames=5, frame_rate=10.0),
        audio_pool="time",
        description="Synchrony student: the teacher's inputs and outputs, a 4x4 patchify image stem and narrower towers.",
    )
)
