"""A model contract as a user writes it: ``--contract FILE.toml`` (or the same tables as a
module's ``contract`` attribute, a dict), and how the SDK reaches the user's two towers.

::

    name = "ezvsl-resnet18"            # optional: the factory's name by default
    license = "CC-BY-4.0"              # optional, kept in the bundle
    source = "https://..."             # optional

    [audio]                            # required: sample_rate, seconds
    sample_rate = 16000
    seconds = 3.0
    input = "log_mel"                  # "waveform" (default) or "log_mel"
    [audio.features]                   # with input = "log_mel": computed inside the exported graph
    n_mels = 64
    n_fft = 512
    hop_length = 160
    layout = "B1FT"                    # B1FT (default), BFT, BTF or B1TF

    [image]                            # required: height, width
    height = 224
    width = 224
    value_range = [0, 1]               # what the model's first layer expects (default [0, 255])
    mean = [0.485, 0.456, 0.406]       # normalisation outside the model, if any (in value_range units)
    std = [0.229, 0.224, 0.225]

    [outputs]                          # required: embed_dim
    embed_dim = 512
    map_stride = [32, 32]              # optional: where the map's cells look; measured from the module
    map_offset = [16, 16]              #   when not declared, and checked against it when declared
    pool = "max"                       # image_emb from a map-only image tower: "max" (default) or "mean"

    [towers]                           # optional: the module's attributes holding the two towers
    audio = "audio"
    image = "image"

Torch-free: ``edge-sdk calib`` reads the input sizes from it without a model.
"""

from __future__ import annotations

try:  # Python 3.11+; tomli (a dependency on 3.10, JetPack 6's Python) is the same parser
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from dataclasses import dataclass
from pathlib import Path

from edge_sdk.contract import AudioContract, ImageContract, ModelContract
from edge_sdk.errors import ConfigError

__all__ = ["ContractFile", "read_contract_file", "contract_file_from_dict"]

_TOP = {"name", "license", "source", "description", "audio", "image", "outputs", "towers"}
_OUTPUTS = {"embed_dim", "map_stride", "map_offset", "map", "pool", "extra_outputs"}
_TOWERS = {"audio", "image"}


@dataclass(frozen=True)
class ContractFile:
    """The declared part of a contract, and how to reach the towers; :meth:`contract` adds the
    map geometry measured from (and checked against) the module."""

    name: str
    audio: AudioContract
    image: ImageContract
    embed_dim: int
    map_stride: tuple[float, float] | None = None
    map_offset: tuple[float, float] | None = None
    localize: bool | None = None  # [outputs] map = false: the model has no map (no localization)
    pool: str = "max"
    towers: tuple[str, str] = ("audio", "image")
    license: str = ""
    source: str = ""
    description: str = ""
    extra_outputs: tuple[str, ...] = ()

    def contract(self, map_=None) -> ModelContract:
        return ModelContract(self.name, self.audio, self.image, self.embed_dim, map_, self.extra_outputs, self.license,
                             self.source, self.description)  # fmt: skip


def _unknown(keys, allowed: set[str], where: str) -> None:
    extra = sorted(set(keys) - allowed)
    if extra:
        raise ConfigError(f"model contract: unknown key(s) {', '.join(where + k for k in extra)}",
                          f"{where.rstrip('.') or 'the top level'} takes: {', '.join(sorted(allowed))}")  # fmt: skip


def contract_file_from_dict(d: dict, default_name: str = "model") -> ContractFile:
    """A :class:`ContractFile` from the TOML tables (or a module's ``contract`` dict)."""
    if not isinstance(d, dict):
        raise ConfigError(f"model contract is a {type(d).__name__}, not a table", "write it as in the README's 'Bring your own checkpoint'")
    _unknown(d, _TOP, "")
    outputs, towers = d.get("outputs") or {}, d.get("towers") or {}
    _unknown(outputs, _OUTPUTS, "outputs.")
    _unknown(towers, _TOWERS, "towers.")
    probe = ModelContract.from_dict({"name": d.get("name") or default_name, "audio": d.get("audio"), "image": d.get("image"),
                                     "embed_dim": outputs.get("embed_dim")} if "embed_dim" in outputs else
                                    {"name": "x", "audio": d.get("audio"), "image": d.get("image")})  # fmt: skip
    pool = outputs.get("pool", "max")
    if pool not in ("max", "mean"):
        raise ConfigError(f"model contract outputs.pool = {pool!r} is invalid: want 'max' or 'mean'", "declare how image_emb comes from the map")
    return ContractFile(
        probe.name, probe.audio, probe.image, probe.embed_dim,
        _geometry(outputs, "map_stride", probe), _geometry(outputs, "map_offset", probe), outputs.get("map"), pool,
        (str(towers.get("audio", "audio")), str(towers.get("image", "image"))),
        str(d.get("license", "")), str(d.get("source", "")), str(d.get("description", "")), tuple(outputs.get("extra_outputs", ())),
    )  # fmt: skip


def _geometry(outputs: dict, key: str, probe: ModelContract) -> tuple[float, float] | None:
    """A declared map stride or offset, range-checked as the map's own fields are."""
    if key not in outputs:
        return None
    from edge_sdk.contract import MapContract

    value = outputs[key]
    stride = value if key == "map_stride" else (1.0, 1.0)
    offset = value if key == "map_offset" else (0.0, 0.0)
    try:
        m = MapContract((1, 1), stride, offset)
    except ConfigError as e:
        raise ConfigError(e.problem.replace("map.stride", "outputs.map_stride").replace("map.offset", "outputs.map_offset"), e.fix) from None
    return m.stride if key == "map_stride" else m.offset


def read_contract_file(path: str | Path, default_name: str = "model") -> ContractFile:
    """Read ``--contract FILE.toml``; every problem is one ConfigError naming the file and the key."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read the contract {path}: {e.strerror or e}", "pass the path of a .toml contract file") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})", "fix the file's syntax (https://toml.io)") from None
    try:
        return contract_file_from_dict(data, default_name)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e.problem}", e.fix) from None
