"""The runtime measured from inside a process that never imports torch: how many live streams
one process serves on this machine (:func:`measure_streams`), and what one stream costs in
memory and start-up (:func:`measure_footprint`). ``edge-sdk bench-runtime`` runs each
measurement in a fresh ``python -m edge_sdk.runtime.loadtest`` process, which prints one JSON
line, so nothing of the benchmark's own (torch, its baseline, an earlier trial) is counted.

The streams are what a user with several cameras has, from real clips
(``../shared/data/video``, each made 640x360 25 fps H.264 once by :func:`prepare_clips`):
even-numbered streams are network cameras on loopback (ffmpeg serving the clip in real time
as Matroska over HTTP, one cluster per frame, :func:`serve_camera`; read through OpenCV like
any ``http://`` camera) each with a microphone (the clip's own sound played in real time,
``wav://...?realtime=1``), odd-numbered ones files played in real time
(``file://...?realtime=1&loop=1``, picture and sound). CPU time is read per thread from
``/proc`` and shared out as decode (capture threads and FFmpeg's decoder threads), preprocess
(cutting each frame's model input), inference (the towers) and overhead (the rest: batching,
tasks, statistics, sinks, pacing).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

__all__ = ["prepare_clips", "serve_camera", "stream_list", "measure_streams", "measure_footprint", "thread_cpu", "rss_mb"]

CLIPS = ("chaplin.mp4", "big_buck_bunny_0_30.webm", "smpte-2997.mp4")  # real A/V clips of ../shared/data/video
SIZE, FPS = (640, 360), 25


def prepare_clips(video_dir: Path | None, work: Path, fallback: Path | None = None) -> list[Path]:
    """The real clips of ``video_dir`` as 640x360 25 fps H.264 + AAC files in ``work`` (made
    once; a clip already so is used as it is), or ``[fallback]`` where there are none."""
    out = []
    for name in CLIPS:
        src = video_dir / name if video_dir is not None else None
        if src is None or not src.is_file():
            continue
        if name == "chaplin.mp4":  # already H.264 640x360 25 fps
            out.append(src)
            continue
        dst = work / f"{Path(name).stem}-360p25.mp4"
        if not dst.is_file():
            tmp = dst.with_name(dst.name + ".part.mp4")
            cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(src), "-vf", f"scale={SIZE[0]}:{SIZE[1]},fps={FPS}",
                   "-c:v", "libx264", "-preset", "veryfast", "-g", "50", "-bf", "0", "-c:a", "aac", "-ar", "44100", str(tmp)]  # fmt: skip
            subprocess.run(cmd, check=True, timeout=300)
            tmp.replace(dst)
        out.append(dst)
    return out or ([fallback] if fallback is not None else [])


def serve_camera(clip: Path, port: int) -> subprocess.Popen:
    """ffmpeg serving ``clip``'s picture in real time, looped, as a network camera at
    ``http://127.0.0.1:PORT/`` (Matroska, H.264 passed through, one cluster per frame: the
    frames come one by one, as a camera sends them, not in half-second bursts)."""
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip), "-an", "-c:v", "copy",
           "-flush_packets", "1", "-cluster_size_limit", "1", "-live", "1",
           "-f", "matroska", "-listen", "1", f"http://127.0.0.1:{port}/"]  # fmt: skip
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # killed at the end: its complaints are noise


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stream_list(clips: list[Path], n: int, ports: list[int]) -> list[dict]:
    """``n`` streams over ``clips`` (see the module's docstring): network cameras with a paced
    microphone at the even places (their ports in ``ports``), paced files at the odd ones."""
    out = []
    for i in range(n):
        clip = clips[i % len(clips)]
        if i % 2 == 0:
            out.append({"name": f"cam{i}", "video": f"http://127.0.0.1:{ports[i // 2]}/?stall_s=2", "audio": f"wav://{clip}?realtime=1&loop=1"})
        else:
            out.append({"name": f"file{i}", "video": f"file://{clip}?realtime=1&loop=1"})
    return out


def thread_cpu() -> dict[int, float]:
    """CPU seconds of each thread of this process, by native thread id (``/proc/self/task``)."""
    tick, out = os.sysconf("SC_CLK_TCK"), {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _pid_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb() -> tuple[float, float]:
    """(resident, peak resident) memory of this process in MB (VmRSS, VmHWM)."""
    got = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                got[key] = int(value.split()[0]) / 1024
    return round(got["VmRSS"], 1), round(got["VmHWM"], 1)


def _category(name: str | None, runtime_native: set[int], tid: int) -> str:
    if name is None:  # a native thread: the model runtime's pool (there before the sources) or FFmpeg's decoders
        return "inference" if tid in runtime_native else "decode"
    if name.startswith(("capture ", "feed ", "mic ")):
        return "decode"
    if name.startswith("edge_sdk-audio"):
        return "inference"
    if name == "edge_sdk-infer":
        return "worker"
    return "overhead"


def _shares(before: dict, after: dict, names: dict, runtime_native: set[int], counters: tuple[dict, dict]) -> dict:
    """CPU seconds by category between two :func:`thread_cpu` readings, the inference thread's
    split into preprocess, inference and overhead by its own counters."""
    cats = dict.fromkeys(("decode", "preprocess", "inference", "overhead", "worker"), 0.0)
    for tid, t in after.items():
        cats[_category(names.get(tid), runtime_native, tid)] += t - before.get(tid, 0.0)
    pre = (counters[1].get("cpu_ms_preprocess", 0) - counters[0].get("cpu_ms_preprocess", 0)) / 1e3
    inf = (counters[1].get("cpu_ms_inference", 0) - counters[0].get("cpu_ms_inference", 0)) / 1e3
    worker = cats.pop("worker")
    cats["preprocess"] += min(pre, worker)
    cats["inference"] += min(inf, max(worker - pre, 0.0))
    cats["overhead"] += max(worker - pre - inf, 0.0)
    total = sum(cats.values())
    return {"cpu_s": {k: round(v, 2) for k, v in cats.items()}, "shares": {k: round(v / total, 3) if total else 0.0 for k, v in cats.items()}}


def _open_streams(bundle, specs: list[dict], config: dict, prefer, precision):
    """The model, then the sources (network cameras retried until their server listens), then
    the pipeline; and the native threads the model runtime made before any source."""
    from edge_sdk.errors import DataError
    from edge_sdk.runtime.multi import MultiPipeline, stream_specs
    from edge_sdk.runtime.opening import open_model, open_sources

    model = open_model(bundle, prefer=prefer, precision=precision)
    runtime_native = set(thread_cpu()) - {t.native_id for t in threading.enumerate()}
    opened = []
    for s in stream_specs(specs):
        end = time.monotonic() + 15
        while True:
            try:
                v, a = open_sources(s.video, s.audio, model.contract.audio.sample_rate, s.source_opts)
                break
            except DataError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.2)
        opened.append((s.name, v, a, None, None, ()))
    pipe = MultiPipeline(model.towers, model.contract, opened, "localize", backend=model.backend, config=_config(config))
    return pipe, runtime_native


def _config(knobs: dict):
    from edge_sdk.runtime.config import PipelineConfig

    return PipelineConfig.of(None, **knobs)


def measure_streams(bundle, clips: list[Path], n: int, seconds: float = 20.0, warmup: float = 3.0, *, prefer=None, precision=None,
                    knobs: dict | None = None) -> dict:  # fmt: skip
    """``n`` live streams (:func:`stream_list`) through one :class:`~.multi.MultiPipeline` for
    ``warmup`` + ``seconds``; drops, capture-to-result latency and CPU shares over the last
    ``seconds`` (each stream's and all together)."""
    import numpy as np

    ports = [free_port() for _ in range((n + 1) // 2)]
    servers = [serve_camera(clips[(2 * i) % len(clips)], port) for i, port in enumerate(ports)]
    lat: dict[str, list[float]] = {}
    measuring = threading.Event()

    def collect(r) -> None:
        if measuring.is_set():
            lat.setdefault(r.stream, []).append(r.latency_ms)

    try:
        pipe, runtime_native = _open_streams(bundle, stream_list(clips, n, ports), knobs or {}, prefer, precision)
        pipe.callback = collect
        marks: dict = {}

        def on_stats(_stats) -> None:  # on this thread, every 0.25 s: readings while every source still runs
            if "before" not in marks and time.monotonic() - t0 >= warmup:
                marks["before"] = _reading(pipe, servers)
                measuring.set()
            elif "before" in marks and "after" not in marks and time.monotonic() - marks["before"]["t"] >= seconds:
                measuring.clear()
                marks["after"] = _reading(pipe, servers)

        t0 = time.monotonic()
        final = pipe.run(warmup + seconds + 30, on_stats=on_stats, every_s=0.25, on_result=lambda r: "after" not in marks)
    finally:
        for s in servers:
            s.kill()
            s.wait()
    if "after" not in marks:
        raise RuntimeError(f"{n} streams gave no results for {warmup + seconds + 30:.0f} s: {final.get('errors')}")
    before, after = marks["before"], marks["after"]
    return _summary(pipe, final, before, after, lat, runtime_native, n, np)


def _reading(pipe, servers) -> dict:
    return {
        "t": time.monotonic(),
        "cpu": thread_cpu(),
        "names": {t.native_id: t.name for t in threading.enumerate()},
        "counters": dict(pipe.stats.counters),
        "streams": {s.name: dict(s.stats.counters) for s in pipe.streams},
        "servers": sum(_pid_cpu(s.pid) for s in servers),
    }


def _summary(pipe, final: dict, before: dict, after: dict, lat: dict, runtime_native: set[int], n: int, np) -> dict:
    wall = after["t"] - before["t"]
    per, worst = {}, 0.0
    frames_in = dropped = 0
    for name, c1 in after["streams"].items():
        c0 = before["streams"].get(name, {})
        fin, drop = c1.get("frames_in", 0) - c0.get("frames_in", 0), c1.get("dropped", 0) - c0.get("dropped", 0)
        frames_in, dropped = frames_in + fin, dropped + drop
        p95 = round(float(np.percentile(lat[name], 95)), 2) if lat.get(name) else None
        worst = max(worst, p95) if p95 is not None else worst
        per[name] = {"frames_in": fin, "results": len(lat.get(name, ())), "dropped": drop, "p95_ms": p95}
    every = [x for v in lat.values() for x in v]
    names = {**before["names"], **after["names"]}
    shares = _shares(before["cpu"], after["cpu"], names, runtime_native, (before["counters"], after["counters"]))
    process = sum(shares["cpu_s"].values())
    batches = after["counters"].get("inference_batches", 0) - before["counters"].get("inference_batches", 0)
    return {
        "streams": n,
        "seconds": round(wall, 2),
        "frames_in": frames_in,
        "results": len(every),
        "drop_rate": round(dropped / frames_in, 4) if frames_in else None,
        "p50_ms": round(float(np.percentile(every, 50)), 2) if every else None,
        "p95_ms": round(float(np.percentile(every, 95)), 2) if every else None,
        "worst_stream_p95_ms": worst if per else None,
        "silent_streams": sorted(name for name, v in per.items() if not v["results"]),
        "mean_batch": round(len(every) / batches, 2) if batches else None,
        "process_cores": round(process / wall, 3) if wall else None,
        "servers_cores": round((after["servers"] - before["servers"]) / wall, 3) if wall else None,
        "cpu_count": os.cpu_count(),
        **shares,
        "rss_mb": rss_mb()[0],
        "backend": pipe.backend,
        "per_stream": per,
        "faults": final.get("faults", {}),
        "errors": final.get("errors", []),
        "torch_imported": "torch" in sys.modules,
    }


def measure_footprint(bundle, video: str, seconds: float = 5.0, *, prefer=None, precision=None) -> dict:
    """One stream in this (fresh, torch-free) process: seconds from opening the bundle to the
    first result (cold start: towers loaded and warmed up, sources opened, the first frame
    captured, cut and inferred), and resident memory after ``seconds`` of running. The
    runtime's own modules are imported first (``import_s``); ONNX Runtime and PyAV are imported
    when the bundle and the source are opened, within the cold start."""
    t_import = time.perf_counter()
    from edge_sdk.runtime.pipeline import Pipeline

    first = threading.Event()
    t_open = time.perf_counter()
    pipe = Pipeline.from_bundle(bundle, video, task="localize", prefer=prefer, precision=precision, callback=lambda r: first.set())
    t_opened = time.perf_counter()
    pipe.start()
    got = first.wait(30)
    t_first = time.perf_counter()
    time.sleep(seconds)
    rss, peak = rss_mb()
    stats = pipe.stop()
    return {
        "video": video,
        "backend": pipe.backend,
        "cold_start_s": round(t_first - t_open, 3) if got else None,
        "open_s": round(t_opened - t_open, 3),
        "import_s": round(t_open - t_import, 3),
        "rss_mb": rss,
        "peak_rss_mb": peak,
        "frames_out": stats["frames_out"],
        "torch_imported": "torch" in sys.modules,
    }


def main(argv=None) -> int:
    """``python -m edge_sdk.runtime.loadtest streams|footprint ...``: one measurement, one JSON line."""
    p = argparse.ArgumentParser(prog="python -m edge_sdk.runtime.loadtest")
    p.add_argument("what", choices=["streams", "footprint"])
    p.add_argument("--bundle", required=True)
    p.add_argument("--clips", default="", help="streams: comma list of 640x360 25 fps clips")
    p.add_argument("--video", help="footprint: the stream's video URI")
    p.add_argument("--streams", type=int, default=1)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--backend")
    p.add_argument("--precision")
    p.add_argument("--knobs", default="{}", help="PipelineConfig knobs as JSON")
    a = p.parse_args(argv)
    if shutil.which("ffmpeg") is None and a.what == "streams":
        sys.stdout.write(json.dumps({"error": "ffmpeg is not installed (apt-get install ffmpeg)"}) + "\n")
        return 2
    if a.what == "footprint":
        out = measure_footprint(a.bundle, a.video, a.seconds, prefer=a.backend, precision=a.precision)
    else:
        clips = [Path(c) for c in a.clips.split(",") if c]
        out = measure_streams(a.bundle, clips, a.streams, a.seconds, a.warmup, prefer=a.backend, precision=a.precision, knobs=json.loads(a.knobs))
    sys.stdout.write(json.dumps(out) + "\n")  # the one line the benchmark reads
    return 0


if __name__ == "__main__":
    sys.exit(main())
