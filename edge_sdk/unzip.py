"""Unpacking a zip someone handed us, bounded: the size of what it unpacks to (in all and per
member) and how far each member and the whole zip expand (a deflate bomb expands about 1000
times, a model file about 1.1) are checked on the sizes the zip declares before anything is
written, and again on the bytes really inflated while they stream to disk; free space is
checked first, and a disk that fills anyway ends in one error line. Members go into a
temporary folder beside the target, which replaces the target only once complete: nothing
half-unpacked is ever left behind. :func:`unpack_lock` keeps two processes from unpacking
into one folder at once. The bundle rules (which members a bundle may hold) are
:func:`edge_sdk.bundle.unpack_zip`'s. Torch-free.

Limits, each a keyword argument of :func:`edge_sdk.bundle.unpack_zip` or an environment
variable (``EDGE_SDK_MAX_UNPACK_MB``, ``EDGE_SDK_MAX_MEMBER_MB``, ``EDGE_SDK_MAX_RATIO``).
"""

from __future__ import annotations

import errno
import glob
import math
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edge_sdk.errors import ConfigError, ModelFileError
from edge_sdk.outputs import FileLock, os_error_cause, path_error, writing

__all__ = ["ZipLimits", "check_sizes", "extract_members", "unpack_lock", "replace_folder", "MAX_MEMBERS"]

MB = 1 << 20
MAX_MEMBERS = 10_000  # a bundle holds a few dozen files
_SMALL = MB  # members (and zips) smaller than this unpacked are not held to the ratio
_CHUNK = MB
_SPARE = 16 * MB  # free space kept beyond what the zip needs
_ENV = {"max_unpack_mb": "EDGE_SDK_MAX_UNPACK_MB", "max_member_mb": "EDGE_SDK_MAX_MEMBER_MB", "max_ratio": "EDGE_SDK_MAX_RATIO"}


@dataclass(frozen=True)
class ZipLimits:
    """How much a zip may unpack to: ``max_unpack_mb`` in all, ``max_member_mb`` per member, and
    at most ``max_ratio`` times its compressed size (per member above 1 MB, and for the zip as a
    whole). The defaults fit bundles of models up to a few GB (the shipped demo bundle unpacks to
    6.5 MB from a 5.8 MB zip: ratio 1.1)."""

    max_unpack_mb: float = 8192.0
    max_member_mb: float = 4096.0
    max_ratio: float = 100.0

    @classmethod
    def resolve(cls, max_unpack_mb: float | None = None, max_member_mb: float | None = None, max_ratio: float | None = None) -> ZipLimits:
        """The limits: keyword arguments first, then the environment variables, then the defaults."""
        given = {"max_unpack_mb": max_unpack_mb, "max_member_mb": max_member_mb, "max_ratio": max_ratio}
        values = {}
        for key, value in given.items():
            where = key
            if value is None and os.environ.get(_ENV[key], "").strip():
                value, where = os.environ[_ENV[key]], _ENV[key]
            if value is None:
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if not (math.isfinite(number) and number > 0):
                raise ConfigError(
                    f"{where}={value!r} is not a number > 0", f"set {where} to a size in MB (ratio: a factor), e.g. {getattr(cls, key):g}"
                )
            values[key] = number
        return cls(**values)


def check_sizes(source: Path, infos: list[zipfile.ZipInfo], limits: ZipLimits, zip_bytes: int) -> int:
    """Refuse, on the sizes the zip declares, members or a total over the limits; the total."""
    if len(infos) > MAX_MEMBERS:
        raise ModelFileError(f"{source} holds {len(infos)} members, more than a bundle has (limit {MAX_MEMBERS})", _DAMAGED)
    total = 0
    for info in infos:
        _check_member(source, info.filename, info.file_size, info.compress_size, limits)
        total += info.file_size
    _check_total(source, total, zip_bytes, limits)
    return total


def _check_member(source: Path, name: str, size: int, packed: int, limits: ZipLimits) -> None:
    if size > limits.max_member_mb * MB:
        raise ModelFileError(
            f"{source}: member {name!r} unpacks to more than {limits.max_member_mb:g} MB (EDGE_SDK_MAX_MEMBER_MB)",
            f"{_DAMAGED}, or raise the limit if it is a real model file",
        )
    if size > _SMALL and size > limits.max_ratio * max(packed, 1):
        raise ModelFileError(f"{source}: member {name!r} expands more than {limits.max_ratio:g} times (a zip bomb; EDGE_SDK_MAX_RATIO)", _DAMAGED)


def _check_total(source: Path, total: int, zip_bytes: int, limits: ZipLimits) -> None:
    if total > limits.max_unpack_mb * MB:
        raise ModelFileError(
            f"{source} unpacks to more than {limits.max_unpack_mb:g} MB (EDGE_SDK_MAX_UNPACK_MB)",
            f"{_DAMAGED}, or raise the limit if the bundle is really that large",
        )
    if total > _SMALL and total > limits.max_ratio * max(zip_bytes, 1):
        raise ModelFileError(f"{source} expands more than {limits.max_ratio:g} times its size (a zip bomb; EDGE_SDK_MAX_RATIO)", _DAMAGED)


_DAMAGED = "the zip is malicious or damaged: do not use it; re-export the bundle (edge-sdk export --zip)"


def extract_members(source: Path, z: zipfile.ZipFile, members: list[tuple[zipfile.ZipInfo, str]], dest: Path, limits: ZipLimits, need: int) -> None:
    """Stream ``members`` (each a ZipInfo and the path it takes under ``dest``) into a temporary
    folder beside ``dest``, counting the bytes really inflated against ``limits``, then put the
    folder in place of ``dest``. Free space is checked first (``need`` bytes); a full disk, or a
    limit crossed, leaves nothing behind."""
    parent = dest.parent
    _check_space(source, parent, need)
    tmp = parent / f"{dest.name}.{os.getpid()}.partial"
    zip_bytes = source.stat().st_size
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        total = 0
        for info, rel in members:
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            with z.open(info) as src, open(target, "wb") as out:
                for chunk in iter(lambda: src.read(_CHUNK), b""):
                    written += len(chunk)
                    total += len(chunk)
                    _check_member(source, info.filename, written, info.compress_size, limits)
                    _check_total(source, total, zip_bytes, limits)
                    out.write(chunk)
        replace_folder(tmp, dest)
    except OSError as e:
        err = path_error(e, parent)
        if err is None:
            raise
        fix = _space_fix(parent) if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else f"{err.fix}; or set EDGE_SDK_CACHE to another folder"
        raise ModelFileError(f"cannot unpack {source} into {parent}: {os_error_cause(e)}", fix) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _space_fix(parent: Path) -> str:
    return f"free space in {parent} (df -h {parent}), or set EDGE_SDK_CACHE to a folder on a larger disk"


def _check_space(source: Path, parent: Path, need: int) -> None:
    try:
        free = shutil.disk_usage(parent).free
    except OSError:
        return
    if need + _SPARE > free:
        raise ModelFileError(
            f"cannot unpack {source} into {parent}: it needs {need / MB:.0f} MB and {free / MB:.0f} MB are free (no space left on device)",
            _space_fix(parent),
        )


def replace_folder(new: Path, dest: Path) -> None:
    """Put folder ``new`` in place of ``dest`` (an earlier, damaged copy is moved aside first,
    then removed): readers see the old folder or the new one, never a mix."""
    old = dest.with_name(f"{dest.name}.{os.getpid()}.old")
    if dest.exists():
        shutil.rmtree(old, ignore_errors=True)
        dest.rename(old)
    try:
        new.rename(dest)
    finally:
        shutil.rmtree(old, ignore_errors=True)


def unpack_lock(dest: Path, wait_s: float = 300.0) -> FileLock:
    """A lock for unpacking into ``dest`` (a ``.NAME.lock`` file beside it, waited for up to
    ``wait_s`` while another process unpacks the same zip); stale partial unpacks of ``dest``
    left by a killed process are removed once it is held. Use as a context manager."""
    lock = _Unpacking(dest.parent / f".{dest.name}.lock", f"{dest} (being unpacked)", wait_s)
    lock.dest = dest
    return lock


class _Unpacking(FileLock):
    dest: Path

    def acquire(self) -> FileLock:
        with writing(self.dest.parent):  # a read-only or full cache: one line
            self.dest.parent.mkdir(parents=True, exist_ok=True)
        super().acquire()
        for stale in self.dest.parent.glob(f"{glob.escape(self.dest.name)}.*.partial"):
            shutil.rmtree(stale, ignore_errors=True)
        for stale in self.dest.parent.glob(f"{glob.escape(self.dest.name)}.*.old"):
            shutil.rmtree(stale, ignore_errors=True)
        return self
