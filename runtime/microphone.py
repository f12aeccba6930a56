"""A microphone as a :class:`~.capture.Source`: sounddevice (PortAudio) input, downmixed to
mono and resampled with a streaming soxr resampler, each block stamped with the ADC time
mapped onto the SDK clock (``mic://`` in :mod:`.sources`). ``mic://NAME`` takes a PortAudio
device's name or index, or a PulseAudio/PipeWire source name as ``pactl list sources short``
prints it (``v.monitor``), opened through PortAudio's ``pulse`` device with ``PULSE_SOURCE``
set for that stream alone.

The PortAudio callback never calls ``emit`` (which may block): it copies each buffer into a
bounded queue and a feeder thread emits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import subprocess
import threading

import numpy as np
import soxr

from edge_sdk.errors import ConfigError, DataError
from edge_sdk.runtime.capture import Source
from edge_sdk.runtime.clock import ClockMap, now_ns

__all__ = ["MicSource", "pulse_sources"]

log = logging.getLogger(__name__)


def _sounddevice(uri: str):
    try:
        import sounddevice
    except (ImportError, OSError) as e:
        raise ConfigError(
            f"{uri} needs sounddevice and the PortAudio library ({e})", "pip install 'edge_sdk[live]' and apt-get install libportaudio2"
        ) from None
    return sounddevice


def _find_input(sd, name: str, uri: str) -> dict:
    devices = list(sd.query_devices())
    inputs = [d for d in devices if d["max_input_channels"] > 0]
    if not inputs:
        raise DataError(
            f"{uri}: PortAudio sees no audio input device",
            "plug in a microphone; on a server or in a container run PulseAudio "
            "(pulseaudio -D, with libasound2-plugins installed) before starting, "
            "then check with: python -m sounddevice",
        )
    if name in ("", "default"):
        idx = sd.default.device[0]
        return devices[idx] if isinstance(idx, int) and 0 <= idx < len(devices) and devices[idx] in inputs else inputs[0]
    if name.isdigit():
        found = [d for d in inputs if d["index"] == int(name)]
    else:
        found = [d for d in inputs if d["name"].lower() == name.lower()] or [d for d in inputs if name.lower() in d["name"].lower()]
    if not found:
        sources = pulse_sources()
        if name in sources:  # a PulseAudio/PipeWire source (pactl list sources short): through PortAudio's pulse device
            return _through_pulse(inputs, name, uri)
        listing = "; ".join(f"{d['index']}: {d['name']}" for d in inputs)
        pulse = f"; or a PulseAudio/PipeWire source: {', '.join(sources)}" if sources else ""
        raise DataError(f"{uri}: no audio input device named {name!r}", f"use mic://default, or a name or index of an input device: {listing}{pulse}")
    return found[0]


def pulse_sources() -> list[str]:
    """The PulseAudio/PipeWire source names, as ``pactl list sources short`` prints them (a
    monitor of an output is ``NAME.monitor``); [] without pactl or a sound server."""
    if shutil.which("pactl") is None:
        return []
    try:
        out = subprocess.run(["pactl", "list", "sources", "short"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split("\t")[1] for line in out.stdout.splitlines() if line.count("\t") >= 1] if out.returncode == 0 else []


def _through_pulse(inputs: list[dict], source: str, uri: str) -> dict:
    """PortAudio's ``pulse`` (else ``default``) ALSA device, to be opened with ``PULSE_SOURCE=source``."""
    for want in ("pulse", "default"):
        found = [d for d in inputs if d["name"].lower() == want]
        if found:
            return {**found[0], "pulse_source": source}
    raise DataError(
        f"{uri}: {source!r} is a PulseAudio/PipeWire source, but PortAudio has no 'pulse' or 'default' input device to reach it",
        "install libasound2-plugins (ALSA's pulse plugin), then check with: python -m sounddevice",
    )


_PULSE_ENV = threading.Lock()  # the environment is the process's: one stream opens with its source at a time


@contextlib.contextmanager
def _pulse_source(source: str | None):
    """``PULSE_SOURCE`` set to ``source`` while a stream opens (the sound server's client library
    reads it when the ALSA pulse plugin connects), then restored."""
    if source is None:
        yield
        return
    with _PULSE_ENV:
        before = os.environ.get("PULSE_SOURCE")
        os.environ["PULSE_SOURCE"] = source
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("PULSE_SOURCE", None)
            else:
                os.environ["PULSE_SOURCE"] = before


class MicSource(Source):
    """A microphone through a sounddevice ``InputStream``: downmixed to mono and resampled
    from the device's own rate with a streaming soxr resampler. Each block's ``pts_ns``
    comes from PortAudio's ``inputBufferAdcTime`` mapped once onto the SDK clock (arrival
    time where the backend reports 0)."""

    def __init__(self, uri: str, name: str, sample_rate: int, opts: dict):
        super().__init__(uri, "audio", opts)
        self._sd = _sounddevice(uri)
        self.device = _find_input(self._sd, name, uri)
        self.device_rate = int(self.device["default_samplerate"])
        self.channels = int(opts.get("channels") or min(2, self.device["max_input_channels"]))
        self.sample_rate = sample_rate
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(opts.get("queue", 256))))
        self._stream = None
        self._clock = ClockMap()
        self._callback_error: BaseException | None = None
        self._overflowed = False

    def _begin(self) -> None:
        try:
            with _pulse_source(self.device.get("pulse_source")):
                self._stream = self._sd.InputStream(
                    samplerate=self.device_rate,
                    blocksize=int(self.opts.get("blocksize", 0)),
                    device=self.device["index"],
                    channels=self.channels,
                    dtype="float32",
                    callback=self._callback,
                )
                self._stream.start()
        except self._sd.PortAudioError as e:
            self._close()
            raise DataError(
                f"{self.uri}: cannot open input device {self.device['name']!r} ({e})",
                "check that no other program holds it; try another blocksize or mic://default",
            ) from None
        self._spawn(self._feed, "mic feeder")

    def _callback(self, indata, frames, time_info, status) -> None:
        # PortAudio's real-time thread: copy and count only (no emit, no logging, no waiting).
        try:
            if status.input_overflow:
                self.counters["overflows"] += 1
                self._overflowed = True
            try:
                self._queue.put_nowait((indata.copy(), time_info.inputBufferAdcTime, time_info.currentTime, now_ns(), self._overflowed))
                self._overflowed = False
            except queue.Full:
                self.counters["dropped"] += 1
                self._overflowed = True
        except Exception as e:
            self._callback_error = e
            raise self._sd.CallbackAbort from e

    DEAD_S = 2.0  # this long of exact zeros from a microphone is reported (a real one always hisses)
    SAY_EVERY_S = 60.0  # at most one report a minute (a noise-gated microphone gives zeros at every pause)

    def _watch_silence(self, data: np.ndarray, t_ns: int) -> None:
        """Report when the device delivers exact digital silence for :attr:`DEAD_S` (muted, or
        unplugged: PulseAudio and PipeWire move a lost device's stream to a silent source, so
        the stream never stops) as a ``silent_device`` gap, which the consumer logs; every
        such stretch is counted (``counters["silent_device"]``), reported at most once a minute."""
        if data.any():
            if self._zeros_s >= self.DEAD_S:
                log.info("%s: sound again after %.1f s of digital silence", self.uri, self._zeros_s)
            self._zeros_s = 0.0
            return
        before, self._zeros_s = self._zeros_s, self._zeros_s + len(data) / self.device_rate
        if before < self.DEAD_S <= self._zeros_s:
            self.counters["silent_device"] = self.counters.get("silent_device", 0) + 1
            if self._said_silent is None or t_ns - self._said_silent >= self.SAY_EVERY_S * 1e9:
                self._said_silent = t_ns
                self.gap(
                    "silent_device",
                    self._zeros_s,
                    "the microphone delivers exact zeros: muted, or unplugged (a sound server moves a lost device's stream to a silent source)",
                    pts_ns=t_ns,
                )

    def _feed(self) -> None:
        rs, n_in, n_out, t_chunk, i_chunk = None, 0, 0, 0, 0
        step_ns = 1e9 / self.device_rate
        self._zeros_s, self._said_silent = 0.0, None
        while not self.stopped:
            if self._callback_error is not None:
                raise DataError(
                    f"{self.uri}: the audio callback failed ({self._callback_error!r})", "this is a bug or a device fault; reopen the source"
                )
            try:
                data, adc, current, arrival, lost = self._queue.get(timeout=0.1)
            except queue.Empty:
                stream = self._stream
                if stream is not None and not stream.active and not self.stopped and self._callback_error is None:
                    raise DataError(
                        f"{self.uri}: the input stream of {self.device['name']!r} stopped",
                        "the device was unplugged or taken by another program; reopen the source",
                    ) from None
                continue
            if lost and rs is not None:  # samples are missing: finish the old run, start a new one
                tail = rs.resample_chunk(np.zeros(0, np.float32), last=True)
                self.block(tail, t_chunk + (n_out * self.device_rate / self.sample_rate - i_chunk) * step_ns, self.sample_rate)
                self.gap("overflow", message="audio input overflowed or the feeder fell behind; samples were lost")
                rs = None
            if rs is None:
                rs, n_in, n_out = soxr.ResampleStream(self.device_rate, self.sample_rate, 1, dtype="float32", quality="HQ"), 0, 0
            if adc > 0:
                self._clock.to_sdk(current, now=arrival)  # fixes the device->SDK offset once
                t_chunk = self._clock.to_sdk(adc)
            else:
                t_chunk = arrival - int(len(data) * step_ns)
            self._watch_silence(data, t_chunk)
            i_chunk = n_in
            n_in += len(data)
            y = rs.resample_chunk(np.ascontiguousarray(data.mean(axis=1), np.float32))
            if y.size:
                self.block(y, t_chunk + (n_out * self.device_rate / self.sample_rate - i_chunk) * step_ns, self.sample_rate)
                n_out += y.size

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.abort()
            stream.close()
