"""Real file-system faults for the tests: a tiny tmpfs (a disk that fills) and a read-only
mount, where this process is root and may mount (skipped with the reason otherwise)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "1m", read_only: bool = False):
    """A fresh tmpfs of ``size`` mounted at ``path`` (read-only with ``read_only``), unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("a real full or read-only disk needs root (mount -t tmpfs); not root here")
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"mount -t tmpfs does not work here ({done.stderr.strip()}): no real full or read-only disk")
    try:
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def listing(folder: Path) -> list[str]:
    """Every path under ``folder``, relative to it."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
