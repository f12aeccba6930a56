"""Reading the shards ``edge-sdk shard`` writes (:mod:`.shard_writer`): where they are, their
index, their clips, and the training windows cut from a clip.

``--shards`` takes what WebDataset takes: a folder (its ``*.tar``), a glob
(``data/shard-*.tar``), a brace pattern (``data/shard-{000000..000099}.tar``), or a URL WebDataset
opens (``pipe:aws s3 cp s3://bucket/shard-{000000..000099}.tar -``, ``https://host/shard-{...}.tar``).
The index (``index.json``) is looked up beside the shards (the folder, or the URL's parent);
a ``pipe:`` command needs it named (``index=``). A brace pattern may select some of the
indexed shards; a shard the index does not list is refused.

Every shard is read as a stream (WebDataset's tar iterators over ``webdataset.gopen``); one
read from its start to its end is checked against the index's size and sha256, so a damaged
or stale copy is refused by name instead of training on it. A clip's window for frame ``k``
(:func:`cut_window`) is the frame (or the stack of ``image.frames`` frames ``1 / frame_rate``
apart ending at it) and the audio window that ENDS at the frame's time, as everywhere else
in the SDK (:func:`~edge_sdk.media.audio.audio_window`).
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import wave
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from edge_sdk.data.shard_writer import FORMAT, INDEX_NAME
from edge_sdk.errors import DataError, EdgeSDKError, ModelFileError
from edge_sdk.jsonfile import parse_json, read_json
from edge_sdk.media.audio import audio_window
from edge_sdk.media.image import center_crop_resize

__all__ = ["ShardSet", "ClipData", "open_shards", "ShardReader", "cut_window", "decode_jpeg", "is_url"]

MAX_INDEX_BYTES = 1 << 30  # about 5 M clips
RESHARD = "re-run edge-sdk shard for this model (README: Scale-out pretraining)"


def _webdataset():
    try:
        import webdataset
    except ImportError:
        raise EdgeSDKError("reading shards needs the webdataset package", "pip install 'edge_sdk[train]' (or: pip install webdataset)") from None
    return webdataset


@dataclass(frozen=True, eq=False)
class ShardSet:
    """The shards one ``--shards`` names: their URLs in order, each one's index row, and the index."""

    spec: str
    urls: tuple[str, ...]
    rows: tuple[dict, ...]
    index: dict = field(repr=False)

    @property
    def names(self) -> list[str]:
        return [r["name"] for r in self.rows]

    def frames(self, shard: int) -> list[int]:
        """Frames (= training windows) of each clip of shard ``shard``."""
        return [c["frames"] for c in self.rows[shard]["clips"]]

    @property
    def windows(self) -> int:
        return sum(c["frames"] for r in self.rows for c in r["clips"])

    @property
    def clips(self) -> int:
        return sum(len(r["clips"]) for r in self.rows)

    def digest(self) -> str:
        """What a resumed run must read again: these shards, in this order, with these contents."""
        return hashlib.sha256(json.dumps([(r["name"], r["sha256"]) for r in self.rows]).encode()).hexdigest()[:16]

    def check_contract(self, contract) -> None:
        """Refuse shards cut for another sample rate or window than ``contract``'s (frames of another size are resized)."""
        c, a = self.index["contract"], contract.audio
        if c["sample_rate"] != a.sample_rate:
            raise DataError(
                f"{self.spec}: the shards hold audio at {c['sample_rate']} Hz, the model takes {a.sample_rate} Hz",
                f"{RESHARD}: edge-sdk shard --spec/--contract of the model you train",
            )


def is_url(spec: str) -> bool:
    """Whether ``spec`` is a URL WebDataset opens (``pipe:``, ``http(s)://``, ``file://`` ...) rather than a local path."""
    return spec.startswith("pipe:") or "://" in spec


def _local_urls(spec: str) -> tuple[list[str], Path]:
    p = Path(spec)
    if p.is_dir():
        urls = sorted(str(x) for x in p.glob("*.tar"))
        if not urls:
            raise DataError(f"--shards {spec}: the folder holds no .tar shards", "give the --out folder of edge-sdk shard")
        return urls, p / INDEX_NAME
    if any(ch in spec for ch in "*?["):
        urls = sorted(glob.glob(spec))
    elif "{" in spec:
        from braceexpand import braceexpand

        urls = list(braceexpand(spec))
    else:
        urls = [spec]
    if not urls:
        raise DataError(f"--shards {spec} matches no file", "check the pattern (a folder, shard-*.tar or shard-{000000..000009}.tar)")
    missing = [u for u in urls if not Path(u).is_file()]
    if missing:
        raise DataError(f"--shards {spec}: {len(missing)} shard(s) do not exist, e.g. {missing[0]}", "check the path and the brace range")
    parents = {str(Path(u).parent) for u in urls}
    if len(parents) > 1:
        raise DataError(f"--shards {spec} spans {len(parents)} folders", "keep a shard set in one folder with its index.json, or name the index")
    return urls, Path(parents.pop()) / INDEX_NAME


def _read_index(where, what: str) -> dict:
    fix = f"give the index.json edge-sdk shard wrote beside the shards ({what})"
    if isinstance(where, Path) or not is_url(str(where)):
        if not Path(where).is_file():
            raise DataError(f"no shard index at {where}", fix)
        return read_json(where, "shard index", max_bytes=MAX_INDEX_BYTES, fix=fix)
    try:
        with _webdataset().gopen(str(where)) as f:
            data = f.read(MAX_INDEX_BYTES + 1)
    except Exception as e:  # noqa: BLE001 - curl, a pipe's command, a network: every failure is one line
        raise DataError(f"cannot read the shard index {where} ({type(e).__name__}: {e})", fix) from None
    return parse_json(data, where, "shard index", fix=fix)


def open_shards(spec: str, index: str | None = None) -> ShardSet:
    """The shards ``spec`` names (see the module's docstring) with their index rows; ``index``: the
    ``index.json`` where it is not beside them (always for ``pipe:``)."""
    if not spec:
        raise DataError("--shards is empty", "give a folder of shards, a glob, a brace pattern or a URL")
    if is_url(spec):
        from braceexpand import braceexpand

        urls = list(braceexpand(spec))
        if index is None and spec.startswith("pipe:"):
            raise DataError(f"--shards {spec}: a pipe: command has no folder to find index.json in", "name it with --shard-index PATH_OR_URL")
        where = index or urlparse(urls[0])._replace(path=str(Path(urlparse(urls[0]).path).parent / INDEX_NAME)).geturl()
    else:
        urls, where = _local_urls(spec)
        where = Path(index) if index and not is_url(index) else (index or where)
    try:
        idx = _read_index(where, spec)
    except ModelFileError as e:
        raise DataError(e.problem, e.fix) from None
    if not (isinstance(idx, dict) and idx.get("format") == FORMAT and isinstance(idx.get("shards"), list)):
        raise DataError(f"{where} is not an edge_sdk shard index ({FORMAT})", RESHARD)
    by_name = {r["name"]: r for r in idx["shards"]}
    names = [urlparse(u).path.rsplit("/", 1)[-1] if is_url(u) else Path(u).name for u in urls]
    if spec.startswith("pipe:"):  # the shard's name is the last word of the command that ends in .tar
        names = [next((w for w in reversed(u.split()) if w.endswith(".tar")), u).rsplit("/", 1)[-1] for u in urls]
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise DataError(
            f"--shards {spec}: {unknown[0]} is not in {where} ({len(unknown)} unlisted)", "shard and index must come from one edge-sdk shard run"
        )
    if len(set(names)) != len(names):
        raise DataError(f"--shards {spec} names a shard twice", "give each shard once")
    return ShardSet(spec, tuple(urls), tuple(by_name[n] for n in names), idx)


@dataclass
class ClipData:
    """One clip read from a shard: its metadata, its audio (float32 mono), its JPEG frames."""

    key: str
    meta: dict
    audio: np.ndarray
    jpegs: list[bytes]


class _Hashing:
    """A read-only stream that hashes and counts what is read through it."""

    def __init__(self, raw):
        self.raw, self.sha, self.n = raw, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha.update(data)
        self.n += len(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

    def close(self) -> None:
        self.raw.close()


class ShardReader:
    """Clips of one shard, in order, from one streaming read; ``verify()`` after the last clip
    checks the bytes read against the index (size and sha256)."""

    def __init__(self, shards: ShardSet, i: int):
        wds = _webdataset()
        self.url, self.row = shards.urls[i], shards.rows[i]
        try:
            self.stream = _Hashing(wds.gopen(self.url))
        except Exception as e:  # noqa: BLE001 - a missing file, a failing command or URL: one line naming it
            raise DataError(f"cannot open shard {self.url} ({type(e).__name__}: {e})", "check that it is readable from this machine") from None
        files = wds.tariterators.tar_file_iterator(self.stream)
        self.samples = wds.tariterators.group_by_keys({**f, "__url__": self.url} for f in files)
        self.next_clip = 0

    def read(self) -> ClipData:
        """The next clip of the shard."""
        try:
            sample = next(self.samples)
        except StopIteration:
            raise DataError(f"shard {self.url} ends after {self.next_clip} clips, its index says {len(self.row['clips'])}", RESHARD) from None
        except Exception as e:  # noqa: BLE001 - tarfile's and the stream's errors: the shard is damaged
            raise DataError(f"shard {self.url} is damaged ({type(e).__name__}: {e})", f"re-copy it, or {RESHARD}") from None
        want = self.row["clips"][self.next_clip]["key"]
        self.next_clip += 1
        return _parse(sample, want, self.url)

    def skip(self) -> None:
        """Pass over the next clip without decoding it."""
        try:
            next(self.samples)
        except Exception as e:  # noqa: BLE001 - StopIteration included: the shard is shorter than its index
            raise DataError(f"shard {self.url} is damaged or short ({type(e).__name__}: {e})", f"re-copy it, or {RESHARD}") from None
        self.next_clip += 1

    def verify(self) -> None:
        """Read the shard to its end and compare it with the index (call after its last clip)."""
        for _ in self.samples:
            raise DataError(f"shard {self.url} holds more clips than its index lists", RESHARD)
        self.stream.drain()
        if self.stream.n != self.row["bytes"] or self.stream.sha.hexdigest() != self.row["sha256"]:
            raise DataError(
                f"shard {self.url} does not match its index ({self.stream.n} bytes read, {self.row['bytes']} indexed; sha256 differs)",
                f"re-copy the shard, or {RESHARD}",
            )

    def close(self) -> None:
        self.stream.close()


def _parse(sample: dict, want: str, url: str) -> ClipData:
    key = sample.get("__key__", "?")
    bad = DataError(f"shard {url}: clip {key} is not the clip its index lists next ({want}) or lacks its json/wav", RESHARD)
    if key != want or "json" not in sample or "wav" not in sample:
        raise bad
    meta = json.loads(sample["json"])
    jpegs = [sample.get(f"{k:05d}.jpg") for k in range(meta["frames"])]
    if any(j is None for j in jpegs):
        raise DataError(f"shard {url}: clip {key} lacks some of its {meta['frames']} frames", RESHARD)
    with wave.open(io.BytesIO(sample["wav"]), "rb") as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    return ClipData(key, meta, pcm.astype(np.float32) / 32767.0, jpegs)


def decode_jpeg(data: bytes, height: int, width: int) -> np.ndarray:
    """A stored frame as RGB uint8 ``height`` x ``width`` (centre-cropped and resized where the shards hold another size)."""
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError("a frame in the shards is not a readable JPEG", RESHARD)
    rgb = bgr[:, :, ::-1]
    return rgb if rgb.shape[:2] == (height, width) else center_crop_resize(np.ascontiguousarray(rgb), (height, width))


def cut_window(clip: ClipData, k: int, contract, uint8: bool = False) -> dict:
    """Training window ``k`` of ``clip``: ``image`` float32 (``uint8``: uint8) [3, H, W] RGB 0..255 (or [T, 3, H, W]
    for a contract with ``image.frames`` T > 1: frames ``1 / image.frame_rate`` apart, the last one
    frame ``k``'s, the clip's first frame standing in before its start), ``wave`` float32 the
    ``audio.num_samples`` that end at frame ``k``'s time, ``pts_s``, ``key``."""
    m, img, aud = clip.meta, contract.image, contract.audio
    t = m["t0"] + k / m["fps"]
    frames = getattr(img, "frames", 1)
    if frames == 1:
        picks = [k]
    else:
        rate = img.frame_rate
        picks = [min(k, max(0, int(round((t - (frames - 1 - i) / rate - m["t0"]) * m["fps"])))) for i in range(frames)]
    stack = np.stack([decode_jpeg(clip.jpegs[p], img.height, img.width).transpose(2, 0, 1) for p in picks])
    stack = stack if uint8 else stack.astype(np.float32)
    wave_ = audio_window(clip.audio, m["audio_start"], t, aud.sample_rate, aud.num_samples)
    return {"image": stack[0] if frames == 1 else stack, "wave": wave_, "pts_s": t, "key": clip.key}
