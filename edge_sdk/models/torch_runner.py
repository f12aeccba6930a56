"""PyTorch as a runner: a model's towers run eagerly in FP32 on numpy batches, with the same
face as every exported backend (:class:`~edge_sdk.runner.Towers`).

Evaluation and training plots run a model in memory through :class:`TorchTowers`; a
bundle's ``model.safetensors`` (never a pickle) is opened by :func:`open_weights`, which
this package registers as the runtime's ``torch`` backend (the ``edge_sdk.backends`` entry
point in pyproject.toml), so the runtime itself never imports model code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edge_sdk.errors import EdgeSDKError, ModelFileError
from edge_sdk.runner import Towers

__all__ = ["TorchTowers", "open_weights"]


class TorchTowers(Towers):
    """A model in memory (``model.audio``, ``model.image``; ``model.contract``), run in batches
    under ``torch.inference_mode``; ``contract`` overrides the model's own (e.g. with a map
    offset measured for it)."""

    def __init__(self, model: torch.nn.Module, contract=None, batch_size: int = 64):
        super().__init__(contract if contract is not None else model.contract, batch_size)
        self.model = model.eval()

    @staticmethod
    def call(fn, x: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            out = fn(torch.from_numpy(x))
        return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]

    def run_audio(self, x):
        return self.call(self.model.audio, x)

    def run_image(self, x):
        return self.call(self.model.image, x)


def open_weights(choice, contract, *, model: dict, trusted: tuple[str, ...] = (), threads: int = 0, batch_size: int = 64) -> TorchTowers:
    """The runtime's ``torch`` backend: a bundle's ``model.safetensors`` (``choice.files["av"]``)
    loaded into the model its manifest names (``model``): one of our registry's architectures,
    or a user's factory, imported only when it is part of edge_sdk or the caller trusts it
    (``trusted``: e.g. ``--model FILE.py:FUNCTION`` given again), since importing runs its code."""
    from edge_sdk.checkpoint import load_tensors

    if threads:
        torch.set_num_threads(threads)
    weights = Path(choice.files["av"])
    net = _architecture(model, contract, trusted)
    try:
        net.load_state_dict(load_tensors(weights))
    except RuntimeError as e:
        raise ModelFileError(f"{weights}: the weights do not fit {contract.name} ({str(e).splitlines()[0][:160]})",
                             "the bundle is inconsistent: re-export it") from None  # fmt: skip
    return TorchTowers(net.eval(), contract, batch_size)


def _trusted(factory: str, trusted: tuple[str, ...]) -> str | None:
    """The user's own spelling of the manifest's ``factory`` among ``trusted`` (None: not given).
    A bundle copied to another machine names the file where it was exported: the same file
    name and function given again here count, at the path given here."""

    def key(ref: str) -> tuple[str, str]:
        path, _, name = ref.rpartition(":")
        return (Path(path).name if path.endswith(".py") else path), name

    return next((t for t in trusted if key(t) == key(factory)), None)


def _architecture(model: dict, contract, trusted: tuple[str, ...]) -> torch.nn.Module:
    """An untrained module of the architecture a manifest's ``model`` names."""
    if model.get("kind") == "registry":
        from edge_sdk.models.avnet import AVNet
        from edge_sdk.spec import ModelSpec

        return AVNet(ModelSpec.from_dict(model["spec"]))
    named = str(model.get("factory", ""))
    factory = named if named.startswith("edge_sdk.") else _trusted(named, trusted)
    if factory is None:
        raise EdgeSDKError(f"this bundle's PyTorch weights need its model's code ({named}), which edge_sdk does not import unasked",
                           f"pass --model {named} (trusted=({named!r},) in Python) to run them, or use another backend")  # fmt: skip
    from edge_sdk.contract_file import ContractFile
    from edge_sdk.models.foreign import ContractModel, load_factory

    towers = tuple(model.get("towers") or ("audio", "image"))
    declared = ContractFile(contract.name, contract.audio, contract.image, contract.embed_dim, towers=towers, pool=model.get("pool", "max"))
    wrapped = ContractModel(load_factory(factory)(), declared, factory)
    wrapped.contract = contract
    return wrapped
