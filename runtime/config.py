"""The streaming pipeline's tuning knobs, checked once: one typed dataclass instead of a
dozen keyword arguments (house style 10).

    cfg = PipelineConfig(policy="latest", queue_size=8)        # a bad value: ConfigError naming it
    Pipeline.from_bundle("bundle", "cam://0", config=cfg)
    Pipeline.from_bundle("bundle", "cam://0", queue_size=8)    # the same, as keywords

Every number is finite (NaN and inf are refused) and within the range its error names.
"""

from __future__ import annotations

import difflib
import math
import numbers
from dataclasses import dataclass, fields, replace

from edge_sdk.errors import ConfigError

__all__ = ["PipelineConfig", "POLICIES"]

POLICIES = ("latest", "block")

# field -> (smallest value, whole numbers only, what it is)
_RANGES = {
    "queue_size": (1, True, "frames waiting for inference on a live source (2 keeps latency low)"),
    "batch": (1, True, "frames run as one inference (a file's, or several streams')"),
    "batch_wait_ms": (0, False, "how long a ready frame waits for other streams' frames to join its batch"),
    "audio_hop_ms": (0, False, "the audio tower runs at most this often (0: on every frame)"),
    "max_audio_wait_s": (0, False, "how long a live frame waits for its sound"),
    "max_skew_ms": (0, False, "how far short of a live frame's time its sound may end"),
}


@dataclass(frozen=True)
class PipelineConfig:
    """How a :class:`~edge_sdk.runtime.pipeline.Pipeline` trades latency, drops and throughput.

    ``policy``: when inference is slower than capture, ``latest`` drops the oldest waiting
    frame (counted), ``block`` makes the source wait (nothing dropped); None picks ``latest``
    for live and paced sources, ``block`` for files read as fast as possible.
    ``queue_size``: frames waiting for inference on a live source (a look-ahead task such as
    sync adds room for its look-ahead). ``batch``: with ``block``, up to this many waiting
    frames run as one inference; with several streams, up to this many (at least one per stream)
    frames of different streams run as one. ``batch_wait_ms``: the latency bound of such a
    batch: it goes when every active stream has a frame ready, or when its oldest frame has
    waited this long (DeepStream's ``batched-push-timeout``). ``audio_hop_ms``: run the audio tower at most every this
    many ms (0: every frame). ``max_audio_wait_s``: how long a live frame waits for its
    sound. ``max_skew_ms``: how far short of a live frame's time its audio window may end.
    """

    policy: str | None = None
    queue_size: int = 2
    batch: int = 8
    batch_wait_ms: float = 10.0
    audio_hop_ms: float = 0.0
    max_audio_wait_s: float = 0.25
    max_skew_ms: float = 30.0

    def __post_init__(self) -> None:
        if self.policy is not None and self.policy not in POLICIES:
            raise ConfigError(
                f"policy={self.policy!r} is not a queue policy",
                "use latest (drop the oldest frame, counted), block (never drop), or None for the source's default",
            )
        default = {f.name: f.default for f in fields(self)}
        for name, (lo, whole, what) in _RANGES.items():
            v = getattr(self, name)
            kind = "a whole number" if whole else "a finite number"
            ok = isinstance(v, numbers.Integral if whole else numbers.Real) and not isinstance(v, bool)
            if not ok or not math.isfinite(v) or v < lo:
                raise ConfigError(
                    f"{name}={v!r} is {'out of range' if ok else 'not ' + kind}: {what}", f"pass {name} as {kind} >= {lo} (default {default[name]!r})"
                )

    @classmethod
    def of(cls, config: PipelineConfig | None = None, **knobs) -> PipelineConfig:
        """``config`` (or the defaults) with ``knobs`` replaced; an unknown knob is a TypeError
        naming it and the close match."""
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(knobs) - set(names))
        if unknown:
            close = difflib.get_close_matches(unknown[0], names, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise TypeError(f"unknown pipeline option(s) {', '.join(unknown)}{hint}; the options are {', '.join(names)}")
        if config is not None and not isinstance(config, cls):
            raise TypeError(f"config must be a PipelineConfig, not {type(config).__name__}")
        return replace(config or cls(), **knobs)
