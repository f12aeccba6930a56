"""Output paths (issue 21): writes are whole or absent on a real full disk, a read-only disk or a
file in the way each give one EdgeSDKError line naming the path and the cause, and two
processes writing one output folder never interleave (the second is refused by name and pid)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fault_fs import listing, tmpfs

from edge_sdk.errors import EdgeSDKError
from edge_sdk.outputs import LOCK_NAME, atomic_write_bytes, atomic_write_text, fresh_folder, lock_folder, output_folder, path_error, writing

ROOT = Path(__file__).resolve().parents[1]


def test_atomic_writes_on_a_full_disk_keep_the_old_file_and_leave_no_temporary(tmp_path):
    with tmpfs(tmp_path / "full", "64k") as full:
        target = atomic_write_text(full / "stats.json", '{"ok": 1}')
        with pytest.raises(EdgeSDKError, match=r"cannot write .*stats.json: no space left on device -- fix: free space on that disk \(df -h"):
            atomic_write_bytes(target, b"x" * (256 << 10))
        assert target.read_text() == '{"ok": 1}' and listing(full) == ["stats.json"]
        with pytest.raises(EdgeSDKError, match="cannot write --json .*: no space left on device"):
            atomic_write_text(full / "big.json", "y" * (256 << 10), "--json")
        assert listing(full) == ["stats.json"]


def test_a_read_only_disk_and_a_file_in_the_way_are_named(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(EdgeSDKError, match=r"--out .*afile is a file, not a folder"):
        output_folder(tmp_path / "afile")
    with pytest.raises(EdgeSDKError, match=r"cannot write --out .*afile/sub: a part of the path is a file, not a folder"):
        output_folder(tmp_path / "afile" / "sub")
    with pytest.raises(EdgeSDKError, match="cannot write .*afile/x.json: a part of the path is a file, not a folder"):
        atomic_write_text(tmp_path / "afile" / "x.json", "{}")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / LOCK_NAME).write_text("123\n")  # a lock file is not content
    assert output_folder(tmp_path / "d", empty=True) == tmp_path / "d"
    (tmp_path / "d" / "x").write_text("x")
    with pytest.raises(EdgeSDKError, match=r"--out .*d is not empty"):
        output_folder(tmp_path / "d", empty=True)
    with tmpfs(tmp_path / "ro", "64k", read_only=True) as ro:
        with pytest.raises(EdgeSDKError, match=r"cannot write --out .*ro/run: read-only file system -- fix: write to a folder on a writable disk"):
            output_folder(ro / "run")
        with pytest.raises(EdgeSDKError, match="cannot write .*ro/a.json: read-only file system"):
            atomic_write_text(ro / "a.json", "{}")
        with pytest.raises(EdgeSDKError, match="cannot write .*ro/e.jsonl: read-only file system"), writing(ro / "e.jsonl"):
            open(ro / "e.jsonl", "w")  # noqa: SIM115 - the open is what fails


def test_library_errors_that_quote_an_errno_are_translated():
    from safetensors import SafetensorError

    e = path_error(SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"), "/x/m.safetensors")
    assert str(e).startswith("cannot write /x/m.safetensors: no space left on device")
    assert path_error(ValueError("not a path problem")) is None
    assert "permission denied" in str(path_error(PermissionError(errno.EACCES, "Permission denied", "/etc/x")))


def test_checkpoints_on_a_full_disk_are_one_line_and_never_partial(tmp_path):
    torch = pytest.importorskip("torch")
    from edge_sdk.checkpoint import save_tensors

    with tmpfs(tmp_path / "full", "256k") as full:
        save_tensors(full / "last.safetensors", {"w": torch.zeros(1000)})
        before = (full / "last.safetensors").read_bytes()
        with pytest.raises(EdgeSDKError, match="cannot write .*last.safetensors: no space left on device"):
            save_tensors(full / "last.safetensors", {"w": torch.zeros(1 << 20)})
        assert (full / "last.safetensors").read_bytes() == before and listing(full) == ["last.safetensors"]


def test_fresh_folder_removes_what_it_wrote_when_the_work_fails(tmp_path):
    with pytest.raises(KeyboardInterrupt), fresh_folder(tmp_path / "out") as out:
        (out / "a.npz").write_bytes(b"x")
        assert (out / LOCK_NAME).read_text().strip() == str(os.getpid())
        raise KeyboardInterrupt
    assert not (tmp_path / "out").exists()
    with fresh_folder(tmp_path / "out") as out:
        (out / "a.npz").write_bytes(b"x")
    assert listing(tmp_path / "out") == ["a.npz"]
    with pytest.raises(ValueError), fresh_folder(tmp_path / "kept", keep=(ValueError,)) as out:
        (out / "report.md").write_text("read me")  # a report the user is sent to read stays
        raise ValueError
    assert listing(tmp_path / "kept") == ["report.md"]
    with tmpfs(tmp_path / "full", "64k") as full:
        with pytest.raises(EdgeSDKError, match=r"^cannot write --out .*full/b: no space left on device"), fresh_folder(full / "b") as out:
            _fill(out / "model.onnx")
        assert listing(full) == []


def _fill(path: Path) -> None:
    """Write until the disk is full, as a library does (its error names no file)."""
    with open(path, "wb") as f:
        for _ in range(64):
            f.write(bytes(4096))
            f.flush()


HOLD = textwrap.dedent(
    """
    import sys, time
    from edge_sdk.outputs import lock_folder
    from edge_sdk.errors import EdgeSDKError
    try:
        lock = lock_folder(sys.argv[1])
    except EdgeSDKError as e:
        print(e, flush=True)
        sys.exit(2)
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    lock.release()
    """
)


def _hold(folder: Path, seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLD, str(folder), str(seconds)], stdout=subprocess.PIPE, text=True)


def test_an_output_folder_lock_refuses_a_second_process_and_names_the_first(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    first = _hold(out, 30)
    try:
        assert first.stdout.readline().strip() == "locked"
        second = _hold(out, 0)
        assert second.wait(30) == 2
        assert second.stdout.read().strip() == (
            f"--out {out} is in use by another edge-sdk process (pid {first.pid}) -- fix: wait for it to finish, or choose another folder"
        )
    finally:
        first.kill()
        first.wait()
    third = _hold(out, 0)  # the first was killed holding it: its lock went with it (the file may stay)
    assert third.wait(30) == 0 and third.stdout.read().strip() == "locked"
    assert listing(out) == []  # released normally: the lock file is removed
    with lock_folder(out):
        assert (out / LOCK_NAME).is_file()
    assert not (out / LOCK_NAME).exists()


def _cli(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "edge_sdk", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


def test_two_calib_runs_into_one_folder_one_writes_the_other_is_refused(tmp_path):
    out = tmp_path / "same"
    procs = [_cli("calib", "--n", "64", "--synthetic", "--out", str(out)) for _ in range(2)]
    done = [(p.wait(300), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in done)
    assert codes == [0, 2], done
    refused = _one_line(next(err for rc, err in done if rc == 2))
    assert "is in use by another edge-sdk process (pid" in refused or "is not empty" in refused, refused
    assert sorted(p.name for p in out.iterdir()) == [f"scene_{i:05d}.npz" for i in range(64)]


def test_two_recordings_into_one_folder_never_interleave(tmp_path):
    out = tmp_path / "live"
    uri = "synthetic://av-digits?seconds=4&realtime=1"
    procs = [_cli("calib", "--video", uri, "--seconds", "3", "--every-ms", "100", "--out", str(out)) for _ in range(2)]
    done = [(p.wait(300), p.stderr.read()) for p in procs]
    refused = [err for rc, err in done if rc == 2 and "in use by another edge-sdk process" in err]
    assert len(refused) == 1, done
    _one_line(refused[0])
    assert LOCK_NAME not in [p.name for p in out.iterdir()]


def test_main_turns_an_os_error_with_a_file_name_into_one_line(monkeypatch, capsys):
    from edge_sdk.toolchain import cli
    from edge_sdk.toolchain.args import Command

    def boom(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/run/model.onnx")

    monkeypatch.setattr(cli, "COMMANDS", (Command("boom", boom, lambda p: None, "fails", "edge-sdk boom"),))
    assert cli.main(["boom"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "edge-sdk boom: error: /data/run/model.onnx: no space left on device -- fix: check that path (df -h, ls -ld), or pick another one"
    )
    assert cli.main(["-v", "boom"]) == 2 and "Traceback" in capsys.readouterr().err  # -v shows where


def test_waiting_for_a_lock_gives_up_with_the_holders_pid(tmp_path):
    from edge_sdk.outputs import FileLock

    first = _hold(tmp_path, 30)
    try:
        assert first.stdout.readline().strip() == "locked"
        t = time.monotonic()
        with pytest.raises(EdgeSDKError, match=f"pid {first.pid}"):
            FileLock(tmp_path / LOCK_NAME, "the cache", wait_s=0.5).acquire()
        assert 0.4 < time.monotonic() - t < 5
    finally:
        first.kill()
        first.wait()


def test_a_forked_child_lets_go_of_the_parents_lock(tmp_path):
    """A DataLoader worker forked from a training run must not keep its --out locked after the
    run is killed: the child's copy of the lock is closed at fork."""
    code = textwrap.dedent(f"""
        import os, signal, time
        from edge_sdk.outputs import lock_folder
        lock_folder({str(tmp_path)!r})
        if os.fork() == 0:  # a worker that outlives the run
            time.sleep(5)
            os._exit(0)
        os.kill(os.getpid(), signal.SIGKILL)  # the run dies holding its lock
    """)
    subprocess.run([sys.executable, "-c", code], timeout=60)
    assert (tmp_path / LOCK_NAME).exists()  # left behind by the killed run
    lock_folder(tmp_path).release()  # the orphaned worker does not hold it: the resume may lock the folder
