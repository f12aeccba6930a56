"""What the ``edge-sdk`` commands share: the :class:`Command` declaration each command module
makes, checked number types, output-path checks, the data-folder options and the live
status line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge_sdk.errors import EdgeSDKError

__all__ = ["Command", "number", "opset", "MIN_OPSET", "COUNT", "NONNEG", "PORT", "writable", "data_args", "resolve_data", "StatusLine"]


@dataclass(frozen=True)
class Command:
    """One subcommand: what it runs, its arguments (declared beside it), its help and example,
    the pip extra it needs as a whole (named when one of its packages is missing), the loggers
    it shows at INFO without ``-v`` (a long job's stage lines), its aliases, and whether a run
    of it is live (SIGTERM/SIGHUP then stop it like Ctrl-C: statistics written, video closed)."""

    name: str
    run: Callable[[argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None]
    help: str
    example: str
    needs: str | None = None
    logs: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    live: Callable[[argparse.Namespace], bool] | None = None  # None: never live


def number(kind, lo=None, hi=None):
    """An argparse type: ``kind`` (int or float), finite, within [lo, hi] where given."""

    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
        if v != v or v in (float("inf"), float("-inf")) or (lo is not None and v < lo) or (hi is not None and v > hi):
            span = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise argparse.ArgumentTypeError(f"{text} is out of range ({span})")
        return v

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


COUNT, NONNEG, PORT = number(int, 1), number(float, 0), number(int, 1, 65535)


def writable(**paths) -> None:
    """Refuse, before any work, output paths whose folder does not exist or cannot be written
    (read-only, another user's), and folders given as files (results are written at the end)."""
    for flag, path in paths.items():
        if path and Path(path).is_dir():
            raise EdgeSDKError(f"--{flag.replace('_', '-')} {path} is a folder", "give the path of a file (in that folder or elsewhere)")
        if path and not Path(path).resolve().parent.is_dir():
            raise EdgeSDKError(
                f"cannot write --{flag.replace('_', '-')} {path}: folder {Path(path).parent} does not exist",
                f"create it first (mkdir -p {Path(path).parent}) or pick another path",
            )
        folder = Path(path).resolve().parent if path else None
        if folder is not None and not os.access(folder, os.W_OK):
            read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY) if hasattr(os, "statvfs") else False
            raise EdgeSDKError(
                f"cannot write --{flag.replace('_', '-')} {path}: {'read-only file system' if read_only else 'permission denied'}",
                "write to a folder on a writable disk" if read_only else f"give this user write access to {folder}, or pick a folder this user owns",
            )


MIN_OPSET = 14  # the oldest ONNX opset the exporters are written for


def opset(text: str) -> int:
    """``--opset``: a whole number from :data:`MIN_OPSET` to the newest opset the installed onnx knows."""
    try:
        from onnx.defs import onnx_opset_version
    except ImportError:  # the export command says which extra brings onnx
        return number(int, MIN_OPSET)(text)
    return number(int, MIN_OPSET, onnx_opset_version())(text)


def data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fsdd", help="folder of FSDD {digit}_{speaker}_{index}.wav recordings (default: ../shared/data/fsdd/recordings if present)")
    p.add_argument("--mnist", help="folder with MNIST images-idx3-ubyte.gz and labels-idx1-ubyte.gz (default: ../shared/data/mnist if present)")
    p.add_argument("--synthetic", action="store_true", help="use generated shapes and tones instead of real data")


def resolve_data(args) -> tuple[str | None, str | None]:
    """The FSDD and MNIST folders the options name, else ``../shared/data``'s, else (None, None): generated data."""
    from edge_sdk.media.corpora import default_data_dir

    if args.synthetic:
        return None, None
    if bool(args.fsdd) != bool(args.mnist):
        raise EdgeSDKError("--fsdd and --mnist go together", "give both folders, or --synthetic for generated data")
    if args.fsdd:
        return args.fsdd, args.mnist
    root = default_data_dir()
    if root is None:
        logging.getLogger("edge_sdk").warning("no --fsdd/--mnist and no ../shared/data: using generated data (--synthetic)")
        return None, None
    return str(root / "fsdd" / "recordings"), str(root / "mnist")


def model_args(p: argparse.ArgumentParser, positional: bool = True) -> None:
    """``MODEL`` (ours: a checkpoint or shipped name) or the user's ``--model FILE.py:FUNCTION``
    with ``--weights`` and ``--contract``."""
    if positional:
        p.add_argument("model", nargs="?", help="a .safetensors checkpoint or a shipped model name (or give --model for your own)")
    g = p.add_argument_group("your own model (README: 'Bring your own checkpoint')")
    g.add_argument("--model", dest="factory", metavar="FILE.py:FUNCTION", help="a function returning your nn.Module (or package.module:FUNCTION)")
    g.add_argument("--weights", help="its weights: .safetensors, or a state dict saved with torch.save (loaded with weights_only=True)")
    g.add_argument("--contract", help="its contract: a .toml with [audio] sample_rate, seconds; [image] height, width; [outputs] embed_dim")


def model_options(args) -> dict:
    """The keyword arguments :func:`edge_sdk.models.loading.open_model` (and the stages) take."""
    return {"factory": getattr(args, "factory", None), "weights": getattr(args, "weights", None), "contract": getattr(args, "contract", None)}


class StatusLine:
    """The live statistics line, redrawn in place on stderr; where stderr is not a terminal
    (a service's journal, a log file) a whole line every :attr:`LOG_EVERY_S` instead. A
    terminal that went away (a closed ssh session: writes fail with EIO) ends it quietly, so
    the run can still write its statistics file."""

    LOG_EVERY_S = 10.0

    def __init__(self):
        self.ok, self.tty, self.next = True, sys.stderr.isatty(), 0.0

    def write(self, text: str, end: str = "") -> None:
        if self.ok:
            try:
                print(text, end=end, file=sys.stderr, flush=True)
            except OSError:
                self.ok = False

    def __call__(self, stats) -> None:
        if self.tty:
            self.write("\r" + stats.line())
        elif time.monotonic() >= self.next:
            self.next = time.monotonic() + self.LOG_EVERY_S
            self.write(stats.line().strip(), end="\n")

    def end(self) -> None:
        if self.tty:
            self.write("", end="\n")
