"""Hostile zipped bundles (issue 21): a real deflate bomb, members the manifest does not list,
sizes the zip lies about, a cache on a real full disk, and processes unpacking one zip at once.
Each ends in one ModelFileError line, bounded memory and nothing half-unpacked in the cache."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fault_fs import listing, tmpfs

from edge_sdk.bundle import read_bundle, shipped_bundles, unpack_zip
from edge_sdk.errors import ConfigError, EdgeSDKError, ModelFileError

DEMO = shipped_bundles().get("avnet_s-demo")
pytestmark = pytest.mark.skipif(DEMO is None, reason="the shipped demo bundle is absent")
MB = 1 << 20


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_SDK_CACHE", str(tmp_path / "cache"))
    for var in ("EDGE_SDK_MAX_UNPACK_MB", "EDGE_SDK_MAX_MEMBER_MB", "EDGE_SDK_MAX_RATIO"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "cache" / "bundles"


def _bundle_zip(dest: Path, extra: dict[str, bytes | int] | None = None, list_extra: bool = False) -> Path:
    """The shipped demo bundle as a zip, plus ``extra`` members (bytes, or an int: that many zero
    bytes, deflated as they stream); with ``list_extra`` the manifest lists them as artifacts."""
    extra = extra or {}
    manifest = json.loads((DEMO / "manifest.json").read_text())
    if list_extra:
        for name, data in extra.items():
            h, n = hashlib.sha256(), data if isinstance(data, int) else len(data)
            for chunk in [data] if isinstance(data, bytes) else (bytes(MB) for _ in range(data // MB)):
                h.update(chunk)
            art = {"file": name, "tower": "extra", "format": "bin", "backend": "none", "precision": "fp32", "sha256": h.hexdigest(), "bytes": n}
            manifest["artifacts"].append(art)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(DEMO.iterdir()):
            if p.name != "manifest.json":
                z.write(p, p.name)
        z.writestr("manifest.json", json.dumps(manifest, indent=2))
        for name, data in extra.items():
            if isinstance(data, bytes):
                z.writestr(name, data)
                continue
            with z.open(name, "w", force_zip64=True) as f:
                for _ in range(data // MB):
                    f.write(bytes(MB))
    return dest


def _nothing_left(cache: Path) -> None:
    assert not cache.exists() or listing(cache) == [], listing(cache)


def test_a_zip_bomb_is_refused_by_ratio_member_size_and_total_before_anything_is_written(tmp_path, cache, monkeypatch):
    bomb = _bundle_zip(tmp_path / "bomb.zip", {"zeros.bin": 200 * MB}, list_extra=True)
    assert bomb.stat().st_size < 8 * MB  # 200 MB of zeros deflate to about 0.2 MB
    with pytest.raises(ModelFileError, match=r"member 'zeros.bin' expands more than 100 times \(a zip bomb") as e:
        read_bundle(bomb)
    assert "\n" not in str(e.value) and "do not use it" in e.value.fix
    _nothing_left(cache)
    with pytest.raises(ModelFileError, match="member 'zeros.bin' unpacks to more than 50 MB"):
        unpack_zip(bomb, max_ratio=1e6, max_member_mb=50)
    monkeypatch.setenv("EDGE_SDK_MAX_RATIO", "1e6")
    monkeypatch.setenv("EDGE_SDK_MAX_UNPACK_MB", "100")
    with pytest.raises(ModelFileError, match="unpacks to more than 100 MB"):
        read_bundle(bomb)
    _nothing_left(cache)
    for bad in ("0", "-5", "nan", "lots"):
        monkeypatch.setenv("EDGE_SDK_MAX_UNPACK_MB", bad)
        with pytest.raises(ConfigError, match=f"EDGE_SDK_MAX_UNPACK_MB={bad!r} is not a number > 0"):
            read_bundle(bomb)


def _lie_about_size(path: Path, name: str, size: int) -> None:
    """Rewrite the zip's central directory so member ``name`` declares ``size`` bytes unpacked."""
    data = bytearray(path.read_bytes())
    at = data.rfind(b"PK\x01\x02")
    while at >= 0:  # central directory entries: name length at +28, the name at +46, unpacked size at +24
        n = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46 : at + 46 + n] == name.encode():
            struct.pack_into("<I", data, at + 24, size)
            path.write_bytes(bytes(data))
            return
        at = data.rfind(b"PK\x01\x02", 0, at)
    raise AssertionError(f"{name} not in {path}")


def test_a_member_that_inflates_beyond_its_declared_size_is_refused_with_bounded_memory(tmp_path, cache):
    bomb = _bundle_zip(tmp_path / "liar.zip", {"zeros.bin": 64 * MB}, list_extra=True)
    _lie_about_size(bomb, "zeros.bin", 1000)  # declares 1000 bytes: the size and ratio checks pass
    with zipfile.ZipFile(bomb) as z:
        assert z.getinfo("zeros.bin").file_size == 1000
    code = (
        "import sys\n"
        "from edge_sdk.bundle import read_bundle\n"
        "from edge_sdk.errors import ModelFileError\n"
        "try:\n    read_bundle(sys.argv[1])\n"
        "except ModelFileError as e:\n    print(e)\n"
        # VmHWM, this process's own peak: ru_maxrss keeps the parent's peak across fork + exec
        "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(bomb)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    message, peak_mb = out.stdout.strip().splitlines()
    assert "liar.zip" in message and ("not a readable zip" in message or "more than" in message), message
    assert int(peak_mb) < 400, f"unpacking used {peak_mb} MB"
    _nothing_left(cache)


def test_real_sized_bundles_unpack_within_the_default_limits(tmp_path, cache):
    weights = np.random.default_rng(0).standard_normal(4 * MB // 4).astype(np.float32).tobytes()  # like a model's: ratio 1.1
    b = read_bundle(_bundle_zip(tmp_path / "big.zip", {"weights.bin": weights}, list_extra=True))
    assert (b.folder / "weights.bin").read_bytes() == weights
    assert sorted(p.name for p in cache.iterdir()) == [b.folder.name]  # no lock file, no partial folder left


def test_members_the_manifest_does_not_list_are_refused_and_reports_are_kept(tmp_path, cache):
    extra = _bundle_zip(tmp_path / "extra.zip", {"evil.sh": b"#!/bin/sh\necho hi\n", "notes/x.txt": b"x"})
    with pytest.raises(ModelFileError, match=r"extra.zip: member 'evil.sh' \(and 1 more\) is not a file its manifest.json lists"):
        read_bundle(extra)
    _nothing_left(cache)
    macos = _bundle_zip(tmp_path / "mac.zip", {"__MACOSX/._manifest.json": b"\x00\x05", ".DS_Store": b"\x00"})
    b = read_bundle(macos)  # what macOS adds to a zip: never unpacked, never refused
    assert {p.name for p in b.folder.iterdir()} == {p.name for p in DEMO.iterdir()}
    assert (b.folder / "report.md").is_file() and not (b.folder / "__MACOSX").exists()


def test_a_full_cache_is_one_line_and_leaves_nothing_behind(tmp_path, monkeypatch):
    z = _bundle_zip(tmp_path / "demo.zip")
    with tmpfs(tmp_path / "full", "1m") as full:
        monkeypatch.setenv("EDGE_SDK_CACHE", str(full))
        with pytest.raises(ModelFileError, match=r"cannot unpack .*demo.zip into .*: it needs 6 MB and 1 MB are free") as e:
            read_bundle(z)
        assert "EDGE_SDK_CACHE" in e.value.fix
        assert listing(full) == ["bundles"]
        # free space that runs out while the members stream (another writer filled the disk): the same line
        import edge_sdk.unzip

        monkeypatch.setattr(edge_sdk.unzip.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1 << 40, 0, 1 << 40))
        with pytest.raises(ModelFileError, match="cannot unpack .*demo.zip into .*: no space left on device"):
            read_bundle(z)
        assert listing(full) == ["bundles"]
    out = subprocess.run(  # and the CLI says it in one line
        [sys.executable, "-m", "edge_sdk", "info", str(z)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "EDGE_SDK_CACHE": "/proc/no/cache"},
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def _read(z: str, cache: str, barrier, results) -> None:
    os.environ["EDGE_SDK_CACHE"] = cache
    barrier.wait()
    try:
        b = read_bundle(z)
        results.put("ok" if (b.folder / "manifest.json").is_file() else "no manifest")
    except EdgeSDKError as e:
        results.put(f"refused: {e}")
    except Exception as e:  # noqa: BLE001 - what the test looks for
        results.put(f"{type(e).__name__}: {e}")


def test_processes_unpacking_one_zip_at_once_all_get_the_whole_folder(tmp_path):
    z = str(_bundle_zip(tmp_path / "demo.zip"))
    ctx = mp.get_context("fork")
    outcomes = []
    for trial in range(6):
        cache = tmp_path / f"cache{trial}"
        if trial % 2:  # a damaged cached copy: each process would re-extract it
            first = unpack_zip(z, cache / "bundles" / f"demo-{hashlib.sha256(Path(z).read_bytes()).hexdigest()[:16]}")
            with open(first / "av.fp32.onnx", "ab") as f:
                f.write(b"x")
        barrier, results = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_read, args=(z, str(cache), barrier, results)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        outcomes += [results.get(timeout=10) for _ in procs]
        assert [p.name for p in (cache / "bundles").iterdir()] == [f"demo-{hashlib.sha256(Path(z).read_bytes()).hexdigest()[:16]}"]
    assert outcomes == ["ok"] * 24, outcomes


def test_the_bytes_really_inflated_are_counted_even_if_declared_sizes_pass(tmp_path, cache, monkeypatch):
    import edge_sdk.bundle

    bomb = _bundle_zip(tmp_path / "bomb.zip", {"zeros.bin": 200 * MB}, list_extra=True)
    monkeypatch.setattr(edge_sdk.bundle, "check_sizes", lambda *a: 0)  # as if the zip's declared sizes were believed
    with pytest.raises(ModelFileError, match="member 'zeros.bin' expands more than 100 times"):
        read_bundle(bomb)
    _nothing_left(cache)
    with pytest.raises(ModelFileError, match="member 'zeros.bin' unpacks to more than 20 MB"):
        unpack_zip(bomb, max_member_mb=20, max_ratio=1e9)
    _nothing_left(cache)


def test_a_read_only_cache_is_one_line(tmp_path, monkeypatch):
    z = _bundle_zip(tmp_path / "demo.zip")
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as ro:
        monkeypatch.setenv("EDGE_SDK_CACHE", str(ro))
        with pytest.raises(EdgeSDKError, match=r"cannot write .*ro/bundles: read-only file system") as e:
            read_bundle(z)
        assert "\n" not in str(e.value)
