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
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["bench_runtime", "pointing_of"]

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
) -> dict:
    from edge_sdk.bundle import read_bundle
    from edge_sdk.media.clipfile import read_boxes, write_clip

    b = read_bundle(bundle)
    work = Path(workdir or tempfile.mkdtemp(prefix="edge_sdk_bench_"))
    clip = write_clip(work / "clip720p30.mp4", b.contract, seconds=seconds, fps=fps, fsdd=fsdd, mnist=mnist)
    boxes = read_boxes(clip)
    # pointing is scored on the frames whose audio window holds a whole spoken digit: one
    # scene per 2 s, so a 60 s clip resolves pointing to 1/30 = 3.3 points
    scored = sum(1 for box in boxes if box["start_s"] + 1.25 <= seconds)
    out: dict = {"bundle": str(b.folder), "clip": {"path": str(clip), "seconds": seconds, "fps": fps, "size": [1280, 720], "scored_scenes": scored}}

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
        out["soak"] = {
            "seconds": soak_s,
            "rss_mb_after_warmup": round(warm, 1),
            "rss_mb_end": round(samples[-1], 1),
            "frames_out": st["frames_out"],
            "drop_rate": st["drop_rate"],
        }
        out["rss_growth"] = round(samples[-1] / warm - 1, 4)
    return out
