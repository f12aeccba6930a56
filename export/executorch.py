"""ExecuTorch programs (``.pte``) through the XNNPACK partitioner.

``torch.export`` -> ``to_edge_transform_and_lower(XnnpackPartitioner)`` -> ``.pte``; the
same path lowers a float tower and a PT2E-quantized one (``convert_pt2e`` output). Programs
take batch 1 (what a phone app runs; XNNPACK's dynamic-batch bounds proved brittle). How many graph nodes XNNPACK took
(delegated) and how many stay on ExecuTorch's portable kernels is reported per program.
A program stores every constant it reads, so the log-mel front end is lowered as a
two-stage DFT (:meth:`~edge_sdk.models.frontend.LogMel.use_two_stage`) rather than with
its 135 KB basis, which INT8 cannot shrink.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

__all__ = ["lower_to_pte", "two_stage_frontends"]


def two_stage_frontends(module: torch.nn.Module) -> torch.nn.Module:
    """Switch every log-mel front end in ``module`` to its two-stage DFT; returns ``module``."""
    from edge_sdk.models.frontend import LogMel

    for m in module.modules():
        if isinstance(m, LogMel):
            m.use_two_stage()
    return module


def lower_to_pte(module: torch.nn.Module, example: tuple[torch.Tensor, ...], path: str | Path) -> tuple[Path, dict]:
    """Export ``module`` (float or PT2E-converted) for XNNPACK and write ``path``.

    Returns the path and ``{"delegated_nodes", "portable_nodes", "subgraphs"}``.
    """
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir import to_edge_transform_and_lower

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = two_stage_frontends(copy.deepcopy(module))
    for m in module.modules():  # the edge verifier wants constants (the DFT basis, the mel matrix) as state
        m._non_persistent_buffers_set.clear()
    program = torch.export.export(module, example)
    edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    info = get_delegation_info(edge.exported_program().graph_module)
    et = edge.to_executorch()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(et.buffer)
    tmp.replace(path)
    return path, {"delegated_nodes": info.num_delegated_nodes, "portable_nodes": info.num_non_delegated_nodes,
                  "subgraphs": info.num_delegated_subgraphs}
