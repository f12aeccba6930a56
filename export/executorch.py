"""The ExecuTorch target: ``.pte`` programs through the XNNPACK partitioner, for phones.

``torch.export`` -> ``to_edge_transform_and_lower(XnnpackPartitioner)`` -> ``.pte``; the same
path lowers a float tower and a PT2E-quantized one. Programs take batch 1 (what a phone app
runs; XNNPACK's dynamic-batch bounds proved brittle). How many graph nodes XNNPACK took
(delegated) and how many stay on ExecuTorch's portable kernels is reported per program.
A program stores every constant it reads, so the log-mel front end is lowered as a
two-stage DFT (:meth:`~edge_sdk.models.frontend.LogMel.use_two_stage`) rather than with its
135 KB basis, which INT8 cannot shrink.

INT8 (:data:`RECIPE`): PT2E (``torch.export`` -> ``prepare_pt2e`` with ``XNNPACKQuantizer``
-> calibrate -> ``convert_pt2e``), one global config over the whole tower (weights per
channel), the front end kept float. PT2E has no entropy calibrator, and it loses the module
path of convs whose batch norms it folds, so single layers cannot be kept float here (a run
that needs them skips this target, saying so, instead of quantizing silently wrong). QAT:
``prepare_qat_pt2e``, calibrated in whole batches, then self-distilled to the float model.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import torch

from edge_sdk.errors import ConfigError
from edge_sdk.export.base import Exporter, Int8Recipe, Job, artifact
from edge_sdk.export.graphs import capture, example_inputs

__all__ = ["RECIPE", "ExecuTorchExporter", "lower_to_pte", "two_stage_frontends", "quantize_programs", "pt2e_int8_accounting"]

log = logging.getLogger(__name__)

RECIPE = Int8Recipe(
    quantizer="PT2E XNNPACKQuantizer (symmetric, per-channel weights), lowered with the XNNPACK partitioner",
    methods=("minmax", "percentile"),
    per_channel=True,
    kept_float="log-mel front end (its products feed a log); normalisations and L2 norms run on portable float kernels",
    layer_fallback=False,
    qat="PT2E prepare_qat_pt2e, self-distilled to the FP32 model",
)


def two_stage_frontends(module: torch.nn.Module) -> torch.nn.Module:
    """Switch every log-mel front end in ``module`` to its two-stage DFT; returns ``module``."""
    from edge_sdk.models.frontend import LogMel

    for m in module.modules():
        if isinstance(m, LogMel):
            m.use_two_stage()
    return module


def lower_to_pte(module: torch.nn.Module, example: tuple[torch.Tensor, ...], path: str | Path) -> tuple[Path, dict]:
    """Export ``module`` (float or PT2E-converted) for XNNPACK and write ``path`` atomically.

    Returns the path and ``{"delegated_nodes", "portable_nodes", "subgraphs", "portable_ops"}``
    (``portable_ops``: each operator left on ExecuTorch's portable kernels, with its count).
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
    try:
        tmp.write_bytes(et.buffer)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    portable = {op: b.non_delegated for op, b in sorted(info.delegation_by_operator.items()) if b.non_delegated}
    return path, {"delegated_nodes": info.num_delegated_nodes, "portable_nodes": info.num_non_delegated_nodes,
                  "subgraphs": info.num_delegated_subgraphs, "portable_ops": portable}  # fmt: skip


_LAYERS = {"conv1d", "conv2d", "convolution", "linear", "mm", "bmm", "matmul", "addmm"}


def _is_dequant(node) -> bool:
    return getattr(node, "op", "") == "call_function" and "dequantize" in str(node.target)


def _reads_weight(node, depth: int = 6) -> bool:
    """Whether ``node`` is a parameter, seen through views, transposes and (de)quantization."""
    for _ in range(depth):
        if node.op in ("get_attr", "placeholder"):
            return node.op == "get_attr" or node.name.startswith(("p_", "b_", "c_"))  # lifted parameters, buffers, constants
        args = [a for a in node.args if isinstance(a, torch.fx.Node)]
        if node.op != "call_function" or not args:
            return False
        node = args[0]
    return False


def _layer_macs(name: str, node, ins) -> int:
    def shape(n):
        meta = n.meta.get("tensor_meta")
        return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None

    out, w = shape(node), shape(ins[1]) if len(ins) > 1 else None
    if out is None or w is None:
        return 0
    inner = int(np.prod(w[1:])) if name.startswith("conv") else (shape(ins[0]) or (0,))[-1]
    return int(np.prod(out)) * int(inner)


def pt2e_int8_accounting(gm: torch.fx.GraphModule, example: tuple[torch.Tensor, ...]) -> dict:
    """What a converted PT2E graph runs in INT8 (the same counts as :func:`~.int8_report.onnx_int8_accounting`):
    each conv/linear/matmul is INT8 when its activation and weight come through dequantize nodes;
    MACs from the traced shapes; the SDK's log-mel front end (module path with ``frontend``) apart."""
    from torch.fx.passes.shape_prop import ShapeProp

    from edge_sdk.export.int8_report import ACTIVATION_MATMUL, NOT_QUANTIZED

    with torch.no_grad():
        ShapeProp(gm).propagate(*example)  # every node's output shape, at batch 1
    layers, front = [], 0
    for node in gm.graph.nodes:
        name = str(node.target).split(".")[-2] if "." in str(node.target) else str(node.target)
        if node.op != "call_function" or name not in _LAYERS:
            continue
        ins = [a for a in node.args[:2] if isinstance(a, torch.fx.Node)]
        macs = _layer_macs(name, node, ins)
        stack = " ".join(str(v) for v in (node.meta.get("nn_module_stack") or {}).values())
        if "frontend" in stack or "LogMel" in stack:
            front += macs
            continue
        int8 = bool(ins) and all(_is_dequant(a) for a in ins)
        why = ACTIVATION_MATMUL if name in ("bmm", "matmul") and not any(_reads_weight(a) for a in ins) else NOT_QUANTIZED
        layers.append({"node": node.name, "op": name, "macs": macs, "int8": int8, **({} if int8 else {"why": why})})
    total, int8_macs = sum(x["macs"] for x in layers), sum(x["macs"] for x in layers if x["int8"])
    return {"layers": len(layers), "int8_layers": sum(x["int8"] for x in layers), "macs": total, "int8_macs": int8_macs,
            "int8_share": round(int8_macs / total, 4) if total else 0.0, "front_end_macs": front,
            "float": [x for x in layers if not x["int8"]]}  # fmt: skip


def _drop_unused_state(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Delete the float parameters a converted PT2E graph no longer reads (its weights now
    live in folded int8 constants): ``torch.export`` would carry them into the program."""
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for name, _ in list(gm.named_parameters()) + list(gm.named_buffers()):
        if name not in used:
            owner, _, attr = name.rpartition(".")
            delattr(gm.get_submodule(owner) if owner else gm, attr)
    return gm


def _prepare(module: torch.nn.Module, data: np.ndarray, method: str, qat: bool):
    """A tower exported and prepared for PT2E (PTQ observers, or QAT fake quantizers), calibrated on ``data``."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e, prepare_qat_pt2e

    from edge_sdk.models.frontend import LogMel
    from edge_sdk.quant.pt2e_observers import activation_config

    # Global config: every conv/linear (weights per channel), add, pool of the tower; the log-mel
    # front end stays float (its products feed a log). Per-module configs lost the convs whose
    # batch norms PT2E folds: weights stayed float (measured). QAT uses the QAT config's
    # moving-average fake quantizers (``method`` is for PTQ).
    config = get_symmetric_quantization_config(is_per_channel=True, is_qat=qat)
    quantizer = XNNPACKQuantizer().set_global(config if qat else activation_config(config, method))
    for frontend in {type(m) for m in module.modules() if isinstance(m, LogMel)}:  # the quantizer matches exact types
        quantizer.set_module_type(frontend, None)
    if qat:
        exported = capture(module, (torch.from_numpy(np.ascontiguousarray(data[:2])),), "the tower for QAT")
        prepared = prepare_qat_pt2e(exported.module(), quantizer)
    else:
        prepared = prepare_pt2e(torch.export.export(module, (torch.from_numpy(np.ascontiguousarray(data[:1])),)).module(), quantizer)
    # QAT's moving-average fake quantizers take their first range from the first batch: give them
    # whole batches (PTQ observers see every pair, one at a time, batch 1)
    step = 32 if qat else 1
    with torch.no_grad():
        for i in range(0, len(data), step):
            prepared(torch.from_numpy(np.ascontiguousarray(data[i : i + step])))
    return prepared


def quantize_programs(job: Job, out: Path, qat: bool = False) -> list[dict]:
    """INT8 ``.pte`` programs of the job's deploy model: PT2E PTQ, or with ``qat`` PT2E QAT
    (calibrated, then self-distilled towards the float model)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    if job.method == "entropy":
        raise ConfigError("the xnnpack target (PT2E) has no entropy calibrator", "use --method percentile or minmax for xnnpack")
    if job.exclude:
        raise ConfigError(
            f"the xnnpack target cannot keep single layers in float ({', '.join(job.exclude)})",
            "raise --threshold so no layer is excluded, or use --target onnxruntime/tensorrt for this model",
        )
    calib, prepared, examples = job.calib, {}, {}
    for tower, data in (("audio", calib.waves), ("image", calib.images)):
        module = two_stage_frontends(copy.deepcopy(getattr(job.deploy, tower)).eval())  # prepare_pt2e folds batch norms into the weights
        examples[tower] = (torch.from_numpy(np.ascontiguousarray(data[:1])),)  # NCHW: programs keep the example's dim order
        prepared[tower] = _prepare(module, data, job.method, qat)
    if qat:
        from edge_sdk.quant.qat import pt2e_finetune

        log.info("xnnpack: PT2E QAT, %d steps", job.qat_steps)
        pt2e_finetune(prepared, copy.deepcopy(job.deploy), job.fsdd, job.mnist, steps=job.qat_steps)
    arts = []
    for tower in ("audio", "image"):
        converted = _drop_unused_state(convert_pt2e(prepared[tower]))
        accounting = pt2e_int8_accounting(converted, examples[tower])
        dest, delegated = lower_to_pte(converted, examples[tower], Path(out) / f"{tower}.int8.pte")
        arts.append(artifact(dest, tower, "executorch", "executorch", "int8", delegate="xnnpack", delegated=delegated,
                             method="qat" if qat else "ptq", int8=accounting))  # fmt: skip
    return arts


class ExecuTorchExporter(Exporter):
    name, target, format, backend, batch = "executorch", "xnnpack", "executorch", "executorch", "1"
    precisions = ("fp32", "int8")
    requires, extra = ("executorch",), "executorch"
    int8 = RECIPE

    def write(self, job, precision):
        if precision == "int8":
            return quantize_programs(job, job.out)
        arts = []
        for g in self.graphs:
            module = copy.deepcopy(getattr(job.deploy, g)).eval()
            path, info = lower_to_pte(module, example_inputs(job.model.contract, g, 1), job.out / f"{g}.fp32.pte")
            arts.append(artifact(path, g, self.format, self.backend, "fp32", delegate="xnnpack", delegated=info))
        return arts

    def write_qat(self, job, out):
        return quantize_programs(job, out, qat=True)
