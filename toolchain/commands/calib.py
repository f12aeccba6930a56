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
from edge_sdk.toolchain.args import Command, data_args, model_args, model_options, number, resolve_data

__all__ = ["COMMANDS"]


def _contract(args):
    """The model contract the pairs follow: ``--contract`` (no model needed), ``--model`` (built), or ``--spec``."""
    if args.factory:
        from edge_sdk.models.loading import open_model

        return open_model(**model_options(args)).model.contract
    if args.contract:
        from edge_sdk.contract_file import read_contract_file

        return read_contract_file(args.contract).contract()
    from edge_sdk.spec import get_spec

    return get_spec(args.spec).contract()


def run_calib(args) -> int:
    contract = _contract(args)
    if args.video:
        return _record(args, contract)
    if args.command == "calibrate":
        raise EdgeSDKError(
            "edge-sdk calibrate records from a source: --video is missing",
            "pass --video cam://0 (and --audio mic://default), or use edge-sdk calib --out DIR for AV-Digits pairs",
        )
    from edge_sdk.quant.calib import write_calib_set, write_clip_pairs, write_folder_pairs

    if args.videos:
        out, what = write_clip_pairs(args.out, contract, args.videos, args.n), f"cut from the clips in {args.videos}"
    elif args.images or args.sounds:
        if not (args.images and args.sounds):
            raise EdgeSDKError("--images and --sounds go together", "give a folder of images and a folder of sounds")
        out, what = write_folder_pairs(args.out, contract, args.images, args.sounds, args.n), f"from {args.images} and {args.sounds}"
    else:
        fsdd, mnist = resolve_data(args)
        out, what = write_calib_set(args.out, contract, args.n, fsdd, mnist, seed=args.seed), "AV-Digits training speakers and images"
    print(f"wrote {args.n} calibration pairs ({what}) at {contract.image.height} x {contract.image.width}, "
          f"{contract.audio.window_seconds:g} s at {contract.audio.sample_rate} Hz, to {out}")  # fmt: skip
    return 0


def _record(args, spec) -> int:
    from edge_sdk.media.pairs import MIN_CLIPS
    from edge_sdk.runtime.record import record_pairs

    res = record_pairs(args.out, spec, args.video, args.audio, args.seconds, args.every_ms, append=args.append)
    print(json.dumps(res, indent=2))
    if not res["kept"] and not res["interrupted"]:  # a recording that kept nothing is no success, whatever the folder held
        print(
            f"edge-sdk {args.command}: error: no pair recorded ({res['frames']} frames, {res['silent']} silent windows skipped): "
            "check that the microphone hears something (edge-sdk doctor lists devices)",
            file=sys.stderr,
        )
        return 1
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
    p.add_argument("--spec", default="avnet_s.avdigits", help="our model whose inputs the pairs follow (all shipped ones share them)")
    model_args(p, positional=False)
    g = p.add_argument_group("from your own clips, or images and sounds (at the contract's sizes)")
    g.add_argument("--videos", help="a folder of clips with sound: each pair a frame and the sound ending at it, evenly over the clips")
    g.add_argument("--images", help="a folder of images, paired with windows of --sounds")
    g.add_argument("--sounds", help="a folder of sound files (wav, mp3, flac, ...)")
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
