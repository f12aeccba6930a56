"""``edge-sdk folds``: every model trained with each speaker held out in turn (:mod:`edge_sdk.train.folds`)."""

from __future__ import annotations

import argparse

from edge_sdk.errors import EdgeSDKError
from edge_sdk.toolchain.args import Command, data_args, resolve_data

__all__ = ["COMMANDS"]


def run_folds(args) -> int:
    from edge_sdk.train.folds import FOLDS_DIR, SPEAKERS, FoldPlan, train_folds

    fsdd, mnist = resolve_data(args)
    speakers = tuple(args.speakers.split(",")) if args.speakers else SPEAKERS
    if unknown := [s for s in speakers if s not in SPEAKERS]:
        raise EdgeSDKError(f"--speakers: {', '.join(unknown)} not in the corpus", f"use some of: {', '.join(SPEAKERS)}")
    finetune = args.finetune if args.finetune is not None else ("teacher_finetune" if args.teacher == "teacher" else "none")
    students = tuple(s for s in args.students.split(",") if s)
    plan = FoldPlan(args.teacher, students, finetune=None if finetune == "none" else finetune, precision=args.precision)
    done = train_folds(args.out, speakers, fsdd, mnist, plan, progress=not args.quiet, shipped=None if args.fresh else FOLDS_DIR)
    for speaker, models in done.items():
        print(f"without {speaker}: " + ", ".join(models))
    print(f"evaluate: edge-sdk eval MODEL --folds {args.out}")
    return 0


def folds_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="folds folder: <speaker>/<spec>.safetensors per held-out speaker (runs/ inside)")
    p.add_argument("--speakers", help="held-out speakers, comma-separated (default: all four)")
    p.add_argument("--teacher", default="teacher", help="pretraining recipe of each fold's teacher (default: teacher)")
    p.add_argument("--finetune", help="recipe fine-tuning each fold's teacher from its weights, as the shipped teacher was "
                   "(default: teacher_finetune after the teacher recipe, none after another; 'none': no second stage)")  # fmt: skip
    p.add_argument("--students", default="distill_s,distill_xs", help="distillation recipes, each from the fold's teacher")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), help="override every recipe's [train] precision (fp32: CPUs without bf16 units)")
    p.add_argument("--fresh", action="store_true", help="train every fold model, even one that edge_sdk/assets/folds ships "
                   "(by default a fold model shipped by the same recipe settings is copied into --out, not trained again)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    data_args(p)


COMMANDS = (
    Command(
        "folds",
        run_folds,
        folds_arguments,
        "Train the teacher and students once per held-out speaker (speaker folds), resumable.",
        "edge-sdk folds --out runs/folds && edge-sdk eval student_s --folds runs/folds",
        needs="train",
        logs=("edge_sdk.train",),
    ),
)
