"""Generated AV-Digits scenes as a live-like input (``synthetic://av-digits`` in
:mod:`.sources`): one scene every ``hold`` seconds, its spoken digit in the first second,
then silence, with the ground truth (the spoken digit's box, label, scene) in each
:class:`~edge_sdk.runtime.frames.VideoFrame`'s ``meta``. The digit banks come from
:mod:`edge_sdk.media.digits` (real FSDD + MNIST test data where present) and are cached.
"""

from __future__ import annotations

import functools
import logging
import math

import numpy as np

from edge_sdk.errors import ConfigError, DataError
from edge_sdk.runtime.capture import Source
from edge_sdk.runtime.clock import ClockMap

__all__ = ["SyntheticSource"]

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def _bank(sample_rate: int, which: str):
    """The held-out digit bank the scenes are drawn from (real where ../shared/data has it), made once per rate and kind."""
    from edge_sdk.media.corpora import default_data_dir
    from edge_sdk.media.digits import load_bank, synthetic_bank

    root = default_data_dir()
    real = root is not None and (root / "fsdd" / "recordings").is_dir() and (root / "mnist").is_dir()
    if which == "real" and not real:
        raise DataError(
            "synthetic://av-digits?bank=real: FSDD and MNIST are not in ../shared/data",
            "put them there (fsdd/recordings, mnist), or use bank=auto or bank=synthetic",
        )
    if which == "synthetic" or not real:
        return synthetic_bank("test", sample_rate)
    return load_bank(root / "fsdd" / "recordings", root / "mnist", "test", sample_rate)


class SyntheticSource(Source):
    """Generated AV-Digits scenes: one every ``hold`` seconds, shown at ``fps`` while its 1 s
    sound plays first, then silence; the ground truth rides in ``VideoFrame.meta``."""

    @property
    def live(self) -> bool:
        return bool(self.opts.get("realtime"))

    def __init__(self, uri: str, name: str, sample_rate: int, opts: dict):
        if name != "av-digits":
            raise ConfigError(f"{uri}: unknown generator {name!r}", "use synthetic://av-digits")
        for key, ok in (
            ("fps", opts["fps"] > 0),
            ("seconds", opts["seconds"] > 0),
            ("k", 1 <= opts["k"] <= 10),
            ("size", opts["size"] >= 32),
            ("block_ms", opts["block_ms"] > 0),
            ("hold", opts["hold"] >= 1),
            ("bank", opts["bank"] in ("auto", "real", "synthetic")),
        ):
            if not ok:
                raise ConfigError(
                    f"{uri}: {key}={opts[key]!r} is out of range",
                    "fps, seconds, block_ms > 0; hold >= 1; k 1..10; size >= 32; bank auto|real|synthetic",
                )
        super().__init__(uri, "av", opts)
        from edge_sdk.contract import AudioContract, ImageContract, ModelContract
        from edge_sdk.media.avdigits import AVDigits

        # the scenes' sizes: size x size pictures and 1 s utterances at the model's rate
        sizes = ModelContract("synthetic-scenes", AudioContract(sample_rate, 1.0), ImageContract(opts["size"], opts["size"]), 1)
        self.sample_rate = sample_rate
        self.bank = _bank(sample_rate, opts["bank"])
        self.scenes = AVDigits(self.bank, sizes, math.ceil(opts["seconds"] / opts["hold"]), k=opts["k"], seed=opts["seed"], train=False)
        log.info("%s: %d scenes from %s", uri, len(self.scenes), self.bank.source)

    def _run(self) -> None:
        o, sr = self.opts, self.sample_rate
        clock = ClockMap()
        clock.to_sdk(0.0)  # scene time 0 = the SDK clock now
        block = max(1, int(round(sr * o["block_ms"] / 1000)))
        hold, n_hold = o["hold"], int(round(o["hold"] * sr))
        for i in range(len(self.scenes)):
            item = self.scenes[i]
            image = item["image"].transpose(1, 2, 0).astype(np.uint8)
            meta = dict(box=tuple(float(v) for v in item["box"]), label=int(item["label"]), scene=i)
            sound = np.zeros(n_hold, np.float32)
            sound[: len(item["wave"])] = item["wave"][:n_hold]
            t0 = i * hold
            events = [(t0 + j / o["fps"], 0, t0 + j / o["fps"], None) for j in range(math.ceil(hold * o["fps"] - 1e-9))]
            events += [(t0 + (b + block) / sr, 1, t0 + b / sr, sound[b : b + block]) for b in range(0, n_hold, block)]
            for ready, _, t, wave in sorted(events, key=lambda e: e[:2]):  # in the order a device would deliver
                if t >= o["seconds"]:
                    continue
                if o["realtime"] and self.wait_until(clock.to_sdk(ready)):
                    return
                done = self.frame(image.copy(), clock.to_sdk(t), dict(meta)) if wave is None else self.block(wave.copy(), clock.to_sdk(t), sr)
                if not done:
                    return
        self.done = True
