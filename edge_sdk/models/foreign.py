"""Any two-tower audio-visual checkpoint, wrapped to the face every stage takes.

A user brings a factory (``--model FILE.py:FUNCTION`` or ``package.module:FUNCTION``, called
with no arguments, returning an ``nn.Module``), its weights (``--weights``: safetensors, or a
PyTorch state dict loaded with ``weights_only=True``, never a pickle of code) and its
contract (``--contract FILE.toml``, or the module's ``contract`` attribute; see
:mod:`edge_sdk.contract_file`). :class:`ContractModel` wraps the module:

- audio: raw mono waveform [B, N] in; the declared log-mel features computed by the SDK's
  front end (:class:`~edge_sdk.models.frontend.LogMel`, exportable everywhere) when the tower
  takes features; the tower's output pooled to [B, D] if it is a map, L2-normalised;
- image: RGB 0..255 [B, 3, H, W] in, converted to the channel order, value range and
  mean/std the tower expects; ``(emb, map)``, a map [B, D, h, w] (emb pooled from it) or an
  embedding [B, D] out (then no localization); both L2-normalised.

The map's geometry (where each cell looks) is declared or measured from the module
(:mod:`edge_sdk.models.geometry`) and the declared contract is checked against the module:
a wrong embedding size, grid or geometry is named field by field.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import torch
from torch import nn

from edge_sdk.contract import AudioContract, ImageContract, ModelContract
from edge_sdk.contract_file import ContractFile, contract_file_from_dict, read_contract_file
from edge_sdk.errors import ConfigError, ModelFileError
from edge_sdk.models.frontend import LogMel
from edge_sdk.spec import AudioSpec

__all__ = ["ContractModel", "load_factory", "build_user_model", "load_user_weights"]


def load_factory(ref: str):
    """The callable ``FILE.py:FUNCTION`` or ``package.module:FUNCTION`` names (ConfigError if not)."""
    path, sep, name = str(ref).rpartition(":")
    if not sep or not path or not name.isidentifier():
        raise ConfigError(f"--model {ref!r} is not FILE.py:FUNCTION or package.module:FUNCTION", "e.g. --model my_models.py:make_model")
    try:
        if path.endswith(".py"):
            file = Path(path).resolve()
            if not file.is_file():
                raise ConfigError(f"--model {ref}: {file} does not exist", "give the path of the Python file that defines the factory")
            spec = importlib.util.spec_from_file_location(f"edge_sdk_user_{file.stem}", file)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # dataclasses and pickling need the module registered
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(path)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's module may raise anything while importing
        raise ConfigError(f"--model {ref}: importing {path} failed ({type(e).__name__}: {e})", "fix the module; it is imported as is") from None
    factory = getattr(module, name, None)
    if not callable(factory):
        raise ConfigError(f"--model {ref}: {path} has no function {name!r}", f"define {name}() returning the nn.Module, or name another")
    return factory


def load_user_weights(module: nn.Module, weights: str | Path) -> None:
    """Load ``weights`` (.safetensors, or a state dict saved with ``torch.save``, read with
    ``weights_only=True``) into ``module``, strictly: missing or unexpected keys are named."""
    path = Path(weights)
    if not path.is_file():
        raise ModelFileError(f"--weights {path} does not exist", "give the checkpoint file the factory's model was trained into")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - both loaders raise their own types on damaged files
        raise ModelFileError(f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e)[:200]})",
                             "give a .safetensors file or a state dict saved with torch.save(model.state_dict(), path)") from None  # fmt: skip
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"{path}: not a state dict (a mapping of names to tensors)", "save model.state_dict(), not the model")
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ModelFileError(f"{path} does not fit the factory's model: missing {result.missing_keys[:3]}, "
                             f"unexpected {result.unexpected_keys[:3]}", "pass the weights this factory's model was trained into")  # fmt: skip


def _first(out, key: str):
    """A tower's main output: the tensor itself, ``out[key]`` of a dict, or the first of a tuple."""
    if isinstance(out, dict):
        return out.get(key, next(iter(out.values())))
    return out[0] if isinstance(out, (tuple, list)) else out


class AudioSide(nn.Module):
    """Raw waveform -> the user's audio tower (through the declared log-mel front end) -> [B, D]."""

    def __init__(self, tower: nn.Module, audio: AudioContract):
        super().__init__()
        self.tower, f = tower, audio.features
        self.frontend = None
        if f is not None:
            spec = AudioSpec(audio.sample_rate, audio.num_samples, f.n_fft, f.hop_length, f.n_mels, f.f_min, f.f_max)
            self.frontend = _FeatureFrontEnd(spec, f.mean, f.std, f.layout)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = wave if self.frontend is None else self.frontend(wave)
        y = _first(self.tower(x), "audio_emb")
        if y.dim() > 2:  # a map over time (and frequency): its strongest response
            y = y.flatten(2).amax(2)
        return y / (y * y).sum(-1, keepdim=True).sqrt().clamp_min(1e-12)


class _FeatureFrontEnd(LogMel):
    """The declared features: log-mel (the SDK's front end, exportable everywhere, kept float by
    every INT8 recipe), standardised, in the tower's layout."""

    def __init__(self, spec: AudioSpec, mean: float, std: float, layout: str):
        super().__init__(spec)
        self.mean, self.std, self.layout = mean, std, layout

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = (super().forward(wave) - self.mean) / self.std  # [B, 1, F, T]
        if self.layout == "BFT":
            return x[:, 0]
        if self.layout == "BTF":
            return x[:, 0].transpose(1, 2)
        return x.transpose(2, 3) if self.layout == "B1TF" else x


class ImageSide(nn.Module):
    """RGB 0..255 -> what the user's image tower expects -> (emb [B, D], map [B, D, h, w])."""

    def __init__(self, tower: nn.Module, image: ImageContract, pool: str = "max"):
        super().__init__()
        self.tower, self.pool = tower, pool
        lo, hi = image.value_range
        mean, std = image.mean or (0.0, 0.0, 0.0), image.std or (1.0, 1.0, 1.0)
        scale = torch.tensor([(hi - lo) / 255.0 / s for s in std]).view(1, 3, 1, 1)
        shift = torch.tensor([(lo - m) / s for m, s in zip(mean, std)]).view(1, 3, 1, 1)
        self.identity = bool((scale == 1).all() and (shift == 0).all()) and image.channel_order == "RGB"
        self.bgr = image.channel_order == "BGR"
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("shift", shift, persistent=False)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = image
        if not self.identity:
            x = (x.flip(1) if self.bgr else x) * self.scale + self.shift
        out = self.tower(x)
        if isinstance(out, dict):
            emb, fmap = out.get("image_emb"), out.get("image_map")
        elif isinstance(out, (tuple, list)):
            emb, fmap = out[0], out[1] if len(out) > 1 else None
        else:
            emb, fmap = (None, out) if out.dim() == 4 else (out, None)
        if fmap is None:  # an embedding only: a 1 x 1 "map" keeps every graph's outputs the same (no localization)
            fmap = emb[:, :, None, None]
        if emb is None:
            emb = fmap.flatten(2).amax(2) if self.pool == "max" else fmap.flatten(2).mean(2)
        emb = emb / (emb * emb).sum(-1, keepdim=True).sqrt().clamp_min(1e-12)
        return emb, fmap / (fmap * fmap).sum(1, keepdim=True).sqrt().clamp_min(1e-12)


class ContractModel(nn.Module):
    """A user's two-tower module with the SDK's face: ``audio(wave) -> [B, D]``,
    ``image(rgb) -> ([B, D], [B, D, h, w])``, ``forward(wave, image) -> dict`` of the three,
    and ``contract``; ``factory`` names how to build it again."""

    def __init__(self, module: nn.Module, declared: ContractFile, factory: str = ""):
        super().__init__()
        towers = []
        for side, path in zip(("audio", "image"), declared.towers):
            tower = module
            for part in path.split("."):
                tower = getattr(tower, part, None)
                if tower is None:
                    raise ConfigError(f"the model has no {side} tower at .{path}",
                                      f"declare [towers] {side} = \"attribute.path\" in the contract (it has: "
                                      f"{', '.join(n for n, _ in module.named_children()) or 'no submodules'})")  # fmt: skip
            towers.append(tower)
        self.audio = AudioSide(towers[0], declared.audio)
        self.image = ImageSide(towers[1], declared.image, declared.pool)
        self.declared, self.factory = declared, factory
        self.contract: ModelContract = declared.contract(None)

    def forward(self, wave: torch.Tensor, image: torch.Tensor) -> dict[str, torch.Tensor]:
        image_emb, image_map = self.image(image)
        return {"audio_emb": self.audio(wave), "image_emb": image_emb, "image_map": image_map}


def build_user_model(factory: str, weights: str | Path | None = None, contract: str | Path | None = None) -> ContractModel:
    """Build the user's model (``factory``), load ``weights``, read its contract (``contract`` file,
    else the module's ``contract`` attribute), wrap it and check the contract against it."""
    from edge_sdk.models.geometry import resolve_contract

    module = load_factory(factory)()
    if not isinstance(module, nn.Module):
        raise ConfigError(f"--model {factory} returned a {type(module).__name__}, not a torch.nn.Module", "return the model from the factory")
    if weights:
        load_user_weights(module, weights)
    name = str(factory).rpartition(":")[2]
    if contract is not None:
        declared = read_contract_file(contract, name)
    elif getattr(module, "contract", None) is not None:
        declared = module.contract if isinstance(module.contract, ContractFile) else contract_file_from_dict(module.contract, name)
    else:
        raise ConfigError(f"--model {factory}: no contract for it",
                          "pass --contract FILE.toml (keys in the README's 'Bring your own checkpoint') or set model.contract")  # fmt: skip
    model = ContractModel(module.eval(), declared, factory)
    model.contract = resolve_contract(model, declared)
    return model.eval()
