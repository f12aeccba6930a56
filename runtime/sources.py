"""Where frames and sound come from: one URI opens a file, a microphone, a camera, a network
stream or a generated AV-Digits scene, as a :class:`Source` that emits timestamped
:class:`~edge_sdk.runtime.frames.VideoFrame` / ``AudioBlock`` / ``Gap`` items.

    src = open_source("file:///clips/street.mp4?realtime=1", sample_rate=16000)
    src.start(queue.put)   # returns at once; a thread calls queue.put(item)
    ...
    src.stop()

Schemes: ``file``, ``wav``, ``mic``, ``cam``, ``v4l2``, ``csi``, ``http``, ``https``,
``rtsp``, ``synthetic``; ``usage()`` describes each with its options. Query parameters
become options (``file:///x.mp4?realtime=1&loop=1``); keyword arguments override them.
Video is RGB HxWx3 uint8 at its native size; audio is mono float32 at ``sample_rate``
(channels averaged, resampled once with a streaming soxr HQ resampler). No torch here.
"""

from __future__ import annotations

import difflib
import heapq
import logging
import math
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import cv2
import numpy as np

from edge_sdk.errors import ConfigError, DataError
from edge_sdk.media.audio import AudioTrack
from edge_sdk.media.image import YUV420, av_square
from edge_sdk.runtime.capture import CaptureSource, Source, csi_pipeline, has_gstreamer
from edge_sdk.runtime.clock import ClockMap, now_ns
from edge_sdk.runtime.microphone import MicSource
from edge_sdk.runtime.synthetic import SyntheticSource

__all__ = ["Source", "FileSource", "SyntheticSource", "MicSource", "CaptureSource", "open_source", "media_path", "usage", "SCHEMES"]

log = logging.getLogger(__name__)

_PACE = dict(realtime=False, loop=False)
_NET = dict(reconnect=True, stall_s=2.0)

# scheme -> (default options, help text)
SCHEMES: dict[str, tuple[dict, str]] = {
    "file": (
        dict(_PACE, audio=True, block_ms=10),
        "file:///abs/clip.mp4 or file://relative/clip.mp4 -- a video file (any "
        "container and codec PyAV reads), demuxed and decoded as a stream: RGB frames at native size, its audio "
        "mono at sample_rate, with the file's own timestamps from the moment start() was called. Options: "
        "realtime=1 paces output to the wall clock like a camera (default: as fast as the consumer takes it, "
        "nothing dropped); loop=1 starts again at the end, timestamps continuing; audio=0 ignores the sound; "
        "block_ms (audio block length, default 10). "
        "A file without sound gives kind 'video' (counters['no_audio'] = 1).",
    ),
    "wav": (
        dict(_PACE, block_ms=10),
        "wav:///abs/sound.wav -- the audio track of any file PyAV reads (wav, mp3, flac, ogg, a "
        "video's sound), mono at sample_rate. Options: realtime=1, loop=1, block_ms.",
    ),
    "mic": (
        dict(blocksize=0, channels=0, queue=256),
        "mic://default or mic://NAME (a name, part of one, or an index "
        "from python -m sounddevice; or a PulseAudio/PipeWire source name from pactl list sources short, "
        "e.g. mic://alsa_output.pci-0000_00_1f.3.analog-stereo.monitor) -- a microphone through sounddevice/PortAudio, downmixed and resampled "
        "from the device's own rate; pts from the ADC time. Options: blocksize (device frames per callback, 0 = "
        "PortAudio's choice), channels (0 = up to 2, averaged), queue (buffers held for a slow consumer; beyond "
        "it blocks are dropped and counted).",
    ),
    "cam": (
        dict(width=0, height=0, fps=0.0, stall_s=2.0),
        "cam://0 -- camera number N through OpenCV (V4L2 on Linux); pts = capture time. Options: width, height, fps (asked of the driver), stall_s.",
    ),
    "v4l2": (dict(width=0, height=0, fps=0.0, stall_s=2.0), "v4l2:///dev/video0 -- a V4L2 device by path. Options as cam://."),
    "csi": (
        dict(width=1280, height=720, fps=30, flip=0, stall_s=2.0),
        "csi://0 -- a Jetson CSI camera via the "
        "nvarguscamerasrc GStreamer pipeline (cv2.CAP_GSTREAMER). Needs an OpenCV built with GStreamer "
        "(JetPack's python3-opencv); the pip opencv-python-headless wheel has none and csi:// then raises "
        "ConfigError saying so. Options: width, height, fps, flip (nvvidconv flip-method).",
    ),
    "http": (
        dict(_NET),
        "http://host:port/path -- an MJPEG/HTTP camera or stream through OpenCV's FFmpeg backend. "
        "When it ends or stalls: Gap(kind='lost'), reconnects with backoff (0.25 s doubling to 4 s; counters "
        "reconnect_attempts, lost_s), Gap(kind='reconnect') once it is back. Options: reconnect=0 (end instead), "
        "stall_s (seconds without a frame, default 2). Other query parameters stay in the URL.",
    ),
    "https": (dict(_NET), "https://... -- as http://. Options: reconnect=0, stall_s."),
    "rtsp": (
        dict(_NET),
        "rtsp://user:pass@host:554/stream -- an RTSP camera through OpenCV's FFmpeg backend, "
        "reconnecting like http://. Options: reconnect=0, stall_s.",
    ),
    "synthetic": (
        dict(_PACE, fps=10.0, seconds=6.0, k=3, seed=0, size=96, block_ms=100, bank="auto", hold=2.0),
        "synthetic://av-digits?fps=10&seconds=6&k=3&seed=0 -- generated AV-Digits scenes, one every hold "
        "seconds (default 2): an S x S image (size, default 96) with k handwritten digits, shown at fps "
        "while one digit is spoken in its first second, then silence (so the 1 s window at every frame "
        "holds only this scene's speech; audio in block_ms blocks). VideoFrame.meta has the spoken digit's box "
        "(x0, y0, x1, y1), label and scene. Real FSDD + MNIST test data when ../shared/data has them "
        "(bank=auto|real|synthetic), else generated shapes and tones. Finite; realtime=1 paces it.",
    ),
}
_NETWORK = ("http", "https", "rtsp")


def usage(scheme: str | None = None) -> str:
    """Help text for one scheme, or for all of them (``scheme=None``)."""
    if scheme is None:
        return "\n\n".join(text for _, text in SCHEMES.values())
    if scheme not in SCHEMES:
        raise _unknown_scheme(f"{scheme}://", scheme)
    return SCHEMES[scheme][1]


def _unknown_scheme(uri: str, scheme: str) -> ConfigError:
    if not scheme:
        return ConfigError(
            f"source {uri!r} has no scheme",
            f"write file://{Path(uri).resolve()} for a file, or use one of: "
            f"{', '.join(f'{s}://' for s in SCHEMES)} (see edge_sdk.runtime.sources.usage())",
        )
    close = difflib.get_close_matches(scheme.lower(), SCHEMES, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]}://? " if close else ""
    return ConfigError(f"unknown source scheme {scheme!r} in {uri!r}", f"{hint}use one of: {', '.join(f'{s}://' for s in SCHEMES)}")


def _coerce(uri: str, key: str, value, default):
    if isinstance(default, bool):
        if isinstance(value, (bool, int)):
            return bool(value)
        v = str(value).strip().lower()
        if v in ("1", "true", "yes", "on", ""):
            return True
        if v in ("0", "false", "no", "off"):
            return False
    else:
        try:
            number = type(default)(value)
        except (TypeError, ValueError):
            pass
        else:
            if isinstance(number, str):
                return number
            if not math.isfinite(number):  # nan compares false with everything: it is no size, rate or time
                raise ConfigError(f"{uri}: option {key}={value!r} is not a finite number", f"pass {key}=0 or more (default {default!r})")
            if number >= 0:  # every numeric option is a size, a rate or a time (0: the device's or the default)
                return number
            raise ConfigError(f"{uri}: option {key}={value!r} is negative", f"pass {key}=0 or more (default {default!r})")
    raise ConfigError(
        f"{uri}: option {key}={value!r} is not a {type(default).__name__}", f"pass {key}={default!r} or another {type(default).__name__}"
    )


def media_path(uri: str) -> str | None:
    """The file a ``file://`` URI reads, without its options; None for any other source."""
    parts = urlsplit(uri)
    return unquote(parts.netloc + parts.path) if parts.scheme.lower() == "file" else None


def open_source(uri: str, *, sample_rate: int = 16000, **opts) -> Source:
    """Open the input named by ``uri`` (see :func:`usage`); nothing runs until ``start(emit)``."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES or "://" not in uri:
        raise _unknown_scheme(uri, scheme if "://" in uri else "")
    defaults = SCHEMES[scheme][0]
    query = parse_qsl(parts.query, keep_blank_values=True)
    if scheme in _NETWORK:  # the camera's own query parameters stay in its URL
        given = {k: v for k, v in query if k in defaults}
        rest = [(k, v) for k, v in query if k not in defaults]
        target = urlunsplit(parts._replace(query=urlencode(rest)))
    else:
        given, target = dict(query), None
    given.update(opts)
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(
            f"{uri}: unknown option(s) {', '.join(unknown)} for {scheme}://",
            f"{scheme}:// takes: {', '.join(f'{k} (default {v!r})' for k, v in defaults.items())}",
        )
    o = {k: _coerce(uri, k, given.get(k, d), d) for k, d in defaults.items()}
    name = unquote(parts.netloc + parts.path)
    if scheme in ("file", "wav"):
        return FileSource(uri, name, sample_rate, o, audio_only=scheme == "wav")
    if scheme == "mic":
        return MicSource(uri, name or "default", sample_rate, o)
    if scheme in _NETWORK:
        return CaptureSource(uri, target, cv2.CAP_FFMPEG, o, network=True)
    if scheme == "cam":
        if not name.isdigit():
            raise ConfigError(f"{uri}: camera number expected", "write cam://0 (or v4l2:///dev/video0 for a path)")
        return CaptureSource(uri, int(name), cv2.CAP_ANY, o)
    if scheme == "v4l2":
        return CaptureSource(uri, name, cv2.CAP_V4L2, o)
    if scheme == "csi":
        if not has_gstreamer():
            raise ConfigError(
                f"{uri}: this OpenCV build has no GStreamer support, which the Jetson CSI pipeline (nvarguscamerasrc) needs",
                "on the Jetson use JetPack's OpenCV (apt install "
                "python3-opencv) in a venv made with --system-site-packages and pip uninstall "
                "opencv-python-headless; or use v4l2:///dev/video0 if the sensor has a V4L2 driver",
            )
        pipeline = csi_pipeline(int(name or 0), o["width"], o["height"], o["fps"], o["flip"])
        return CaptureSource(uri, pipeline, cv2.CAP_GSTREAMER, o)
    return SyntheticSource(uri, name, sample_rate, o)


# -- files -------------------------------------------------------------------------------------
def _pyav(uri: str):
    try:
        import av
    except ImportError:
        raise ConfigError(f"{uri}: reading media files needs PyAV", "pip install 'edge_sdk[live]' (or: pip install av)") from None
    return av


def _why(e: Exception) -> str:
    return f"{e.__class__.__name__}: {getattr(e, 'strerror', None) or e}"


class _Yuv420:
    """A decoded 4:2:0 frame as FFmpeg gave it (see :class:`~.frames.VideoFrame`): nothing is
    converted at decode time; the model's input comes from the planes, the whole RGB frame only
    on demand (PyAV's conversion, the one every other frame gets)."""

    __slots__ = ("frame",)

    def __init__(self, frame):
        self.frame = frame

    @property
    def shape(self) -> tuple[int, int]:
        return self.frame.height, self.frame.width

    def rgb(self) -> np.ndarray:
        return self.frame.to_ndarray(format="rgb24")

    def cut(self, size) -> np.ndarray:
        return av_square(self.frame, size)


class FileSource(Source):
    """A media file decoded as a stream with PyAV, video and audio demuxed in one thread."""

    @property
    def live(self) -> bool:
        return bool(self.opts.get("realtime"))

    def __init__(self, uri: str, path: str, sample_rate: int, opts: dict, audio_only: bool = False):
        av = _pyav(uri)
        self.path, self.sample_rate = Path(path), sample_rate
        scheme = "wav" if audio_only else "file"
        if not self.path.is_file():
            what = "is a folder" if self.path.is_dir() else "does not exist"
            raise DataError(
                f"{uri}: {self.path} {what}",
                f"give the path of a media file: {scheme}:///abs/path or {scheme}://path/relative/to/the/working/folder ({Path.cwd()})",
            )
        try:
            with av.open(str(self.path)) as c:
                broken = [s.type for s in (*c.streams.video[:1], *c.streams.audio[:1]) if s.codec_context is None]
                video, audio = bool(c.streams.video) and not audio_only, bool(c.streams.audio)
                # sound only: a header-only WAV would play as silence
                empty = not (broken or video) and audio and next(c.decode(audio=0), None) is None
        except av.FFmpegError as e:
            raise DataError(
                f"{uri}: {self.path.name} could not be opened ({_why(e)})",
                "check that it plays in a "
                "media player; a truncated download must be fetched again, or re-encode it: "
                "ffmpeg -i in -c:v libx264 -c:a aac out.mp4",
            ) from None
        if broken:
            raise DataError(
                f"{uri}: {self.path.name}: the {' and '.join(broken)} codec cannot be set up",
                "the file is truncated or corrupt; fetch it again or re-encode it",
            )
        if audio_only and not audio:
            raise DataError(f"{uri}: {self.path.name} has no audio track", "use file:// for video, or a file with sound")
        if empty:
            raise DataError(
                f"{uri}: {self.path.name} holds no samples", "record or export the sound again; a file with only a header has nothing to play"
            )
        no_audio = not audio and not audio_only and opts.get("audio", True)
        audio = audio and opts.get("audio", True)
        if not (video or audio):
            raise DataError(
                f"{uri}: {self.path.name} has nothing to read (no video, audio ignored or absent)", "drop audio=0, or use a file with video or sound"
            )
        super().__init__(uri, "av" if video and audio else "video" if video else "audio", opts)
        self._video, self._audio = video, audio
        self._pending: list = []  # realtime schedule: (due_ns, order, emit function, args)
        self._seq_out = 0
        if no_audio:  # the pipeline warns when nothing else gives it sound
            self.counters["no_audio"] = 1
            log.info("%s: %s has no audio track; reading video only", uri, self.path.name)

    def _run(self) -> None:
        """Decode the file once, or with ``loop`` again and again: seeking back in the same
        container, so the decoder and its frame pool are made once (re-opening the file for
        each pass grew memory by a pool of frames, 43 MB at 720p, while results still held
        frames of the last pass)."""
        av = _pyav(self.uri)
        clock = ClockMap()
        clock.to_sdk(0.0)  # file time 0 = the SDK clock now
        offset = 0.0
        with av.open(str(self.path)) as c:
            if self._video:
                c.streams.video[0].thread_type = "AUTO"  # FFmpeg's own decoding threads
            while True:
                span = self._pass(av, c, clock, offset)
                if span is None:  # stopped
                    return
                if not self.opts.get("loop") or span <= 0:
                    break
                offset += span
                c.seek(0)
        self.done = True

    def _pass(self, av, c, clock: ClockMap, offset: float) -> float | None:
        """Decode the open container from where it stands to its end; returns the span it
        covered in seconds (None when stopped)."""
        first = last = None
        vs = c.streams.video[0] if self._video else None
        aus = c.streams.audio[0] if self._audio else None
        fps = float(vs.average_rate or 25) if vs is not None else 25.0
        track, prev_t = None, None
        packets = c.demux(*[s for s in (vs, aus) if s is not None])
        while not self.stopped:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.FFmpegError as e:  # the demuxer cannot go on: what came so far is the file
                self._decode_error(e, clock, offset, prev_t)
                break
            try:
                frames = packet.decode()
            except av.FFmpegError as e:  # one bad packet: report it, keep decoding
                self._decode_error(e, clock, offset, prev_t)
                continue
            for fr in frames:
                if packet.stream is vs:
                    t = fr.time if fr.time is not None else (0.0 if prev_t is None else prev_t + 1 / fps)
                    prev_t = t
                    pts = clock.to_sdk(offset + t)
                    if not self._out(pts, pts, self._picture, fr, pts):
                        return None
                    first = t if first is None else min(first, t)
                    last = t + 1 / fps if last is None else max(last, t + 1 / fps)
                    continue
                if track is None:
                    track = AudioTrack(av, fr, aus, self.sample_rate)
                    first = min(first, track.start) if first is not None else track.start
                if not self._audio_out(track, track.push(fr), clock, offset):
                    return None
        if self.stopped:
            return None
        if track is not None:
            if not self._audio_out(track, track.push(None), clock, offset):
                return None
            last = track.time_out() if last is None else max(last, track.time_out())
        if not self._drain(None):
            return None
        self._check_length(c, last)
        return 0.0 if first is None else last - first

    def _check_length(self, c, last: float | None) -> None:
        """Say (once, as a ``truncated`` gap) when decoding ended well before the length the
        file's header declares: a cut-off download or copy, whose missing part would otherwise
        just be absent from the results."""
        declared = c.duration / 1e6 if c.duration else None
        # Only where every track was read (the container's length is its longest track's) and
        # there is video: a sound-only file's length may be FFmpeg's estimate from its bitrate.
        every_track = self._video and (self._audio or not c.streams.audio)
        if declared is None or not every_track or self.counters.get("truncated_s"):
            return
        missing = (c.start_time or 0) / 1e6 + declared - (last or 0.0)
        if missing > max(1.0, 0.05 * declared):
            self.counters["truncated_s"] = round(missing, 2)  # a gap the consumer reports (the pipeline logs it)
            self.gap("truncated", missing, f"the file ends {missing:.1f} s before the {declared:.1f} s its header declares: truncated or damaged")

    def _picture(self, fr, pts_ns: int) -> bool:
        if fr.format.name in YUV420:
            return self.frame(None, pts_ns, picture=_Yuv420(fr))
        return self.frame(fr.to_ndarray(format="rgb24"), pts_ns)

    _LOOKAHEAD_NS = 300_000_000  # media decoded ahead of the earliest pending item before waiting on it

    def _out(self, ready_ns: int, media_ns: int, fn, *args) -> bool:
        """Emit now (as fast as possible), or in realtime mode schedule for ``ready_ns``: items go
        out in the order of their due time, not the file's interleaving (a muxer may put audio
        a few hundred ms ahead of the video it plays with; waiting in file order would hold the
        frames back by that much). False once stopped."""
        if not self.opts.get("realtime"):
            return fn(*args)
        self._seq_out += 1
        heapq.heappush(self._pending, (ready_ns, self._seq_out, fn, args))
        return self._drain(media_ns)

    def _drain(self, decoded_ns: int | None) -> bool:
        """Emit the scheduled items that are due; wait for the earliest one once enough media
        is decoded past it (``decoded_ns`` None: the file ended, emit everything in time)."""
        while self._pending:
            ready = self._pending[0][0]
            if ready > now_ns():
                if decoded_ns is not None and decoded_ns - ready < self._LOOKAHEAD_NS:
                    return not self.stopped
                if self.wait_until(ready):
                    return False
            _, _, fn, args = heapq.heappop(self._pending)
            if not fn(*args):
                return False
        return not self.stopped

    def _audio_out(self, track: AudioTrack, y: np.ndarray, clock: ClockMap, offset: float) -> bool:
        """Emit resampled audio in blocks of at most ``block_ms`` (in realtime mode each paced to
        its last sample, as a microphone delivers them: a 64 ms codec frame released whole would
        hold back the frames it covers); False once stopped."""
        if not y.size:
            return not self.stopped
        step = max(1, int(self.sample_rate * self.opts.get("block_ms", 10) / 1000))
        for i in range(0, y.size, step):
            part = y[i : i + step]
            pts = clock.to_sdk(offset + track.time_out())
            track.n_out += part.size
            end = pts + int(part.size / self.sample_rate * 1e9)
            if not self._out(end, end, self.block, part, pts, self.sample_rate):
                return False
        return True

    def _decode_error(self, e: Exception, clock: ClockMap, offset: float, t: float | None) -> None:
        self.counters["decode_errors"] += 1
        if self.counters["decode_errors"] <= 3:
            log.warning("%s: decode error (%s)", self.uri, _why(e))
        self.gap("decode", message=_why(e), pts_ns=None if t is None else clock.to_sdk(offset + t))
