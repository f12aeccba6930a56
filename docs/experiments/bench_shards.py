"""Scale-out pretraining, measured (issue 24): data-loader throughput from shards vs from the video
folder, and training samples/s with one vs two processes, side by side in one run.

    .venv/bin/python docs/experiments/bench_shards.py --videos ../shared/data/video --out runs/bench_shards

Prints two Markdown tables (the README's "Scale-out pretraining" numbers) and the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from edge_sdk.data.shard_writer import ShardOptions, write_shards
from edge_sdk.data.video import VideoFolderDataset
from edge_sdk.spec import get_spec
from edge_sdk.train.shard_batches import ShardBatches, ShardSource


def loader_rows(videos: Path, shards: Path, spec, batch: int, epochs: int) -> list[tuple]:
    rows = []
    t = time.perf_counter()
    folder = VideoFolderDataset(videos, spec)
    decode = time.perf_counter() - t
    n_clips = len(folder.files)
    rows.append(("video folder: decode (every frame, once per run, into memory)", n_clips / decode, len(folder) / decode))
    t = time.perf_counter()
    for _ in range(epochs):
        for j in range(len(folder) // batch):
            items = [folder[j * batch + i] for i in range(batch)]
            torch.from_numpy(np.stack([it["image"] for it in items])), torch.from_numpy(np.stack([it["wave"] for it in items]))
    took = time.perf_counter() - t
    windows = epochs * (len(folder) // batch) * batch
    rows.append(("video folder: later epochs (from memory)", windows / len(folder) * n_clips / took, windows / took))
    index = json.loads((shards / "index.json").read_text())
    per_clip = index["totals"]["frames"] / index["totals"]["clips"]
    for workers in (0, 1, 2):
        data = ShardBatches(ShardSource(str(shards), workers=workers), spec, batch, 0, 0, 1, torch.device("cpu"), shards.parent / "reads")
        steps = data.steps_per_epoch * epochs
        t = time.perf_counter()
        for step in range(steps):
            data.batch(step)
        took = time.perf_counter() - t
        data.close()
        rows.append((f"shards, streamed ({workers} loader workers)", steps * batch / per_clip / took, steps * batch / took))
    return rows


def train_rate(cmd: list[str], out: Path, env: dict) -> tuple[float, float]:
    """Median samples/s over the steps after the first 5, and the wall time, of one training run."""
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(r["samples_per_s"] for r in rows[5:]), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", default="../shared/data/video")
    ap.add_argument("--out", default="runs/bench_shards")
    ap.add_argument("--recipe", default="teacher")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=3, help="loader epochs measured")
    args = ap.parse_args()
    out, spec = Path(args.out), get_spec("avnet_t.avdigits")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    t = time.perf_counter()
    index = write_shards(args.videos, out / "shards", spec.contract(), ShardOptions(clips_per_shard=1), progress=False)
    took = time.perf_counter() - t
    print(f"load before: {os.getloadavg()}")
    tot = index["totals"]
    print(f"\nedge-sdk shard: {tot['used']} clips, {tot['frames']} windows at 10 fps in {took:.1f} s ({tot['used'] / took:.2f} clips/s)\n")
    print("| data loader (batch 64, avnet_t's 96 px, 1 s of 16 kHz) | clips/s | windows/s |\n|---|---:|---:|")
    for name, clips, windows in loader_rows(Path(args.videos), out / "shards", spec, 64, args.epochs):
        print(f"| {name} | {clips:.2f} | {windows:.0f} |")
    from edge_sdk.recipe import recipe_path

    recipe = out / f"{args.recipe}_log_every_step.toml"  # samples/s of every step
    recipe.write_text(recipe_path(args.recipe).read_text().replace("[train]\n", "[train]\nlog_every = 1\n", 1))
    base = ["-m", "edge_sdk", "pretrain", "--recipe", str(recipe), "--shards", str(out / "shards"), "--max-steps", str(args.steps), "--quiet"]
    single = [sys.executable, *base, "--out", str(out / "p1")]
    double = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *base, "--out", str(out / "p2")]
    print(f"\n| training ({args.recipe} recipe, global batch 64, {args.steps} steps) | samples/s (median) | wall s |\n|---|---:|---:|")
    for name, cmd, where, env in (
        ("1 process, 1 thread", single, out / "p1", {**os.environ, "OMP_NUM_THREADS": "1"}),
        ("1 process, 2 threads", single, out / "p1", {**os.environ, "OMP_NUM_THREADS": "2"}),
        ("2 processes, torchrun --nproc-per-node 2 (1 thread each, gloo)", double, out / "p2", {**os.environ, "OMP_NUM_THREADS": "1"}),
    ):
        rate, wall = train_rate(cmd, where, env)
        print(f"| {name} | {rate:.1f} | {wall:.0f} |")
    print(f"\nload after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
