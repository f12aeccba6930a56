"""``edge-sdk eval``: every metric on speakers and images a model never trained on
(:mod:`edge_sdk.eval.evaluate`), of a checkpoint in PyTorch or of a bundle through the runner
``run`` would pick on this machine."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_sdk.errors import EdgeSDKError
from edge_sdk.outputs import atomic_write_text
from edge_sdk.toolchain.args import COUNT, Command, data_args, model_args, model_options, number, resolve_data, writable

__all__ = ["COMMANDS"]


def _is_bundle(ref: str) -> bool:
    from edge_sdk.bundle import shipped_bundles

    return Path(ref).is_dir() or ref.endswith(".zip") or (not Path(ref).exists() and ref in shipped_bundles())


def _bundle(args, fsdd, mnist) -> dict:
    """Metrics of a bundle through its own runtime: what ``run`` would load here (``--backend`` /
    ``--precision`` narrow the choice)."""
    from edge_sdk.bundle import read_bundle
    from edge_sdk.eval.evaluate import EvalConfig, evaluate
    from edge_sdk.runtime.backends import open_towers, pick_backend

    bundle = read_bundle(args.model)
    choice = pick_backend(bundle, args.backend, args.precision)
    runner = open_towers(bundle, choice.backend, choice.precision, trusted=(args.factory,) if args.factory else ())
    print(f"evaluating {choice.backend} {choice.precision} of {args.model} (--backend/--precision choose another)", file=sys.stderr)
    speakers = tuple(args.test_speakers.split(",")) if args.test_speakers else EvalConfig.test_speakers
    res = evaluate(runner, fsdd, mnist, EvalConfig.scaled(args.scenes, k=args.k, seed=args.seed, test_speakers=speakers), heatmap_png=args.heatmaps)
    return {**res, "model": args.model, "backend": choice.backend, "precision": choice.precision}


def _checkpoint(args, fsdd, mnist) -> dict:
    """Metrics of a checkpoint or shipped model (or the user's ``--model``) in PyTorch FP32."""
    from edge_sdk.eval.evaluate import EvalConfig, evaluate, map_offset_of
    from edge_sdk.models.loading import open_model

    if (args.backend or "torch") != "torch" or (args.precision or "fp32") != "fp32":
        raise EdgeSDKError(
            f"--backend {args.backend or 'torch'} --precision {args.precision or 'fp32'}: {args.model} is a checkpoint, "
            "which runs in PyTorch FP32 only",
            f"export it to a bundle first (edge-sdk export {args.model} --out DIR), then edge-sdk eval DIR with --backend/--precision",
        )
    opened = open_model(args.model, **model_options(args))  # a name that is nothing is refused before torch loads
    model, meta = opened.model, opened.meta
    from edge_sdk.models.torch_runner import TorchTowers

    recipe_speakers = (meta.get("recipe") or {}).get("data", {}).get("test_speakers", ["george"])
    speakers = tuple(args.test_speakers.split(",")) if args.test_speakers else tuple(recipe_speakers)
    if opened.ours and "map_offset_px" not in meta:  # untrained or older checkpoints: measured, as export does
        model.map_offset = tuple(map_offset_of(model, fsdd, mnist, test_speakers=speakers))
    cfg = EvalConfig.scaled(args.scenes, k=args.k, seed=args.seed, test_speakers=speakers)
    return {**evaluate(TorchTowers(model), fsdd, mnist, cfg, heatmap_png=args.heatmaps), "model": opened.ref}


LOWER_IS_BETTER = ("offset_mae_ms",)


def _folds(args, fsdd, mnist) -> tuple[dict, dict]:
    """Each fold's copy of the model on its own held-out speaker; the rows and the summary
    (mean and worst fold of every metric)."""
    import numpy as np

    from edge_sdk.eval.evaluate import METRIC_KEYS, EvalConfig, evaluate
    from edge_sdk.models.loading import open_model
    from edge_sdk.models.torch_runner import TorchTowers
    from edge_sdk.train.folds import fold_models

    if fsdd is None:
        raise EdgeSDKError("--folds holds out real speakers", "give --fsdd and --mnist (or have ../shared/data), not --synthetic")
    spec = open_model(args.model).model.spec  # a shipped name or a checkpoint: its architecture names the folds
    rows = {}
    for speaker, path in fold_models(spec.name, None if args.folds is True else args.folds).items():
        print(f"fold {speaker}: {path}", file=sys.stderr)
        model = open_model(str(path)).model
        cfg = EvalConfig.scaled(args.scenes, k=args.k, seed=args.seed, test_speakers=(speaker,))
        rows[f"{spec.name} without {speaker}"] = evaluate(TorchTowers(model), fsdd, mnist, cfg)
    keys = [k for k in METRIC_KEYS if all(k in r for r in rows.values())]
    values = {k: np.array([r[k] for r in rows.values()]) for k in keys}
    summary = {"mean": {k: float(v.mean()) for k, v in values.items()},
               "worst": {k: float(v.max() if k in LOWER_IS_BETTER else v.min()) for k, v in values.items()}}  # fmt: skip
    return rows, summary


def run_eval(args) -> int:
    from edge_sdk.eval.evaluate import format_table

    writable(json=args.json, heatmaps=args.heatmaps)
    fsdd, mnist = resolve_data(args)
    if fsdd is None:
        print(
            "evaluating on generated scenes (shapes and tones), not FSDD + MNIST: these numbers are not comparable "
            "with the shipped metrics; give --fsdd and --mnist for those",
            file=sys.stderr,
        )
    if args.folds:
        if not args.model or _is_bundle(args.model):
            raise EdgeSDKError("--folds evaluates a model's fold copies", "name a shipped model (teacher, student_s, ...) or a checkpoint")
        rows, summary = _folds(args, fsdd, mnist)
        print(format_table({**rows, f"mean of {len(rows)} folds": summary["mean"], "worst fold": summary["worst"]}))
        if args.json:
            atomic_write_text(args.json, json.dumps({"folds": rows, **summary}, indent=2), "--json")
        return 0
    if args.model and _is_bundle(args.model):
        res = _bundle(args, fsdd, mnist)
        name = f"{Path(args.model).name} {res['backend']} {res['precision']}"
    else:
        res = _checkpoint(args, fsdd, mnist)
        name = Path(res["model"]).name
    print(format_table({name: res}))
    if args.json:
        atomic_write_text(args.json, json.dumps(res, indent=2), "--json")
    return 0


def eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", help="a .safetensors checkpoint, a shipped model name (edge-sdk info), or a bundle folder or .zip")
    model_args(p, positional=False)
    p.add_argument("--backend", help="bundles: onnxruntime, tensorrt, executorch or torch (default: what `run` picks on this machine)")
    p.add_argument("--precision", help="bundles: fp32, fp16 or int8")
    p.add_argument("--scenes", type=COUNT, default=500, help="test scenes (default 500)")
    p.add_argument("--k", type=number(int, 1, 10), default=3, help="digits per scene (default 3)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--test-speakers", help="comma-separated held-out speakers (default: the model recipe's)")
    p.add_argument("--folds", nargs="?", const=True, metavar="DIR",
                   help="evaluate the model's copy trained without each speaker on that speaker, with the mean and the worst fold "
                        "(DIR: an edge-sdk folds output; default: the shipped folds)")  # fmt: skip
    p.add_argument("--json", help="write the metrics here")
    p.add_argument("--heatmaps", help="write a PNG of example localization heatmaps here")
    data_args(p)


COMMANDS = (
    Command(
        "eval",
        run_eval,
        eval_arguments,
        "Evaluate a model on speaker- and image-disjoint AV-Digits.",
        "edge-sdk eval avnet_t.avdigits --fsdd ../shared/data/fsdd/recordings --mnist ../shared/data/mnist --json eval.json\n"
        "  edge-sdk eval student_s --folds   # every speaker held out in turn: per-fold rows, mean and worst fold",
        needs="train",
        logs=("edge_sdk.eval",),
    ),
)
