"""Activation observers for PT2E calibration methods (``torchao.quantization.pt2e``).

``minmax`` uses ``MinMaxObserver``; ``percentile`` a histogram observer whose range is cut
at the 0.005th and 99.995th percentiles (99.99 % of values inside, as ORT and Model
Optimizer do); PT2E has no entropy (KL) calibrator.
"""

from __future__ import annotations

import dataclasses

import torch
from torchao.quantization.pt2e.observer import HistogramObserver, MinMaxObserver

from edge_sdk.quant.fakequant import PERCENTILE

__all__ = ["PercentileObserver", "activation_config"]


class PercentileObserver(HistogramObserver):
    def _non_linear_param_search(self) -> tuple[torch.Tensor, torch.Tensor]:
        hist = self.histogram.double()
        cdf = torch.cumsum(hist, 0) / hist.sum().clamp(min=1)
        tail = (1 - PERCENTILE / 100) / 2
        width = (self.max_val - self.min_val) / self.bins
        lo = int(torch.searchsorted(cdf, torch.tensor(tail, dtype=cdf.dtype)))
        hi = int(torch.searchsorted(cdf, torch.tensor(1 - tail, dtype=cdf.dtype)))
        return self.min_val + lo * width, self.min_val + (hi + 1) * width


def activation_config(config, method: str):
    """``config`` (an XNNPACK QuantizationConfig) with its activation observer set by ``method``."""
    observer = {"minmax": MinMaxObserver, "percentile": PercentileObserver}[method]
    spec = config.input_activation
    spec = dataclasses.replace(spec, observer_or_fake_quant_ctr=observer.with_args(eps=2**-12))
    return dataclasses.replace(config, input_activation=spec, output_activation=spec)
