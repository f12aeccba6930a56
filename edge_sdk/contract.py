"""The model contract: what goes into and comes out of any two-tower audio-visual model.

Every stage downstream of training (calibration, export, bundles, the runtime, the
benchmark) reads a :class:`ModelContract` and nothing else, so a user's own checkpoint (an
EZ-VSL ResNet-18 at 224 x 224, an ImageBind-style ViT, their sample rate and window) goes
through every stage. The contract says only inputs and outputs:

- ``audio``: sample rate, window, channels, and whether the audio tower takes the waveform or
  log-mel features (then their parameters: the SDK computes them inside the exported graph);
- ``image``: height and width (not only square), frames per visual input (T >= 1), channel
  order, value range and mean/std where the normalisation is outside the model (the SDK
  puts it inside the exported graph);
- outputs: the embedding size, and the localization map: its grid, and where its cells look
  in the image (cell ``j`` is centred on pixel ``stride * j + offset``), declared or measured,
  and checked against the module;
- metadata: name, license, source.

Exported graphs always take raw mono waveform ``[B, N]`` in [-1, 1] and RGB ``[B, 3, H, W]``
(``[B, T, 3, H, W]`` for T > 1) in 0..255, so an app feeds every model the same way. Our own
architectures (tower widths, roles) live in their registry (:mod:`edge_sdk.spec`), each entry
producing a contract. Every number is range-checked when a contract is built (a manifest or a
TOML file), before anything is allocated: a ConfigError names the field, its value and the
allowed range. Torch-free.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass

from edge_sdk.errors import ConfigError

__all__ = ["LogMelFeatures", "AudioContract", "ImageContract", "MapContract", "ModelContract", "RANGES", "FEATURE_LAYOUTS"]

# field -> (lowest, highest) allowed; every number read from a manifest or a contract file is checked
RANGES = {
    "audio.sample_rate": (1000, 384_000),
    "audio.seconds": (0.05, 60.0),
    "audio.channels": (1, 8),
    "audio.features.n_mels": (1, 512),
    "audio.features.n_fft": (16, 16384),
    "audio.features.hop_length": (1, 16384),
    "audio.features.f_min": (0.0, 192_000.0),
    "audio.features.f_max": (1.0, 192_000.0),
    "audio.features.mean": (-1e6, 1e6),
    "audio.features.std": (1e-9, 1e6),
    "image.height": (8, 4096),
    "image.width": (8, 4096),
    "image.frames": (1, 64),
    "image.frame_rate": (0.5, 240.0),
    "image.value_range": (-1e6, 1e6),
    "image.mean": (-1e6, 1e6),
    "image.std": (1e-9, 1e6),
    "embed_dim": (1, 65536),
    "map.grid": (1, 4096),
    "map.stride": (0.01, 4096.0),
    "map.offset": (-4096.0, 4096.0),
}
FEATURE_LAYOUTS = ("B1FT", "BFT", "BTF", "B1TF")  # how the audio tower wants its log-mel: batch, channel, frequency, time
_FIX = "fix the contract (a --contract TOML file or the model's .contract; keys in the README's 'Bring your own checkpoint')"


def _bad(where: str, value, want: str) -> ConfigError:
    return ConfigError(f"model contract {where} = {value!r} is invalid: want {want}", _FIX)


def _num(value, where: str, kind: type = float):
    """``value`` as ``kind``, finite and within :data:`RANGES` of ``where`` (its last part indexed off)."""
    lo, hi = RANGES[where.split("[")[0]]
    whole = kind is int
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not float(value).is_integer()):
        raise _bad(where, value, f"{'an integer' if whole else 'a number'} in {lo}..{hi}")
    if not math.isfinite(value) or not lo <= value <= hi:
        raise _bad(where, value, f"{'an integer' if whole else 'a finite number'} in {lo}..{hi}")
    return int(value) if whole else float(value)


def _pair(value, where: str, kind: type = float) -> tuple:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise _bad(where, value, "two numbers")
    return tuple(_num(v, f"{where}[{i}]", kind) for i, v in enumerate(value))


def _triple(value, where: str) -> tuple[float, float, float] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise _bad(where, value, "three numbers, one per colour channel, or nothing")
    return tuple(_num(v, f"{where}[{i}]") for i, v in enumerate(value))


def _choice(value, where: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise _bad(where, value, " or ".join(repr(a) for a in allowed))
    return value


@dataclass(frozen=True)
class LogMelFeatures:
    """Log-mel features an audio tower takes instead of the waveform: natural log of HTK-mel
    power (Hann window), ``(log_mel - mean) / std``, laid out as ``layout``."""

    n_mels: int
    n_fft: int
    hop_length: int
    f_min: float = 0.0
    f_max: float = 0.0  # 0: sample_rate / 2
    mean: float = 0.0
    std: float = 1.0
    layout: str = "B1FT"

    def checked(self, sample_rate: int, num_samples: int) -> LogMelFeatures:
        p = "audio.features."
        f = dataclasses.replace(
            self, n_mels=_num(self.n_mels, p + "n_mels", int), n_fft=_num(self.n_fft, p + "n_fft", int),
            hop_length=_num(self.hop_length, p + "hop_length", int), f_min=_num(self.f_min, p + "f_min"),
            f_max=_num(self.f_max or sample_rate / 2, p + "f_max"), mean=_num(self.mean, p + "mean"), std=_num(self.std, p + "std"),
            layout=_choice(self.layout, p + "layout", FEATURE_LAYOUTS),
        )  # fmt: skip
        if not f.f_min < f.f_max <= sample_rate / 2:
            raise _bad(p + "f_max", f.f_max, f"above f_min ({f.f_min}) and at most sample_rate / 2 ({sample_rate / 2})")
        if f.n_fft > num_samples:
            raise _bad(p + "n_fft", f.n_fft, f"at most the window's {num_samples} samples")
        return f


@dataclass(frozen=True)
class AudioContract:
    """What the audio input is: ``seconds`` of mono (or ``channels``) audio at ``sample_rate``,
    as the waveform or as :class:`LogMelFeatures` computed inside the exported graph."""

    sample_rate: int
    seconds: float
    channels: int = 1
    input: str = "waveform"
    features: LogMelFeatures | None = None

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "sample_rate", _num(self.sample_rate, "audio.sample_rate", int))
        set_(self, "seconds", _num(self.seconds, "audio.seconds"))
        set_(self, "channels", _num(self.channels, "audio.channels", int))
        _choice(self.input, "audio.input", ("waveform", "log_mel"))
        if self.channels != 1:
            raise _bad("audio.channels", self.channels, "1 (the runtime feeds mono; downmix inside the model for more)")
        if (self.input == "log_mel") != (self.features is not None):
            raise _bad("audio.features", self.features, "[audio.features] exactly when audio.input = 'log_mel'")
        if self.features is not None:
            set_(self, "features", self.features.checked(self.sample_rate, self.num_samples))

    @property
    def num_samples(self) -> int:
        """The window in samples (``round(seconds * sample_rate)``)."""
        return int(round(self.seconds * self.sample_rate))

    @property
    def window_seconds(self) -> float:
        return self.num_samples / self.sample_rate


@dataclass(frozen=True)
class ImageContract:
    """What the visual input is. The runtime feeds RGB in 0..255, ``height`` x ``width``, the
    centre of each frame cut to that aspect; ``channel_order``, ``value_range`` and ``mean`` /
    ``std`` say what the model's own first layer expects (the SDK converts inside the graph).
    ``frames`` > 1: a stack of frames ``frame_rate`` apart (multi-frame towers)."""

    height: int
    width: int
    frames: int = 1
    frame_rate: float = 0.0
    channel_order: str = "RGB"
    value_range: tuple[float, float] = (0.0, 255.0)
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None

    def __post_init__(self):
        set_ = object.__setattr__
        for name in ("height", "width", "frames"):
            set_(self, name, _num(getattr(self, name), f"image.{name}", int))
        if self.frames > 1:
            set_(self, "frame_rate", _num(self.frame_rate, "image.frame_rate"))
        _choice(self.channel_order, "image.channel_order", ("RGB", "BGR"))
        lo, hi = _pair(self.value_range, "image.value_range")
        if not lo < hi:
            raise _bad("image.value_range", self.value_range, "[low, high] with low < high, e.g. [0, 255] or [0, 1]")
        set_(self, "value_range", (lo, hi))
        set_(self, "mean", _triple(self.mean, "image.mean"))
        set_(self, "std", _triple(self.std, "image.std"))
        if (self.mean is None) != (self.std is None):
            raise _bad("image.std" if self.std is None else "image.mean", None, "mean and std together, or neither")


@dataclass(frozen=True)
class MapContract:
    """The localization map ``image_map`` [B, D, h, w]: ``grid`` (h, w), and where cell (i, j)
    looks: pixel ``(stride[0] * i + offset[0], stride[1] * j + offset[1])`` of the model's input.
    ``source`` says whether that geometry was declared or measured from the module."""

    grid: tuple[int, int]
    stride: tuple[float, float]
    offset: tuple[float, float] = (0.0, 0.0)
    source: str = "declared"

    def __post_init__(self):
        object.__setattr__(self, "grid", _pair(self.grid, "map.grid", int))
        object.__setattr__(self, "stride", _pair(self.stride, "map.stride"))
        object.__setattr__(self, "offset", _pair(self.offset, "map.offset"))
        _choice(self.source, "map.source", ("declared", "measured"))


@dataclass(frozen=True)
class ModelContract:
    """Inputs and outputs of a two-tower audio-visual model (see the module docstring)."""

    name: str
    audio: AudioContract
    image: ImageContract
    embed_dim: int
    map: MapContract | None = None
    extra_outputs: tuple[str, ...] = ()
    license: str = ""
    source: str = ""
    description: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not 0 < len(self.name) <= 200:
            raise _bad("name", self.name, "a string of 1..200 characters")
        object.__setattr__(self, "embed_dim", _num(self.embed_dim, "embed_dim", int))
        if self.map is not None:
            h, w = self.map.grid
            if h > self.image.height or w > self.image.width:
                raise _bad("map.grid", list(self.map.grid), f"at most the image's {self.image.height} x {self.image.width}")
            for axis, (off, size) in enumerate(zip(self.map.offset, (self.image.height, self.image.width))):
                if not -size <= off <= size:
                    raise _bad(f"map.offset[{axis}]", off, f"within the image: -{size}..{size}")
        for name in ("extra_outputs",):
            object.__setattr__(self, name, tuple(str(x) for x in getattr(self, name)))

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Each exported graph input's shape without the batch axis: ``wave``, ``image``."""
        a, i = self.audio, self.image
        image = (3, i.height, i.width) if i.frames == 1 else (i.frames, 3, i.height, i.width)
        return {"wave": (a.num_samples,), "image": image}

    def with_map(self, map_: MapContract | None) -> ModelContract:
        return dataclasses.replace(self, map=map_)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """sha256 of the contract's JSON form (description aside): a manifest keeps it to notice an edit."""
        d = {k: v for k, v in self.to_dict().items() if k not in ("description",)}
        return hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    @classmethod
    def from_dict(cls, d: dict) -> ModelContract:
        """A contract from its JSON form (a manifest) or a TOML file's tables; a ConfigError names
        the malformed, unknown or out-of-range field."""
        if not isinstance(d, dict):
            raise _bad("(the contract)", type(d).__name__, "a table of fields")
        top = _fields(d, cls, "")
        for key in ("audio", "image"):
            if key not in top:
                raise ConfigError(f"model contract has no [{key}] table", f"declare [{key}] ({_REQUIRED[key]}); {_FIX}")
        audio = _fields(top["audio"], AudioContract, "audio.")
        if audio.get("features") is not None:
            audio["features"] = LogMelFeatures(**_fields(audio["features"], LogMelFeatures, "audio.features."))
        top["audio"] = AudioContract(**audio)
        top["image"] = ImageContract(**_fields(top["image"], ImageContract, "image."))
        if top.get("map") is not None:
            top["map"] = MapContract(**_fields(top["map"], MapContract, "map."))
        if "embed_dim" not in top:
            raise ConfigError("model contract has no embed_dim", f"declare [outputs] embed_dim = D (the embeddings' size); {_FIX}")
        return cls(**top)


_REQUIRED = {"audio": "sample_rate, seconds", "image": "height, width"}


def _fields(d, cls, prefix: str) -> dict:
    """``d``'s keys checked against ``cls``'s fields: unknown keys and missing required ones are named."""
    if not isinstance(d, dict):
        raise _bad(prefix.rstrip(".") or "(the contract)", d, "a table")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"model contract has unknown key(s) {', '.join(prefix + k for k in unknown)}",
                          f"{prefix.rstrip('.') or 'the contract'} takes: {', '.join(sorted(names))}")  # fmt: skip
    required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [n for n in required if n not in d]
    if missing:
        raise ConfigError(f"model contract is missing {', '.join(prefix + m for m in missing)}", f"declare it; {_FIX}")
    return dict(d)
