"""``edge-sdk pretrain`` and ``edge-sdk distill``: the trainer (:mod:`edge_sdk.train.trainer`)."""

from __future__ import annotations

import argparse
import json
import logging
import os

from edge_sdk.errors import EdgeSDKError
from edge_sdk.toolchain.args import COUNT, Command, data_args, number, resolve_data

SHARDS_HELP = (
    "stream training windows from shards written by edge-sdk shard: a folder, a glob (shards/shard-*.tar), a brace "
    "pattern (shards/shard-{000000..000099}.tar) or a URL WebDataset opens (pipe:CMD, https://...); split over "
    "nodes, processes and loader workers, shuffled, resumed exactly. For many clips or many machines; --videos "
    "is for a small folder"
)

__all__ = ["COMMANDS"]


def _overrides(recipe, args):
    if args.max_minutes is not None:
        recipe.train.max_minutes = args.max_minutes
    if args.epochs is not None:
        recipe.train.epochs = args.epochs
    if args.precision is not None:
        recipe.train.precision = args.precision
    if args.init is not None:
        recipe.model.init = args.init
    if args.videos and args.shards:
        raise EdgeSDKError("--videos and --shards both name the training data", "give one: --shards for shards, --videos for a small folder of clips")
    if args.videos:
        recipe.data.kind, recipe.data.video_dir = "video", args.videos
    recipe.validate(f"{args.recipe} with the command-line overrides")
    return recipe


def _elastic_warning() -> None:
    """Under ``torchrun --max-restarts N`` with the rendezvous store shared with the workers (torch's
    default), a restarted group can read the previous attempt's addresses and fail to connect
    (pytorch/pytorch#135712); setting TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 for torchrun avoids it."""
    restarts = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0)
    shared = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    if restarts > 0 and shared and os.environ.get("RANK", "0") == "0":
        logging.getLogger("edge_sdk").warning(
            "torchrun --max-restarts with a shared rendezvous store: restarts can fail to reconnect "
            "(pytorch/pytorch#135712); run torchrun with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1"
        )


def _options(args) -> dict:
    """The trainer's keyword arguments the options set."""
    _elastic_warning()
    kw = {"device": args.device, "resume": {"yes": True, "auto": "auto"}.get(args.resume, False), "progress": not args.quiet}
    if args.max_steps is not None:
        kw["max_steps"] = args.max_steps
    if args.shards:
        from edge_sdk.train.shard_batches import ShardSource

        kw["shards"] = ShardSource(args.shards, args.shard_index, args.loader_workers, args.shuffle_buffer)
    return kw


def run_pretrain(args) -> int:
    from edge_sdk.recipe import load_recipe
    from edge_sdk.train.trainer import pretrain

    recipe = _overrides(load_recipe(args.recipe), args)
    fsdd, mnist = resolve_data(args)
    report = pretrain(recipe, args.out, fsdd, mnist, **_options(args))
    print(json.dumps(report, indent=2))
    return 0


def run_distill(args) -> int:
    from edge_sdk.recipe import load_recipe
    from edge_sdk.spec import get_spec
    from edge_sdk.train.trainer import distill

    recipe = _overrides(load_recipe(args.recipe), args)
    if args.teacher:
        recipe.distill.teacher = args.teacher
    if args.student:
        recipe.model.spec = get_spec(args.student).name
    fsdd, mnist = resolve_data(args)
    report = distill(recipe, args.out, fsdd, mnist, **_options(args))
    print(json.dumps(report, indent=2))
    return 0


def _training(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="run folder: checkpoints, metrics.jsonl, loss.png, model.safetensors")
    p.add_argument(
        "--resume",
        nargs="?",
        const="yes",
        choices=("yes", "auto"),
        help="continue the run in --out from its last checkpoint; '--resume auto': continue one if there is one, else start it "
        "(for torchrun --max-restarts: restarted processes pick up the last checkpoint)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--max-minutes", type=number(float, 0.1), help="stop (with a checkpoint) after this many minutes")
    p.add_argument("--epochs", type=COUNT, help="override the recipe's [train] epochs")
    p.add_argument("--max-steps", type=COUNT, help="train at most this many steps (the learning-rate schedule spans them)")
    p.add_argument("--init", metavar="MODEL", help="fine-tune: start from this checkpoint or shipped model (same spec as the recipe's); "
                   "overrides the recipe's [model] init")  # fmt: skip
    p.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        help="override the recipe's [train] precision (fp32 on CPUs without AMX or AVX512-BF16, where bf16 autocast is several times slower)",
    )
    p.add_argument("--videos", help="train on a small folder of your own clips with sound (mp4, webm, mkv, ...), decoded into memory")
    s = p.add_argument_group("shards (README: Scale-out pretraining)")
    s.add_argument("--shards", metavar="SHARDS", help=SHARDS_HELP)
    s.add_argument("--shard-index", metavar="PATH_OR_URL", help="the shards' index.json where it is not beside them (needed for pipe:)")
    s.add_argument("--loader-workers", type=number(int, 0), default=1, help="loader processes per training process (default 1; 0: none)")
    s.add_argument("--shuffle-buffer", type=COUNT, default=1000, help="windows in each worker's shuffle buffer (default 1000)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    data_args(p)


def pretrain_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", required=True, help="a shipped recipe name (teacher, ...) or a .toml path")
    _training(p)


def distill_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", help="teacher checkpoint or shipped model name (default: the recipe's [distill] teacher)")
    p.add_argument("--student", help="student spec: student_s, student_xs or a registered name (default: the recipe's)")
    p.add_argument("--recipe", default="distill_s", help="a shipped recipe name (distill_s, distill_xs) or a .toml path")
    _training(p)


COMMANDS = (
    Command(
        "pretrain",
        run_pretrain,
        pretrain_arguments,
        "Pretrain audio-visual towers with self-supervised objectives.",
        "edge-sdk pretrain --recipe teacher --fsdd ../shared/data/fsdd/recordings --mnist ../shared/data/mnist --out runs/teacher",
        needs="train",
    ),
    Command(
        "distill",
        run_distill,
        distill_arguments,
        "Distil a teacher into a small student, without labels.",
        "edge-sdk distill --teacher avnet_t.avdigits --student student_s --recipe distill_s --out runs/student_s",
        needs="train",
    ),
)
