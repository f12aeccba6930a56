"""The SDK clock: one monotonic nanosecond timeline for every frame, audio block and result.

Every source stamps what it captures with ``pts_ns`` on this clock. Devices that keep
their own time (sounddevice's ADC time, a file's presentation timestamps) are mapped onto
it once, with :class:`ClockMap`, so timestamps keep the device's spacing instead of the
jitter of the moment a callback ran.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["now_ns", "ClockMap"]


def now_ns() -> int:
    """Nanoseconds on the SDK clock (``time.monotonic_ns``)."""
    return time.monotonic_ns()


@dataclass
class ClockMap:
    """Maps a device's clock (seconds) to the SDK clock, fixed at the first call:
    ``sdk_ns = device_s * 1e9 + offset``; later calls keep the device's own spacing."""

    offset_ns: int | None = field(default=None)

    def to_sdk(self, device_s: float, now: int | None = None) -> int:
        if self.offset_ns is None:
            self.offset_ns = (now if now is not None else now_ns()) - int(round(device_s * 1e9))
        return int(round(device_s * 1e9)) + self.offset_ns
