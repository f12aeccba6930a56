"""Output paths written whole or not at all, and every failure to write one said in one line.

- :func:`atomic_write_text`, :func:`atomic_write_bytes`, :func:`atomic_path`: a temporary file
  in the same folder, renamed over the target once complete (``os.replace``), removed on any
  error (a full disk, Ctrl-C), so a target holds the old content or the new, never a part.
- :func:`output_folder`: create an output folder, refusing a file in its place or (when asked)
  a folder that is not empty.
- :func:`writing`: a context in which an ``OSError`` (or a library's error that carries an
  errno, as safetensors' ``(os error 28)``) about a user's path becomes one
  :class:`~edge_sdk.errors.EdgeSDKError` naming the path and the cause: no space left on
  device, read-only file system, permission denied, a file where a folder should be.
- :class:`FileLock` / :func:`lock_folder`: an exclusive, non-blocking ``flock`` on a
  ``.edge_sdk.lock`` file in an output folder (holding the owner's pid), so two runs into one
  folder cannot interleave: the second is refused, naming the folder and the first one's pid.
  The lock file is removed at release and never counts as content (:func:`output_folder`).
- :func:`fresh_folder`: all three for a new output folder, which is emptied again (and removed,
  if it was made here) when the work inside fails.

Torch-free; imports nothing but :mod:`edge_sdk.errors`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from edge_sdk.errors import EdgeSDKError

try:
    import fcntl
except ImportError:  # Windows: no flock; folders are not locked there
    fcntl = None

__all__ = [
    "LOCK_NAME",
    "FileLock",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "fresh_folder",
    "lock_folder",
    "os_error_cause",
    "output_folder",
    "path_error",
    "writing",
]

LOCK_NAME = ".edge_sdk.lock"

_CAUSES = {
    errno.ENOSPC: ("no space left on device", "free space on that disk (df -h {folder}) or write elsewhere"),
    errno.EDQUOT: ("disk quota exceeded", "free space within your quota or write elsewhere"),
    errno.EFBIG: ("file too large for that file system", "write to another disk"),
    errno.EROFS: ("read-only file system", "write to a folder on a writable disk"),
    errno.EACCES: ("permission denied", "give this user write access to {folder}, or pick a folder this user owns"),
    errno.EPERM: ("operation not permitted", "give this user write access to {folder}, or pick a folder this user owns"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "remove or rename that file, or pick another path"),
    errno.EEXIST: ("a file is in the way", "remove or rename that file, or pick another path"),
    errno.EISDIR: ("it is a folder", "give the path of a file (in that folder or elsewhere)"),
    errno.ENOENT: ("its folder does not exist", "create it first (mkdir -p {folder}) or pick another path"),
    errno.ENAMETOOLONG: ("the name is too long", "pick a shorter path"),
    errno.EIO: ("input/output error (a failing disk or a lost network share)", "check the disk, or write elsewhere"),
}
_ERRNO_IN_TEXT = re.compile(r"(?:os error |\[Errno )(\d+)")


def _errno(e: BaseException) -> int | None:
    """The errno of an OSError, or of a library error that quotes one in its text (safetensors:
    ``I/O error: No space left on device (os error 28)``); None for anything else."""
    if isinstance(e, OSError) and e.errno:
        return e.errno
    found = _ERRNO_IN_TEXT.search(str(e)) if not isinstance(e, (EdgeSDKError, KeyboardInterrupt)) else None
    return int(found.group(1)) if found else None


def os_error_cause(e: BaseException) -> str:
    """What went wrong, in words: ``no space left on device``, ``read-only file system``, ..."""
    code = _errno(e)
    if code in _CAUSES:
        return _CAUSES[code][0]
    return (os.strerror(code) if code else getattr(e, "strerror", None) or str(e)).lower()


def path_error(e: BaseException, path: str | os.PathLike | None = None, flag: str | None = None, doing: str = "write") -> EdgeSDKError | None:
    """``e`` (an OSError, or a library error quoting an errno) as one :class:`EdgeSDKError` line
    naming ``path`` (default: the error's own file name; ``flag``: the option that named it) and
    the cause; None when ``e`` carries no errno (a bug, not a path problem: let it raise)."""
    code = _errno(e)
    if code is None:
        return None
    where = Path(path if path is not None else getattr(e, "filename", None) or "?")
    label = f"{flag} {where}" if flag else str(where)
    cause = os_error_cause(e)
    folder = where if where.is_dir() else where.parent
    fix = _CAUSES.get(code, ("", "pick another path"))[1].format(folder=folder)
    return EdgeSDKError(f"cannot {doing} {label}: {cause}", fix)


@contextlib.contextmanager
def writing(path: str | os.PathLike | None = None, flag: str | None = None) -> Iterator[None]:
    """Within it, an OSError (or a library error quoting an errno) becomes one EdgeSDKError line
    naming the file it was about (else ``path``) and the cause."""
    try:
        yield
    except Exception as e:
        err = path_error(e, getattr(e, "filename", None) or path, flag)
        if err is None:
            raise
        raise err from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, flag: str | None = None, keep_suffix: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that takes a file name (safetensors,
    ``onnx.save``): renamed over ``path`` when the block ends, removed if it raises. An OSError
    (or a library error quoting an errno) becomes one EdgeSDKError line naming ``path``.
    ``keep_suffix`` keeps the extension last, for writers that pick the format by it."""
    path = Path(path)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp{path.suffix}" if keep_suffix else f"{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        err = path_error(e, path, flag) if isinstance(e, Exception) else None
        if err is None:
            raise
        raise err from None


def atomic_write_bytes(path: str | os.PathLike, data: bytes, flag: str | None = None) -> Path:
    """Write ``data`` to ``path`` whole or not at all (see :func:`atomic_path`)."""
    path = Path(path)
    with atomic_path(path, flag) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return path


def atomic_write_text(path: str | os.PathLike, text: str, flag: str | None = None) -> Path:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all (see :func:`atomic_path`)."""
    return atomic_write_bytes(path, text.encode("utf-8"), flag)


def output_folder(path: str | os.PathLike, flag: str | None = "--out", empty: bool = False) -> Path:
    """Create the output folder ``path`` (with its parents) and check this user can write there;
    refuse a file in its place and, with ``empty``, a folder holding anything but a lock file."""
    path = Path(path)
    label = f"{flag} {path}" if flag else str(path)
    if path.exists() and not path.is_dir():
        raise EdgeSDKError(f"{label} is a file, not a folder", "give a folder (a new one is created), or move that file away")
    with writing(path, flag):
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".edge_sdk.probe.{os.getpid()}"
        probe.touch()
        probe.unlink()
    if empty and any(p.name != LOCK_NAME for p in path.iterdir()):
        raise EdgeSDKError(f"{label} is not empty", "choose a new folder, or empty that one (nothing is overwritten)")
    return path


_HELD: set = set()  # locks this process holds (until released)


def _forget_held_locks() -> None:
    for lock in list(_HELD):
        lock.forget()
    _HELD.clear()


if hasattr(os, "register_at_fork"):  # a forked child (a DataLoader worker) lets go of the parent's locks
    os.register_at_fork(after_in_child=_forget_held_locks)


class FileLock:
    """An exclusive ``flock`` on ``path`` (created, holding this process's pid; removed at
    release). Refused at once when another process holds it, or after ``wait_s`` seconds of
    retrying: an EdgeSDKError naming ``what`` and the holder's pid. Re-entrant in one process
    only through the same object; a second FileLock on the same path conflicts (flock locks
    belong to an open file); acquiring a held one again is a no-op. Without ``fcntl`` (Windows)
    nothing is locked."""

    def __init__(self, path: str | os.PathLike, what: str | None = None, wait_s: float = 0.0):
        self.path, self.what, self.wait_s = Path(path), what or str(Path(path).parent), wait_s
        self._fd: int | None = None

    def acquire(self) -> FileLock:
        if fcntl is None or self._fd is not None:  # held already (lock_folder's lock used as a context manager)
            return self
        deadline = time.monotonic() + self.wait_s
        while True:
            with writing(self.path.parent):
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = _pid_in(fd)
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):  # no locks on this file system (some NFS)
                    return self
                if time.monotonic() >= deadline:
                    raise EdgeSDKError(
                        f"{self.what} is in use by another edge-sdk process (pid {holder or '?'})",
                        "wait for it to finish, or choose another folder",
                    ) from None
                time.sleep(0.05)
                continue
            if _same_file(fd, self.path):  # else the holder removed it between our open and flock: retry on the new one
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        _HELD.add(self)
        return self

    def forget(self) -> None:
        """In a forked child: close this process's copy of the lock without removing the file
        (the parent still holds it; ``flock`` lasts while any copy is open, so an orphaned child
        of a killed run must not keep the folder locked)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        _HELD.discard(self)
        if fd is None:
            return
        with contextlib.suppress(OSError):  # removed while still held: a waiter then re-opens a new one
            self.path.unlink()
        os.close(fd)

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _pid_in(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        return os.pread(fd, 32, 0).decode().strip()
    return ""


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def lock_folder(folder: str | os.PathLike, flag: str | None = "--out") -> FileLock:
    """An exclusive lock on the output folder ``folder`` (a ``.edge_sdk.lock`` file in it), taken
    now; release it (or use it as a context manager) when the run ends."""
    folder = Path(folder)
    return FileLock(folder / LOCK_NAME, f"{flag} {folder}" if flag else str(folder)).acquire()


@contextlib.contextmanager
def fresh_folder(path: str | os.PathLike, flag: str | None = "--out", keep: tuple[type[BaseException], ...] = ()) -> Iterator[Path]:
    """A new (or empty) output folder, locked for the block; when the block raises (a full disk,
    Ctrl-C, a failed check), what it wrote is removed again, and the folder too if it was made
    here: nothing half-written is left behind. Exceptions of the types in ``keep`` leave what
    was written (a report the user is sent to read)."""
    path = Path(path)
    made = not path.exists()
    folder = output_folder(path, flag, empty=True)
    lock = lock_folder(folder, flag)
    try:
        yield folder
    except keep:
        lock.release()
        raise
    except BaseException as e:
        for p in folder.iterdir():
            if p.name != LOCK_NAME:
                with contextlib.suppress(OSError):
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        lock.release()
        if made:
            with contextlib.suppress(OSError):
                folder.rmdir()
        err = _writing_into(e, folder, flag)
        if err is None:
            raise
        raise err from None
    lock.release()


_DISK = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def _writing_into(e: BaseException, folder: Path, flag: str | None) -> EdgeSDKError | None:
    """``e`` as one line about ``folder`` when it is a failure to write there (a full disk, or an
    error naming a file in it: a library's write deep inside the block); None otherwise."""
    if not isinstance(e, Exception) or isinstance(e, EdgeSDKError):
        return None
    name = getattr(e, "filename", None)
    inside = name is not None and Path(name).resolve().is_relative_to(folder.resolve())
    if _errno(e) in _DISK or inside:
        return path_error(e, name if inside else folder, None if inside else flag)
    return None
