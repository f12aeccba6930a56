"""INT8 fake quantization with NVIDIA Model Optimizer: TensorRT's explicit Q/DQ path,
per-layer sensitivity, and quantization-aware training.

``nvidia-modelopt`` (the maintained successor of ``pytorch-quantization``) wraps every
Conv/Linear with an input and a weight ``TensorQuantizer``: weights per output channel
(max), activations per tensor, calibrated with one of

- ``minmax``: the largest magnitude seen,
- ``percentile``: the 99.99th percentile of magnitudes (a histogram calibrator),
- ``entropy``: the range minimising KL divergence (TensorRT's classic INT8 calibrator).

The fake-quantized model runs in PyTorch (so it can be evaluated and fine-tuned here) and
exports to ONNX with QuantizeLinear/DequantizeLinear pairs: the explicit-quantization
graph both TensorRT 10 and TensorRT 11 (strongly typed) build INT8 engines from.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from edge_sdk.errors import ConfigError

__all__ = ["METHODS", "PERCENTILE", "quantizable_layers", "fake_quantize", "set_enabled_layers", "layer_sensitivity"]

log = logging.getLogger(__name__)

METHODS = ("minmax", "percentile", "entropy")
PERCENTILE = 99.99


def quantizable_layers(model: nn.Module) -> list[str]:
    """Names of the layers INT8 applies to: every Conv and Linear of both towers (the
    front end's DFT and mel products are functional ops: they always stay in float)."""
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]


def _forward_loop(calib, batch: int = 32):
    def loop(model):
        with torch.no_grad():
            for i in range(0, len(calib), batch):
                model(torch.from_numpy(calib.waves[i : i + batch]), torch.from_numpy(calib.images[i : i + batch]))

    return loop


def fake_quantize(model: nn.Module, calib, method: str = "percentile", exclude: tuple[str, ...] = ()) -> nn.Module:
    """A calibrated fake-quant INT8 copy of ``model``; layers named in ``exclude`` stay float."""
    import modelopt.torch.quantization as mtq

    if method not in METHODS:
        raise ConfigError(f"unknown calibration method {method!r}", f"use one of: {', '.join(METHODS)}")
    qmodel = copy.deepcopy(model).eval()
    cfg = {
        "quant_cfg": [
            {"quantizer_name": "*", "enable": False},
            {"quantizer_name": "*weight_quantizer", "cfg": {"num_bits": 8, "axis": 0}},
            {"quantizer_name": "*input_quantizer", "cfg": {"num_bits": 8, "axis": None}},
        ],
        "algorithm": "max",
    }
    loop = _forward_loop(calib)
    mtq.quantize(qmodel, cfg, forward_loop=loop)
    if method != "minmax":
        _histogram_calibrate(qmodel, loop, method)
    set_enabled_layers(qmodel, [n for n in quantizable_layers(model) if n not in set(exclude)])
    return qmodel


def _histogram_calibrate(qmodel: nn.Module, loop, method: str) -> None:
    from modelopt.torch.quantization.calib import HistogramCalibrator
    from modelopt.torch.quantization.nn import TensorQuantizer

    inputs = [q for n, q in qmodel.named_modules() if isinstance(q, TensorQuantizer) and n.endswith("input_quantizer") and q.is_enabled]
    for q in inputs:
        q._calibrator = HistogramCalibrator(num_bits=8, axis=None, unsigned=False)
        q.disable_quant()
        q.enable_calib()
    loop(qmodel)
    kw = {"percentile": PERCENTILE} if method == "percentile" else {}
    for q in inputs:
        q.load_calib_amax(method, **kw)
        q.enable_quant()
        q.disable_calib()


def set_enabled_layers(qmodel: nn.Module, layers) -> None:
    """Quantize exactly ``layers`` (input and weight quantizers); every other layer runs in float."""
    from modelopt.torch.quantization.nn import TensorQuantizer

    keep = set(layers)
    for name, q in qmodel.named_modules():
        if isinstance(q, TensorQuantizer) and name.rsplit(".", 1)[-1] in ("input_quantizer", "weight_quantizer"):
            (q.enable if name.rsplit(".", 1)[0] in keep else q.disable)()


def _errors(ref: dict, out: dict) -> dict:
    """Output error of a quantized forward against float: 1 - cosine of each output, mean over items."""
    res = {}
    for k in ("audio_emb", "image_emb", "image_map"):
        a, b = ref[k].flatten(1), out[k].flatten(1)
        res[k] = float((1 - torch.nn.functional.cosine_similarity(a, b, dim=1)).mean())
    return res


def layer_sensitivity(model: nn.Module, calib, method: str = "percentile", n: int = 64) -> list[dict]:
    """Error of each layer quantized alone (all others float), on ``n`` calibration pairs.

    Returns rows ``{"layer", "tower", "audio_emb", "image_emb", "image_map", "error"}`` sorted
    by ``error`` (the worst of the three output errors), largest first.
    """
    qmodel = fake_quantize(model, calib, method)
    waves, images = torch.from_numpy(calib.waves[:n]), torch.from_numpy(calib.images[:n])
    with torch.no_grad():
        ref = model.eval()(waves, images)
    rows = []
    for layer in quantizable_layers(model):
        set_enabled_layers(qmodel, [layer])
        with torch.no_grad():
            err = _errors(ref, qmodel(waves, images))
        tower = layer.split(".", 1)[0]
        rows.append(
            {
                "layer": layer,
                "tower": tower,
                **{k: round(v, 6) for k, v in err.items()},
                "error": round(max(err["audio_emb"] if tower == "audio" else max(err["image_emb"], err["image_map"]), 0.0), 6),
            }
        )
    return sorted(rows, key=lambda r: -r["error"])
