"""The ExecuTorch backend: a model's two ``.pte`` programs through ``executorch.runtime``,
each at batch 1 (as a phone app runs them). ExecuTorch's Python bindings take torch
tensors, so this backend imports torch.

A program is checked before ExecuTorch sees it (:func:`check_program`): the native loader
aborts the whole process on some malformed files (SIGABRT, which no Python code can
catch), so a file that does not even start like a program is refused here by name.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edge_sdk.contract import ModelContract
from edge_sdk.errors import ModelFileError
from edge_sdk.runner import Towers

__all__ = ["ExecuTorchTowers", "check_program"]

_FIX = "re-export the .pte with this executorch version (edge-sdk export --format executorch)"


def check_program(path: Path) -> None:
    """Refuse (ModelFileError naming the file) what is not an ExecuTorch program: a flatbuffer
    with the ``ET`` file identifier and, where present, an ``eh`` extended header whose sizes
    fit the file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head, size = f.read(32), os.fstat(f.fileno()).st_size
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read it ({e.strerror or e})", _FIX) from None
    if len(head) < 16 or head[4:6] != b"ET" or not head[6:8].isdigit():
        raise ModelFileError(f"{path}: not an ExecuTorch program (no ET file identifier in its header)", _FIX)
    if not 8 <= int.from_bytes(head[:4], "little") < size:
        raise ModelFileError(f"{path}: damaged ExecuTorch program (its root table lies outside the file)", _FIX)
    if head[8:10] == b"eh":
        length = int.from_bytes(head[12:16], "little")
        sizes = [int.from_bytes(head[16 + 8 * i : 24 + 8 * i], "little") for i in range(2)] if length >= 32 else []
        if length < 16 or length > size or any(s > size for s in sizes):
            raise ModelFileError(f"{path}: damaged ExecuTorch program (its extended header does not fit the file)", _FIX)


class ExecuTorchTowers(Towers):
    """Two ExecuTorch programs, one per tower, each taking batch 1 (as a phone app runs them)."""

    def __init__(self, audio: str | Path, image: str | Path, contract: ModelContract | None, batch_size: int = 1):
        from executorch.runtime import Runtime

        super().__init__(contract, batch_size)
        runtime = Runtime.get()
        self.methods = {}
        for tower, path in (("audio", audio), ("image", image)):
            check_program(Path(path))
            try:
                self.methods[tower] = runtime.load_program(Path(path)).load_method("forward")
            except Exception as e:  # noqa: BLE001 - the bindings raise RuntimeError/ValueError
                raise ModelFileError(f"{path}: ExecuTorch cannot load it ({str(e).splitlines()[0][:200]})", _FIX) from None

    def execute(self, tower: str, x: np.ndarray) -> list[np.ndarray]:
        import torch

        # x is C-contiguous (NCHW), the dim order programs are exported with: ExecuTorch does not
        # check it, and a channels-last input gave silently wrong results. Outputs are copied
        # out of the program's planned memory, which the next call overwrites.
        return [np.array(o.numpy(), copy=True) for o in self.methods[tower].execute([torch.from_numpy(x)])]

    def run_audio(self, x):
        return self.execute("audio", x)

    def run_image(self, x):
        return self.execute("image", x)
