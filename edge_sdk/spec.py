"""Model specs: the architecture and the preprocessing contract, in one registry.

A :class:`ModelSpec` is the single source of truth for every number that training,
export, bundles and the runtime must agree on: audio sample rate and window, STFT and
mel parameters, image size and normalisation, embedding size. Nothing downstream
re-states them (timm's ``PretrainedCfg`` idea). Names follow ``arch_size.tag``.

This module imports no torch: the runtime reads specs from bundles without it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from edge_sdk.errors import ConfigError

__all__ = ["AudioSpec", "ImageSpec", "TowerSpec", "ModelSpec", "ALIASES", "register", "get_spec", "list_specs"]


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
    """Raw RGB frames in (float32 in [0, 255], NCHW), normalised inside the model."""

    size: int = 96
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)


@dataclass(frozen=True)
class TowerSpec:
    """A conv tower: ``block`` is "basic" (ResNet 3x3) or "dw" (inverted residual, MobileNetV2)."""

    block: str = "basic"
    stem: int = 32
    channels: tuple[int, ...] = (32, 64, 128)
    depths: tuple[int, ...] = (1, 2, 2)
    expand: int = 4  # only for "dw" blocks
    stem_stride: int = 2  # 4 = a 4x4 "patchify" stem: fewer positions, wider layers (INT8 kernels like width)


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

    @property
    def map_size(self) -> int:
        """Side of ``image_map``: the image tower downsamples by ``stem_stride`` in the stem and 2 in each later stage."""
        return self.image.size // (self.image_tower.stem_stride * 2 ** (len(self.image_tower.channels) - 1))

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Each exported graph input's shape without the batch axis: ``wave``, ``image``."""
        return {"wave": (self.audio.num_samples,), "image": (3, self.image.size, self.image.size)}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        try:
            d = dict(d)
            d["image_tower"] = TowerSpec(**_tuples(d["image_tower"]))
            d["audio_tower"] = TowerSpec(**_tuples(d["audio_tower"]))
            d["audio"] = AudioSpec(**d.get("audio", {}))
            d["image"] = ImageSpec(**_tuples(d.get("image", {})))
            return cls(**d)
        except (KeyError, TypeError) as e:
            raise ConfigError(f"model spec is malformed: {e}", "re-create it from a registered spec (edge-sdk info)") from None

    def preprocessing_mismatch(self, other: "ModelSpec") -> list[str]:
        """Names of preprocessing fields where two specs disagree (empty when compatible)."""
        out = []
        for part in ("audio", "image"):
            a, b = dataclasses.asdict(getattr(self, part)), dataclasses.asdict(getattr(other, part))
            out += [f"{part}.{k}: {a[k]} != {b[k]}" for k in a if a[k] != b[k]]
        return out


def _tuples(d: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"spec {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


# Role names users type (``edge-sdk distill --student student_s``) -> registered specs.
ALIASES = {"teacher": "avnet_t.avdigits", "student_s": "avnet_s.avdigits", "student_xs": "avnet_xs.avdigits"}


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[ALIASES.get(name, name)]
    except KeyError:
        raise ConfigError(f"unknown model spec {name!r}", f"use one of: {', '.join(sorted([*_REGISTRY, *ALIASES]))}") from None


def list_specs(role: str | None = None) -> list[ModelSpec]:
    return [s for s in _REGISTRY.values() if role is None or s.role == role]


register(ModelSpec(
    name="avnet_t.avdigits", role="teacher", embed_dim=128,
    image_tower=TowerSpec(block="basic", stem=32, channels=(32, 64, 128), depths=(1, 2, 2)),
    audio_tower=TowerSpec(block="basic", stem=32, channels=(64, 128, 256), depths=(1, 1, 1)),
    description="Teacher: ResNet-style image and audio towers, trained on AV-Digits.",
))
register(ModelSpec(
    name="avnet_s.avdigits", role="student", embed_dim=128,
    image_tower=TowerSpec(block="basic", stem=32, channels=(32, 64), depths=(1, 1), stem_stride=4),
    audio_tower=TowerSpec(block="basic", stem=32, channels=(32, 64, 96), depths=(1, 1, 1), stem_stride=4),
    description="Student S: dense 3x3 towers behind a 4x4 patchify stem (few positions, wide layers: "
                "what INT8 kernels run fast), under 1/10 of the teacher's MACs.",
))
register(ModelSpec(
    name="avnet_xs.avdigits", role="student", embed_dim=64,
    image_tower=TowerSpec(block="dw", stem=16, channels=(16, 48), depths=(1, 2), expand=2, stem_stride=4),
    audio_tower=TowerSpec(block="dw", stem=16, channels=(16, 32, 64), depths=(1, 1, 1), expand=2, stem_stride=4),
    description="Student XS: MobileNetV2 inverted residuals behind a 4x4 patchify stem, under 1/40 of the teacher's MACs "
                "(3.6 M of its 8.1 M are the fixed log-mel front end).",
))
