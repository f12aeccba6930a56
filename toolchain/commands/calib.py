"""``edge-sdk calib``: an INT8 calibration set, as ``.npz`` pairs (:mod:`edge_sdk.media.pairs`).

- by default, AV-Digits *training* scenes (:func:`edge_sdk.quant.calib.write_calib_set`);
- with ``--video URI`` (and ``--audio URI``), recorded from any source the runtime opens: this
  machine's camera and microphone, a network camera, a file (:func:`edge_sdk.runtime.record.record_pairs`),
  so INT8 is calibrated on what the device really sees. ``edge-sdk calibrate`` is the same
  command under its former name.
"""

from __future__ import annotations

import argparse
import json
import sys

from edge_sdk.errors import EdgeSDKError
from edge_sdk.toolchain.args import Command, data_args, number, resolve_data

__all__ = ["COMMANDS"]


def run_calib(args) -> int:
    from edge_sdk.spec import get_spec

    if args.video:
        return _record(args, get_spec(args.spec))
    if args.command == "calibrate":
        raise EdgeSDKError(
            "edge-sdk calibrate records from a source: --video is missing",
            "pass --video cam://0 (and --audio mic://default), or use edge-sdk calib --out DIR for AV-Digits pairs",
        )
    from edge_sdk.quant.calib import write_calib_set

    fsdd, mnist = resolve_data(args)
    out = write_calib_set(args.out, get_spec(args.spec), args.n, fsdd, mnist, seed=args.seed)
    print(f"wrote {args.n} calibration pairs (training speakers and images) to {out}")
    return 0


def _record(args, spec) -> int:
    from edge_sdk.media.pairs import MIN_CLIPS
    from edge_sdk.runtime.record import record_pairs

    res = record_pairs(args.out, spec, args.video, args.audio, args.seconds, args.every_ms, append=args.append)
    print(json.dumps(res, indent=2))
    print(
        f"edge-sdk {args.command}: wrote {res['kept']} pairs to {res['out']} ({res['total']} in all; {res['silent']} silent windows "
        f"skipped); use it with --calib {res['out']}",
        file=sys.stderr,
    )
    if res["interrupted"]:
        raise KeyboardInterrupt
    if res["total"] < MIN_CLIPS:
        print(
            f"edge-sdk {args.command}: only {res['total']} pairs; INT8 needs at least {MIN_CLIPS}: record longer (--seconds), "
            "more often (--every-ms), or add more with --append",
            file=sys.stderr,
        )
        return 2
    return 0


def calib_arguments(p: argparse.ArgumentParser) -> None:
    from edge_sdk.media.pairs import MIN_CLIPS

    p.add_argument("--out", required=True, help="new folder for the .npz pairs (edge-sdk quantize/export --calib)")
    p.add_argument("--spec", default="avnet_s.avdigits", help="spec whose preprocessing the pairs follow (all shipped specs share it)")
    g = p.add_argument_group("AV-Digits training scenes (the default)")
    g.add_argument("--n", type=number(int, MIN_CLIPS), default=256, help=f"pairs to write (default 256; at least {MIN_CLIPS} are needed)")
    g.add_argument("--seed", type=int, default=11)
    data_args(g)
    g = p.add_argument_group("recorded from a live source (a camera and microphone, a network camera, a file)")
    g.add_argument("--video", help="video source URI (cam://0, v4l2:///dev/video0, csi://0, http://..., file://...)")
    g.add_argument("--audio", help="audio source URI (mic://default; default: the video source's own sound)")
    g.add_argument("--seconds", type=number(float, 1), default=60.0, help="how long to record (default 60)")
    g.add_argument("--every-ms", type=number(float, 1), default=250.0, help="keep one pair every this many ms (default 250)")
    g.add_argument("--append", action="store_true", help="add to the pairs already in --out (checked against --spec)")


COMMANDS = (
    Command(
        "calib",
        run_calib,
        calib_arguments,
        "Write an INT8 calibration set: AV-Digits training pairs, or pairs recorded from a live source (--video).",
        "edge-sdk calib --out runs/calib --n 256   # or: edge-sdk calib --video cam://0 --audio mic://default --seconds 60 --out runs/calib_live",
        logs=("edge_sdk.runtime.record",),
        aliases=("calibrate",),
        live=lambda args: bool(args.video),
    ),
)
