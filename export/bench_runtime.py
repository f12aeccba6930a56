"""``edge-sdk bench-runtime``: the streaming runtime measured against its own targets and
against what a user would otherwise write, in one run on this machine.

It lives with the export tools, not in the runtime, because its baseline runs the shipped
PyTorch teacher (torch and :mod:`edge_sdk.models`); it drives the runtime only through
its public :class:`~edge_sdk.runtime.pipeline.Pipeline`.

1. A 720p 30 fps clip of held-out AV-Digits scenes with their speech (H.264 + AAC,
   ground truth beside it) is read as a camera would deliver it (``file://...?realtime=1``)
   through the pipeline: drops, A/V skew, capture-to-result latency against the sum of the
   preprocessing and inference time measured in the same run (the runtime's overhead).
2. The same clip as fast as possible (offline, nothing dropped) through the pipeline, and
   through the baseline -- an OpenCV read loop calling the PyTorch eager teacher with the
   clip's audio decoded up front: frames per second and pointing accuracy of both; and the
   clip only decoded and cut to the model's input, nothing else (the ceiling of any offline
   frame rate on this machine).
3. With ``soak_s``: the clip looped in real time for that long; resident memory at the end
   against after warm-up.
4. Footprint, in a fresh process that never imports torch (:mod:`edge_sdk.runtime.loadtest`):
   seconds from opening the bundle to the first result, and resident memory while one
   640x360 stream runs.
5. With ``streams``: that many live 640x360 25 fps camera+microphone streams from the real
   clips (network cameras on loopback and files played in real time) in one
   :class:`~edge_sdk.runtime.multi.MultiPipeline`, each trial in a fresh torch-free process;
   ``"auto"`` searches for ``max_streams``, the most streams served with under 1% of frames
   dropped and a capture-to-result p95 under 100 ms, and reports where the CPU goes at that
   count (decode, preprocess, inference, overhead).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["bench_runtime", "bench_streams", "search_max", "footprint", "pointing_of", "STREAM_TARGETS"]

# what a stream count must meet to count as served (issue 23): drops and capture-to-result p95
STREAM_TARGETS = {"drop_rate": 0.01, "p95_ms": 100.0}

log = logging.getLogger(__name__)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _hit(boxes, t: float, x: float, y: float) -> bool | None:
    from edge_sdk.media.clipfile import scene_at

    scene = scene_at(boxes, t)
    if scene is None:
        return None
    x0, y0, x1, y1 = scene["box"]
    return x0 <= x <= x1 and y0 <= y <= y1


def pointing_of(peaks: list[tuple[int, list]], boxes: list[dict], first_pts_ns: int) -> float:
    """Share of scored frames (those whose audio window holds a whole spoken digit) whose
    heatmap peak lies in that digit's box; ``peaks`` are (pts_ns, peak_xy) per result."""
    hits = [_hit(boxes, (pts - first_pts_ns) / 1e9, *xy) for pts, xy in peaks]
    hits = [h for h in hits if h is not None]
    return float(np.mean(hits)) if hits else float("nan")


def _pipeline_run(bundle, uri, prefer, precision, policy, max_seconds=None):
    from edge_sdk.runtime.pipeline import Pipeline

    results = []  # (pts, peak) only: a Result holds its full-size frame
    pipe = Pipeline.from_bundle(
        bundle,
        uri,
        task="localize",
        prefer=prefer,
        precision=precision,
        policy=policy,
        callback=lambda r: results.append((r.pts_ns, r.values["peak_xy"])),
    )
    t0 = time.perf_counter()
    stats = pipe.run(max_seconds)
    return results, stats, time.perf_counter() - t0, pipe.backend


def _baseline(clip: Path, teacher: str, boxes) -> dict:
    """An OpenCV read loop calling the eager teacher, audio decoded up front (PyAV), each frame
    centre-cropped and resized with one ``cv2.resize`` (INTER_AREA), as a user writes it."""
    import av
    import cv2
    import torch

    from edge_sdk.heatmap import contract_heatmaps
    from edge_sdk.models.shipped import resolve_model

    model, _ = resolve_model(teacher)
    spec = model.contract
    with av.open(str(clip)) as c:  # the whole soundtrack up front, mono at the model's rate
        resampler, chunks, audio_start = av.AudioResampler(format="flt", layout="mono", rate=spec.audio.sample_rate), [], None
        for fr in c.decode(audio=0):
            audio_start = fr.time if audio_start is None else audio_start
            chunks += [o.to_ndarray().reshape(-1) for o in resampler.resample(fr)]
        audio = np.concatenate(chunks).astype(np.float32)
    cap = cv2.VideoCapture(str(clip))
    n, hits, t0 = 0, [], time.perf_counter()
    sr, ns = spec.audio.sample_rate, spec.audio.num_samples
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1e3
        end = int(round((t - audio_start) * sr))
        wave = np.zeros(ns, np.float32)
        seg = audio[max(0, end - ns) : max(0, end)]
        wave[ns - len(seg) :] = seg
        h, w = bgr.shape[:2]
        side, size = min(h, w), spec.image.height
        crop = bgr[(h - side) // 2 : (h + side) // 2, (w - side) // 2 : (w + side) // 2, ::-1]
        img = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)[None].astype(np.float32)
        with torch.inference_mode():
            out = model(torch.from_numpy(wave[None]), torch.from_numpy(img))
        heat = contract_heatmaps(spec, out["audio_emb"].numpy(), out["image_map"].numpy())[0]
        n += 1
        py, px = np.unravel_index(int(heat.argmax()), heat.shape)
        hit = _hit(boxes, t, (w - side) / 2 + px * side / size, (h - side) / 2 + py * side / size)
        if hit is not None:
            hits.append(hit)
    elapsed = time.perf_counter() - t0
    return {"model": spec.name, "frames": n, "fps": round(n / elapsed, 2), "pointing_acc": float(np.mean(hits)) if hits else float("nan")}


def _decode_only(clip: Path, size: int) -> dict:
    """The clip's video decoded (PyAV, FFmpeg's own threads) and each frame's model input cut
    from its planes, as the file source and pipeline do, nothing else: the ceiling on any
    offline pipeline's frame rate here."""
    import av

    from edge_sdk.media.image import av_square

    n, t0 = 0, time.perf_counter()
    with av.open(str(clip)) as c:
        c.streams.video[0].thread_type = "AUTO"
        for fr in c.decode(video=0):
            av_square(fr, size)
            n += 1
    return {"frames": n, "fps": round(n / (time.perf_counter() - t0), 2)}


def _loadtest(args: list[str], timeout: float) -> dict:
    """One measurement in a fresh ``python -m edge_sdk.runtime.loadtest`` process (never torch):
    its JSON line."""
    from edge_sdk.errors import EdgeSDKError

    cmd = [sys.executable, "-m", "edge_sdk.runtime.loadtest", *args]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    if run.returncode != 0 or not lines:
        tail = (run.stderr.strip().splitlines() or ["no output"])[-1][:300]
        raise EdgeSDKError(f"the runtime measurement ({' '.join(args[:2])}) failed: {tail}", "run it alone to see why: " + " ".join(cmd))
    return json.loads(lines[-1])


def footprint(bundle_folder, video: str, *, prefer=None, precision=None, seconds: float = 5.0) -> dict:
    """Cold start and resident memory of one stream in a fresh torch-free process."""
    extra = [*(["--backend", prefer] if prefer else []), *(["--precision", precision] if precision else [])]
    return _loadtest(["footprint", "--bundle", str(bundle_folder), "--video", video, "--seconds", str(seconds), *extra], 120)


def _served(trial: dict) -> bool:
    return (
        trial.get("drop_rate") is not None
        and trial["drop_rate"] < STREAM_TARGETS["drop_rate"]
        and trial.get("p95_ms") is not None
        and trial["p95_ms"] < STREAM_TARGETS["p95_ms"]
        and not trial.get("silent_streams")
        and not trial.get("errors")
    )


def _trial(bundle_folder, clips, n: int, seconds: float, prefer, precision) -> dict:
    extra = [*(["--backend", prefer] if prefer else []), *(["--precision", precision] if precision else [])]
    args = ["streams", "--bundle", str(bundle_folder), "--clips", ",".join(map(str, clips)), "--streams", str(n), "--seconds", str(seconds), *extra]
    log.info("bench-runtime: %d stream(s) for %.0f s", n, seconds)
    t = _loadtest(args, seconds + 120 + 2 * n)
    t["served"] = _served(t)
    log.info("bench-runtime: %d stream(s): drops %s, p95 %s ms, %s", n, t["drop_rate"], t["p95_ms"], "served" if t["served"] else "not served")
    return t


def search_max(served, limit: int = 64) -> int:
    """The largest ``n`` <= ``limit`` with ``served(n)``, assuming that serving more streams never
    gets easier: 1, 2, 4, ... until one fails, then halving the gap (0: not even one)."""
    good, n = 0, 1
    while n <= limit and served(n):
        good, n = n, n * 2
    bad = n if n <= limit else limit + 1
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if served(mid) else (good, mid)
    return good


def bench_streams(
    bundle_folder, clips: list[Path], streams: int | str, *, seconds: float = 20.0, limit: int = 64, prefer=None, precision=None
) -> dict:
    """``streams`` live streams (a number), or ``"auto"``: doubling from 1 until a count is not
    served, then halving the gap, for ``max_streams`` (each trial a fresh process)."""
    trials: dict[int, dict] = {}

    def served(n: int) -> bool:
        if n not in trials:
            trials[n] = _trial(bundle_folder, clips, n, seconds, prefer, precision)
        return trials[n]["served"]

    if streams == "auto":
        search_max(served, limit)
    else:
        served(int(streams))
    ok = [n for n, t in trials.items() if t["served"]]
    best = max(ok) if ok else 0
    at = trials.get(best) or trials[min(trials)]
    return {
        "targets": STREAM_TARGETS,
        "clips": [str(c) for c in clips],
        "seconds_per_trial": seconds,
        "max_streams": best if streams == "auto" else None,
        "shares_at": at["streams"],
        "shares": at["shares"],
        "trials": [trials[n] for n in sorted(trials)],
    }


def _single_stream(b, seconds: int, fps: int, prefer, precision, teacher, soak_s: float, fsdd, mnist, work: Path) -> dict:
    """Parts 1-3 (see the module's docstring) on a generated 720p clip."""
    from edge_sdk.media.clipfile import read_boxes, write_clip

    clip = write_clip(work / "clip720p30.mp4", b.contract, seconds=seconds, fps=fps, fsdd=fsdd, mnist=mnist)
    boxes = read_boxes(clip)
    # pointing is scored on the frames whose audio window holds a whole spoken digit: one
    # scene per 2 s, so a 60 s clip resolves pointing to 1/30 = 3.3 points
    scored = sum(1 for box in boxes if box["start_s"] + 1.25 <= seconds)
    out: dict = {"clip": {"path": str(clip), "seconds": seconds, "fps": fps, "size": [1280, 720], "scored_scenes": scored}}

    log.info("bench-runtime: real-time run")
    res, st, _, backend = _pipeline_run(b, f"file://{clip}?realtime=1", prefer, precision, "latest")
    lat = st["latency_ms"]
    work_ms = (lat["preprocess"]["p95"] or 0) + (lat["inference"]["p95"] or 0)
    out["realtime"] = {"backend": backend, "stats": st, "pointing_acc": pointing_of(res, boxes, res[0][0]) if res else None}
    out["overhead_ratio"] = round(lat["capture_to_result"]["p95"] / work_ms, 3) if work_ms else None
    out["drop_rate"] = st["drop_rate"]
    out["skew_ms_p95"] = lat["skew"]["p95"]
    out["frame_ms"] = round(1e3 / fps, 2)

    log.info("bench-runtime: offline run (as fast as possible)")
    res, st, elapsed, _ = _pipeline_run(b, f"file://{clip}", prefer, precision, "block")
    runtime = {
        "frames": st["frames_out"],
        "fps": round(st["frames_out"] / elapsed, 2),
        "dropped": st["dropped"],
        "pointing_acc": pointing_of(res, boxes, res[0][0]) if res else None,
    }
    out["offline"] = runtime
    if teacher:
        log.info("bench-runtime: baseline (OpenCV loop + eager teacher)")
        base = _baseline(clip, teacher, boxes)
        out["baseline"] = base
        out["speedup_vs_baseline"] = round(runtime["fps"] / base["fps"], 2)
        out["decode_only"] = _decode_only(clip, (b.contract.image.height, b.contract.image.width))
        out["speedup_ceiling_decode"] = round(out["decode_only"]["fps"] / base["fps"], 2)
        out["pointing_delta_vs_baseline"] = round(runtime["pointing_acc"] - base["pointing_acc"], 4)
    if soak_s:
        out.update(_soak(b, clip, soak_s, prefer, precision))
    return out


def _soak(b, clip: Path, soak_s: float, prefer, precision) -> dict:
    log.info("bench-runtime: %.0f s soak on a looping real-time source", soak_s)
    from edge_sdk.runtime.pipeline import Pipeline

    samples = []
    pipe = Pipeline.from_bundle(b, f"file://{clip}?realtime=1&loop=1", task="localize", prefer=prefer, precision=precision)
    pipe.start()
    t_end = time.monotonic() + soak_s
    while time.monotonic() < t_end:
        time.sleep(min(5.0, soak_s / 20))
        samples.append(_rss_mb())
    st = pipe.stop()
    warm = samples[max(0, len(samples) // 10 - 1)]
    soak = {"seconds": soak_s, "rss_mb_after_warmup": round(warm, 1), "rss_mb_end": round(samples[-1], 1),
            "frames_out": st["frames_out"], "drop_rate": st["drop_rate"]}  # fmt: skip
    return {"soak": soak, "rss_growth": round(samples[-1] / warm - 1, 4)}


def bench_runtime(
    bundle,
    *,
    seconds: int = 60,
    fps: int = 30,
    prefer: str | None = None,
    precision: str | None = None,
    teacher: str | None = "teacher",
    soak_s: float = 0.0,
    fsdd=None,
    mnist=None,
    workdir=None,
    streams: int | str | None = None,
    stream_seconds: float = 20.0,
    single: bool = True,
) -> dict:
    """Every part of the module's docstring: 1-3 with ``single``, 4 always, 5 with ``streams``."""
    from edge_sdk.bundle import read_bundle
    from edge_sdk.export.machine import machine_facts
    from edge_sdk.media.clipfile import write_clip
    from edge_sdk.media.corpora import default_data_dir
    from edge_sdk.runtime.loadtest import prepare_clips

    b = read_bundle(bundle)
    work = Path(workdir or tempfile.mkdtemp(prefix="edge_sdk_bench_"))
    out: dict = {"bundle": str(b.folder), "machine": machine_facts()}
    if single:
        out.update(_single_stream(b, seconds, fps, prefer, precision, teacher, soak_s, fsdd, mnist, work))
    data = default_data_dir()
    clips = prepare_clips(data / "video" if data else None, work)
    if not clips:  # no real clips on this machine: generated scenes at the same size and rate
        log.warning("bench-runtime: ../shared/data/video is absent: the streams are generated AV-Digits clips")
        clips = [write_clip(work / "scenes360p25.mp4", b.contract, seconds=20, fps=25, size=(640, 360), fsdd=fsdd, mnist=mnist)]
    log.info("bench-runtime: footprint (a fresh process without torch)")
    out["footprint"] = footprint(b.folder, f"file://{clips[0]}?realtime=1&loop=1", prefer=prefer, precision=precision)
    out["rss_mb"], out["cold_start_s"] = out["footprint"]["rss_mb"], out["footprint"]["cold_start_s"]
    if streams is not None:
        out["streams"] = bench_streams(b.folder, clips, streams, seconds=stream_seconds, prefer=prefer, precision=precision)
        out["max_streams"] = out["streams"]["max_streams"]
    return out
