"""One way in for every model a command takes: a checkpoint or shipped name of ours
(``MODEL``), or a user's (``--model FILE.py:FUNCTION --weights CKPT --contract FILE.toml``).

:func:`open_model` returns the model with the face every stage takes (``audio``, ``image``,
``forward(wave, image)``, ``contract``), its sidecar metadata, and the ``model`` record a
bundle manifest keeps (where the PyTorch model comes from: :mod:`edge_sdk.manifest`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_sdk.errors import ConfigError
from edge_sdk.manifest import factory_source, registry_source

__all__ = ["OpenedModel", "open_model"]


@dataclass
class OpenedModel:
    model: object  # AVNet or ContractModel: .audio, .image, .contract
    meta: dict  # the checkpoint's sidecar (recipe, metrics, map offset); {} for a user's model
    source: dict  # the manifest's "model" record
    ref: str  # how the user named it, for reports

    @property
    def ours(self) -> bool:
        """Whether it is one of our registry's architectures (AV-Digits task metrics apply)."""
        return self.source.get("kind") == "registry"


def open_model(ref: str | None = None, *, factory: str | None = None, weights: str | Path | None = None,
               contract: str | Path | None = None) -> OpenedModel:  # fmt: skip
    """Our checkpoint or shipped name ``ref``, or the user's ``factory`` with ``weights`` and
    ``contract`` (the module's own ``contract`` attribute when no file is given)."""
    if factory:
        if ref:
            raise ConfigError(f"both a model ({ref}) and --model {factory} were given", "give one: MODEL for ours, --model for your own")
        from edge_sdk.models.foreign import build_user_model

        model = build_user_model(factory, weights, contract)
        return OpenedModel(model, {}, factory_source(factory, model.declared.towers, model.declared.pool), factory)
    if not ref:
        raise ConfigError("no model given", "pass MODEL (a checkpoint or shipped name) or --model FILE.py:FUNCTION with --contract")
    if weights or contract:
        raise ConfigError(f"--weights/--contract go with --model FILE.py:FUNCTION, not with {ref}",
                          f"{ref} carries its own weights and contract; for your own model pass --model")  # fmt: skip
    from edge_sdk.models.shipped import resolve_model

    model, meta = resolve_model(str(ref))
    return OpenedModel(model, meta, registry_source(model.spec), str(ref))
