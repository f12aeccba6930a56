"""``edge-sdk pipeline``: every stage in one go, resumable (:mod:`edge_sdk.toolchain.workflow`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_sdk.toolchain.args import Command, data_args, model_args, model_options, resolve_data

__all__ = ["COMMANDS"]


def run_pipeline(args) -> int:
    from edge_sdk.toolchain.workflow import STAGES, load_pipeline
    from edge_sdk.toolchain.workflow import run_pipeline as run_all

    fsdd, mnist = resolve_data(args)
    recipe = load_pipeline(args.recipe)
    recipe.allow_mismatch = recipe.allow_mismatch or args.allow_mismatch
    state = run_all(recipe, args.out, fsdd, mnist, progress=not args.quiet, user=model_options(args), videos=args.videos)
    for name in STAGES:
        print(f"{name:<8} {'done' if state.get(name, {}).get('done') else 'not done'}  {state.get(name, {}).get('seconds', '-')} s")
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def pipeline_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", default="avdigits", help="a pipeline recipe: avdigits (the shipped models' schedule), smoke, or a .toml path")
    p.add_argument("--out", required=True, help="run folder: teacher/, student/, calib/, bundle/, bench.*, report.md, state.json")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--allow-mismatch", action="store_true", help="keep a bundle whose parity missed its tolerance (recorded in the manifest)")
    p.add_argument("--videos", help="a folder of your clips (with sound): calibration pairs and parity inputs are cut from them")
    model_args(p, positional=False)
    data_args(p)


COMMANDS = (
    Command(
        "pipeline",
        run_pipeline,
        pipeline_arguments,
        "Pretrain -> distill -> calibrate -> quantize + export -> bench in one go, resumable, one report.",
        "edge-sdk pipeline --recipe avdigits --out runs/pipeline\n"
        "  edge-sdk pipeline --model my_model.py:build --weights my.pt --contract my.toml --videos clips/ --out runs/mine",
        needs="export",
        logs=("edge_sdk.toolchain.workflow", "edge_sdk.export.engine"),
    ),
)
