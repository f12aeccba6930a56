"""The ``edge-sdk`` command line: assembles the subcommands (:mod:`.commands`, one module per
command or small group, each calling the public function a library user calls) and runs one.

Heavy libraries are imported inside the commands, so ``edge-sdk --help`` and ``doctor``
start fast and work without torch. Errors a user can fix print one line and exit 2; a
package an extra brings, when missing, is named with the extra.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import signal
import sys
import threading
import traceback

from edge_sdk import __version__
from edge_sdk.errors import EdgeSDKError, missing_package
from edge_sdk.outputs import os_error_cause
from edge_sdk.toolchain.commands import COMMANDS

__all__ = ["main", "build_parser", "EXAMPLES"]

EXAMPLES = {c.name: c.example for c in COMMANDS}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-sdk", description="Audio-visual models from pretraining to live edge apps.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument("--version", action="version", version=f"edge-sdk {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for cmd in COMMANDS:
        p = sub.add_parser(
            cmd.name,
            aliases=list(cmd.aliases),
            help=cmd.help,
            description=cmd.help,
            epilog=f"example:\n  {cmd.example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(cli_command=cmd)
        cmd.arguments(p)
    return parser


# SIGTERM (timeout, systemd, docker stop) and SIGHUP (a closed terminal) stop a live command
# as Ctrl-C does: it writes its statistics and closes its video. Exit code 128 + signal. Other
# commands keep the default (SIGTERM kills at once, even inside a long native call), and a
# signal already ignored (nohup) stays ignored.
_STOP_SIGNALS = [s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None]
_received = [signal.SIGINT]


def _stop(signum, frame):
    _received.append(signum)
    raise KeyboardInterrupt


_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}  # said in one line even when no file is named


def _trace(args) -> None:
    if args.verbose:
        traceback.print_exc()


def _error(args, text: str) -> int:
    print(f"edge-sdk {args.command}: error: {text}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cmd = args.cli_command
    # On a terminal a log line first clears the live status line it would otherwise be glued to
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format=("\r\x1b[K" if sys.stderr.isatty() else "") + "%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # torch's deprecation note on torchao's enums, printed on import, that no user can act on
        logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    for name in cmd.logs:  # long jobs say which stage they are in (without -v, only their own stage lines)
        logging.getLogger(name).setLevel(logging.INFO)
    _received[:] = [signal.SIGINT]
    mine = threading.current_thread() is threading.main_thread()  # only the main thread may set handlers
    live = mine and cmd.live is not None and cmd.live(args)
    watch = [sig for sig in _STOP_SIGNALS if signal.getsignal(sig) is not signal.SIG_IGN] if live else []
    before = {sig: signal.signal(sig, _stop) for sig in watch}
    try:
        return cmd.run(args)
    except EdgeSDKError as e:
        return _error(args, str(e))
    except PermissionError as e:  # e.g. a bundle another user wrote, an output folder of someone else's
        _trace(args)
        return _error(
            args,
            f"cannot access {e.filename or e}: permission denied -- fix: give this user read access (and write "
            "access for outputs) to it, or copy it to a folder this user owns",
        )
    except OSError as e:  # a full disk, a read-only folder, a file where a folder should be: one line (-v: the traceback too)
        if not e.filename and e.errno not in _DISK_ERRORS:
            raise
        _trace(args)
        where = f"{e.filename}: " if e.filename else "writing its output: "
        return _error(args, f"{where}{os_error_cause(e)} -- fix: check that path (df -h, ls -ld), or pick another one")
    except ModuleNotFoundError as e:
        error = missing_package(e, cmd.needs)
        if error is None:
            raise
        return _error(args, str(error))
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):  # the terminal may be gone
            print(f"edge-sdk {args.command}: interrupted", file=sys.stderr)
        return 128 + _received[-1]
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    raise SystemExit(main())
