"""``edge-sdk pretrain`` and ``edge-sdk distill``: the trainer (:mod:`edge_sdk.train.trainer`)."""

from __future__ import annotations

import argparse
import json

from edge_sdk.toolchain.args import COUNT, Command, data_args, number, resolve_data

__all__ = ["COMMANDS"]


def _overrides(recipe, args):
    if args.max_minutes is not None:
        recipe.train.max_minutes = args.max_minutes
    if args.epochs is not None:
        recipe.train.epochs = args.epochs
    if args.videos:
        recipe.data.kind, recipe.data.video_dir = "video", args.videos
    recipe.validate(f"{args.recipe} with the command-line overrides")
    return recipe


def run_pretrain(args) -> int:
    from edge_sdk.recipe import load_recipe
    from edge_sdk.train.trainer import pretrain

    recipe = _overrides(load_recipe(args.recipe), args)
    fsdd, mnist = resolve_data(args)
    report = pretrain(recipe, args.out, fsdd, mnist, device=args.device, resume=args.resume, progress=not args.quiet)
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
    report = distill(recipe, args.out, fsdd, mnist, device=args.device, resume=args.resume, progress=not args.quiet)
    print(json.dumps(report, indent=2))
    return 0


def _training(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="run folder: checkpoints, metrics.jsonl, loss.png, model.safetensors")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--max-minutes", type=number(float, 0.1), help="stop (with a checkpoint) after this many minutes")
    p.add_argument("--epochs", type=COUNT, help="override the recipe's [train] epochs")
    p.add_argument("--videos", help="train on a folder of your own clips with sound (mp4, webm, mkv, ...) instead of AV-Digits")
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
