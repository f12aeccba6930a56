"""``edge-sdk quantize`` (the INT8 policy, :mod:`edge_sdk.export.quantize`) and ``edge-sdk export``
(every target, validated, into a bundle: :mod:`edge_sdk.export.engine`)."""

from __future__ import annotations

import argparse

from edge_sdk.toolchain.args import COUNT, MIN_OPSET, NONNEG, Command, data_args, model_args, model_options, opset, resolve_data

__all__ = ["COMMANDS"]

METHODS = ["minmax", "percentile", "entropy"]


def run_quantize(args) -> int:
    from edge_sdk.eval.evaluate import EvalConfig
    from edge_sdk.export.quantize import format_quantize_report, quantize
    from edge_sdk.export.targets import TARGETS

    fsdd, mnist = resolve_data(args)
    targets = list(TARGETS) if args.target == "all" else args.target.split(",")
    report = quantize(
        args.model,
        targets,
        args.calib,
        args.out,
        method=args.method,
        teacher=args.teacher or None,
        fsdd=fsdd,
        mnist=mnist,
        eval_cfg=EvalConfig(scenes=args.scenes),
        threshold=args.threshold,
        budget=args.budget,
        qat=args.qat,
        fp16=not args.no_fp16,
        videos=args.videos,
        **model_options(args),
    )
    print(format_quantize_report(report))
    print(f"bundle, report.json and report.md in {args.out}")
    return 0


def run_export(args) -> int:
    from edge_sdk.eval.evaluate import EvalConfig
    from edge_sdk.export.engine import export_bundle
    from edge_sdk.export.report import format_export_report

    fsdd, mnist = resolve_data(args)
    if args.device:  # the profile picks what the target runs, unless --format/--precision say otherwise
        from edge_sdk.profiles import get_profile

        prof = get_profile(args.device)
        args.format = ",".join(prof.formats) if args.format == "all" else args.format
        args.precision = ",".join(prof.precisions) if args.precision == "all" else args.precision
    report = export_bundle(
        args.model,
        args.out,
        args.format,
        args.precision,
        calib=args.calib,
        method=args.method,
        fsdd=fsdd,
        mnist=mnist,
        eval_cfg=EvalConfig(scenes=args.scenes),
        opset=args.opset,
        allow_mismatch=args.allow_mismatch,
        zip_bundle=args.zip,
        name=args.name,
        videos=args.videos,
        task_metrics=args.task_metrics,
        **model_options(args),
    )
    print(format_export_report(report))
    print(f"bundle in {args.out}" + (f" and {report['zip']}" if report.get("zip") else ""))
    return 0


def quantize_arguments(p: argparse.ArgumentParser) -> None:
    model_args(p)
    p.add_argument("--videos", help="a folder of your own clips: parity is measured on pairs cut from them (default: AV-Digits scenes)")
    p.add_argument("--target", default="all", help="onnxruntime, xnnpack, tensorrt, a comma list, or all")
    p.add_argument("--calib", required=True, help="calibration folder: .npz pairs (edge-sdk calib) or clips with sound")
    p.add_argument("--method", default="percentile", choices=METHODS, help="activation calibration (default percentile)")
    p.add_argument("--out", required=True, help="new bundle folder: model files, manifest.json, report.json, report.md")
    p.add_argument("--teacher", default="avnet_t.avdigits", help="teacher row of the report ('' to skip)")
    p.add_argument("--qat", default="auto", choices=["auto", "always", "off"], help="QAT when PTQ loses more than --budget (default auto)")
    p.add_argument("--budget", type=NONNEG, default=0.01, help="largest allowed INT8 drop on pointing_acc, a2i_r1, probe_audio_acc (default 0.01)")
    p.add_argument("--threshold", type=NONNEG, default=0.02, help="sensitivity above which a layer stays float (1 - cosine, default 0.02)")
    p.add_argument("--scenes", type=COUNT, default=500, help="eval scenes per row (default 500)")
    p.add_argument("--no-fp16", action="store_true", help="skip the FP16 graphs for GPU targets")
    data_args(p)


def export_arguments(p: argparse.ArgumentParser) -> None:
    model_args(p)
    p.add_argument("--videos", help="a folder of your own clips: parity is measured on pairs cut from them (default: AV-Digits scenes)")
    p.add_argument(
        "--task-metrics",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure the AV-Digits task metrics per row (default: for our models only; they mean nothing for others)",
    )
    p.add_argument("--format", default="all", help="onnx, tensorrt, executorch, a comma list, or all (default)")
    p.add_argument("--precision", default="all", help="fp32, fp16, int8, a comma list, or all (default)")
    p.add_argument("--calib", help="calibration folder for int8 (edge-sdk calib --out DIR)")
    p.add_argument("--method", default="percentile", choices=METHODS, help="int8 activation calibration")
    p.add_argument("--out", required=True, help="new bundle folder: model files, manifest.json, report.json, report.md")
    p.add_argument("--zip", action="store_true", help="also write OUT.zip")
    p.add_argument("--device", help="device profile: jetson-orin, jetson-nano, desktop-gpu, android-arm64, laptop-cpu (picks formats and precisions)")
    p.add_argument("--name", help="bundle name in the manifest (default SPEC-bundle)")
    p.add_argument("--opset", type=opset, help=f"ONNX opset, {MIN_OPSET} to the newest the installed onnx knows (default 18)")
    p.add_argument("--scenes", type=COUNT, default=500, help="eval scenes per row (default 500)")
    p.add_argument("--allow-mismatch", action="store_true", help="keep a bundle whose parity missed its tolerance (recorded in the manifest)")
    data_args(p)


COMMANDS = (
    Command(
        "quantize",
        run_quantize,
        quantize_arguments,
        "INT8 PTQ (and QAT when needed) per target, with sensitivity analysis and a report.",
        "edge-sdk quantize runs/student_s/model.safetensors --target all --calib runs/calib --out runs/student_s_int8",
        needs="export",
        logs=("edge_sdk.export.quantize",),
    ),
    Command(
        "export",
        run_export,
        export_arguments,
        "Export to ONNX, TensorRT and ExecuTorch: a bundle validated on real data.",
        "edge-sdk export student_s --format onnx,executorch --precision fp32,int8 --calib runs/calib --out runs/bundle --zip",
        needs="export",
        logs=("edge_sdk.export.engine",),
    ),
)
