"""``edge-sdk shard``: a folder of clips into WebDataset tar shards for ``pretrain --shards``
(:func:`edge_sdk.data.shard_writer.write_shards`)."""

from __future__ import annotations

import argparse
import json

from edge_sdk.toolchain.args import COUNT, Command, number

__all__ = ["COMMANDS"]


def _contract(args):
    """The contract the shards are cut for: ``--contract FILE.toml`` (a model of your own) or a registry ``--spec``."""
    if args.contract:
        from edge_sdk.contract_file import read_contract_file

        return read_contract_file(args.contract)
    from edge_sdk.spec import get_spec

    return get_spec(args.spec).contract()


def run_shard(args) -> int:
    from edge_sdk.data.shard_writer import ShardOptions, write_shards

    contract = _contract(args)
    frames = contract.image.frames
    fps = args.fps if args.fps is not None else (max(10.0, contract.image.frame_rate) if frames > 1 else 10.0)
    opts = ShardOptions(fps, args.jpeg_quality, args.max_clip_seconds, args.clips_per_shard, args.shard_mb)
    index = write_shards(args.videos, args.out, contract, opts, progress=not args.quiet, jobs=args.jobs)
    print(json.dumps({"out": args.out, **index["totals"], "skipped_files": index["skipped"]}, indent=2))
    return 0


def shard_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--videos", required=True, help="folder of clips with sound (mp4, webm, mkv, mov, ...; searched recursively)")
    p.add_argument("--out", required=True, help="new (or empty) folder for shard-NNNNNN.tar and index.json")
    model = p.add_mutually_exclusive_group()
    model.add_argument(
        "--spec", default="avnet_t.avdigits", help="the model the shards are for: its audio rate, image size (default avnet_t.avdigits)"
    )
    model.add_argument("--contract", help="or your own model's contract .toml (README: Bring your own checkpoint)")
    p.add_argument("--fps", type=number(float, 0.5, 120), help="frames kept per second (default 10, or the model's frame rate for frame stacks)")
    p.add_argument("--max-clip-seconds", type=number(float, 1), default=60.0, help="cut longer clips into pieces of this length (default 60)")
    p.add_argument("--clips-per-shard", type=number(int, 0), default=0, help="start a new shard after this many clips (default 0: by size only)")
    p.add_argument("--shard-mb", type=number(float, 1), default=256.0, help="start a new shard before this size in MB (default 256)")
    p.add_argument("--jpeg-quality", type=number(int, 10, 100), default=90, help="JPEG quality of the frames (default 90)")
    p.add_argument("--jobs", type=COUNT, default=1, help="clips decoded at once, in as many processes (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


COMMANDS = (
    Command(
        "shard",
        run_shard,
        shard_arguments,
        "Write a folder of clips as WebDataset tar shards for pretrain --shards (audio at the model's rate, JPEG frames).",
        "edge-sdk shard --videos my_clips/ --out shards/ --spec avnet_t.avdigits --jobs 4",
        needs="train",
        logs=("edge_sdk.data.shard_writer",),
    ),
)
