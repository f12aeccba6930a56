"""What a :class:`~.pipeline.Pipeline` runs, opened and checked before it starts: a bundle's
towers on the backend this machine runs best, its sources by URI, and the checks that the
parts fit together (the model files take the preprocessing the manifest declares; each
source has the track its role needs), so a mismatch fails by name at open instead of on
the first live frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_sdk.errors import ConfigError, DataError

__all__ = ["Opened", "Model", "open_bundle", "open_model", "open_sources", "check_contract", "check_roles", "warn_without_sound"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Opened:
    """A bundle's towers and the sources opened for it: what :class:`~.pipeline.Pipeline` takes."""

    towers: object
    contract: object
    video: object
    audio: object
    backend: str  # "backend/precision"


@dataclass(frozen=True)
class Model:
    """A bundle's towers, opened and checked: what every stream of a pipeline shares."""

    towers: object
    contract: object
    backend: str  # "backend/precision"


def open_model(bundle, *, prefer=None, precision=None, trusted: tuple[str, ...] = ()) -> Model:
    """Open a bundle (folder, zip or read bundle) on the backend this machine runs best; the
    towers are warmed up and checked against the manifest (:func:`check_contract`). ``trusted``
    names the model factories the ``torch`` backend may import (a user's model's code)."""
    from edge_sdk.bundle import read_bundle
    from edge_sdk.runtime.backends import open_towers, pick_backend

    b = read_bundle(bundle) if isinstance(bundle, (str, Path)) else bundle
    choice = pick_backend(b, prefer, precision)
    towers = open_towers(b, choice.backend, choice.precision, batch_size=64, trusted=trusted)
    log.info("pipeline: %s %s from %s", choice.backend, choice.precision, b.folder)
    check_contract(towers, b)
    return Model(towers, b.contract, f"{choice.backend}/{choice.precision}")


def open_sources(video: str, audio: str | None, sample_rate: int, source_opts: dict | None = None) -> tuple:
    """The video source and, where it is another URI, the audio source, at the model's rate
    (``source_opts`` go to the video source); the video source is closed when the audio one
    cannot be opened."""
    from edge_sdk.runtime.sources import open_source

    v = open_source(video, sample_rate=sample_rate, **(source_opts or {}))
    try:
        a = None if audio in (None, "", video) else open_source(audio, sample_rate=sample_rate)
    except BaseException:
        v.stop()
        raise
    return v, a


def open_bundle(
    bundle, video: str, audio: str | None = None, *, prefer=None, precision=None, source_opts: dict | None = None, trusted: tuple[str, ...] = ()
) -> Opened:
    """Open a bundle (:func:`open_model`) and the sources by URI at the model's sample rate
    (:func:`open_sources`)."""
    m = open_model(bundle, prefer=prefer, precision=precision, trusted=trusted)
    v, a = open_sources(video, audio, m.contract.audio.sample_rate, source_opts)
    return Opened(m.towers, m.contract, v, a, m.backend)


def check_contract(towers, bundle) -> None:
    """One warm-up inference on inputs of the bundle's preprocessing contract (also the first,
    slow call, kept out of the first frame's latency): a manifest whose spec does not match its
    model files fails here, by name, instead of on the first live frame."""
    spec = bundle.contract  # what the manifest says the model takes and gives
    try:
        a, e, _ = towers.embed_both(np.zeros((1, spec.audio.num_samples), np.float32), np.zeros((1, *spec.input_shapes["image"]), np.float32))
    except Exception as err:  # noqa: BLE001 - every runtime raises its own type
        raise ConfigError(
            f"{bundle.folder}: its model files do not take the preprocessing its manifest declares "
            f"({spec.audio.num_samples} samples at {spec.audio.sample_rate} Hz, {spec.image.height} x {spec.image.width} RGB): "
            f"{str(err).splitlines()[0][:160]}",
            "re-export the bundle (edge-sdk export); do not edit manifest.json",
        ) from None
    if a.shape[-1] != spec.embed_dim or e.shape[-1] != spec.embed_dim:
        raise ConfigError(
            f"{bundle.folder}: embeddings of size {a.shape[-1]}/{e.shape[-1]}, the manifest says {spec.embed_dim}",
            "re-export the bundle (edge-sdk export)",
        )


def check_roles(video, audio) -> None:
    """Refuse a video source without pictures, or an audio source without sound."""
    if getattr(video, "kind", "video") == "audio":
        raise DataError(
            f"{video.uri} has no video track; the video source needs pictures",
            "sound-only inputs go to --audio (audio=); give a camera, stream or video file as --video",
        )
    if audio is not None and getattr(audio, "kind", "audio") == "video":
        raise DataError(
            f"{audio.uri} has no audio track; the audio source needs sound",
            "give a microphone or a file with sound as --audio (mic://default, wav:///path)",
        )


def warn_without_sound(video, audio, task_name: str) -> None:
    """Say when no source gives sound: the task then runs on silence (counted as ``silent_audio``)."""
    if audio is None and getattr(video, "kind", "av") == "video":
        why = (
            "has no audio track"
            if getattr(video, "counters", {}).get("no_audio")
            else "gives pictures only (cameras and network streams are read without their sound)"
        )
        log.warning(
            "%s %s; the %s task needs sound: pass --audio mic://default or wav:///path (running on silence, counted as silent_audio)",
            video.uri,
            why,
            task_name,
        )
