"""The ``edge-sdk`` subcommands, one module per command or small group, each declaring its
:class:`~edge_sdk.toolchain.args.Command` s (what runs, its arguments beside it, help, example).
:data:`COMMANDS` is the order ``edge-sdk --help`` lists them in."""

from __future__ import annotations

from edge_sdk.toolchain.args import Command
from edge_sdk.toolchain.commands import bench, calib, evaluate, export, folds, info, live, shard, train, workflow

__all__ = ["COMMANDS"]

COMMANDS: tuple[Command, ...] = (
    *shard.COMMANDS,
    *train.COMMANDS,
    *folds.COMMANDS,
    *calib.COMMANDS,
    *export.COMMANDS,
    *bench.COMMANDS,
    *live.COMMANDS,
    *workflow.COMMANDS,
    *evaluate.COMMANDS,
    *info.COMMANDS,
)
