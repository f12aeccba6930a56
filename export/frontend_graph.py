"""The log-mel front end's constant matrices as graph nodes instead of stored weights.

The DFT basis (132 x 256 floats, 135 KB) and the mel filters (40 x 66, 10 KB) are fixed
functions of the spec that INT8 cannot shrink: stored, they were a third of the INT8 audio
tower. Each is replaced by a few small nodes on scalar or per-filter constants, which ONNX
Runtime (and TensorRT's builder) fold into a constant when they load the graph. A matrix is
left stored unless the nodes reproduce it (to 1e-6 for the basis, 2e-6 for the filters).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["dft_basis_nodes", "mel_filter_nodes"]


def _find(model, suffix: str):
    return next((t for t in model.graph.initializer if t.name.endswith(suffix)), None)


def _replace(model, init, consts: list, nodes: list, prefix: str, scopes: dict) -> None:
    """Put ``nodes`` (the last one writing ``init``'s name) in place of the initializer; they
    take the module scopes of the node that read it (so FP16 and INT8 keep them in float)."""
    consumer = next(node for node in model.graph.node if init.name in node.input)
    for i, node in enumerate(nodes):
        node.name = f"{prefix}{node.op_type}_{i}"
        scopes[node.name] = scopes.get(consumer.name, [])
    model.graph.initializer.remove(init)
    model.graph.initializer.extend(consts)
    for node in reversed(nodes):
        model.graph.node.insert(0, node)


def dft_basis_nodes(model, scopes: dict) -> None:
    """Replace the front end's stored DFT basis [2K, 1, N] (Hann window times cos and -sin of
    2 pi k n / N, :class:`~edge_sdk.models.frontend.LogMel`) by nodes that compute it: k n mod N
    (exact in float32), times 2 pi / N."""
    from onnx import helper, numpy_helper

    init = _find(model, "frontend.dft")
    if init is None:
        return
    stored = numpy_helper.to_array(init)
    two_k, _, n_fft = stored.shape
    n = np.arange(n_fft)
    phase = 2 * np.pi * (np.arange(two_k // 2)[:, None] * n[None] % n_fft) / n_fft
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)
    if np.abs(np.concatenate([np.cos(phase), -np.sin(phase)]) * window - stored[:, 0]).max() > 1e-6:
        return
    name, p = init.name, init.name.rsplit(".", 1)[0] + ".basis/"
    consts = [
        numpy_helper.from_array(np.array(v, np.float32), p + k)
        for k, v in (("zero", 0.0), ("one", 1.0), ("n", n_fft), ("k", two_k // 2), ("step", 2 * math.pi / n_fft), ("half", 0.5))
    ]
    consts.append(numpy_helper.from_array(np.array([1], np.int64), p + "ax1"))
    nodes = [  # float32 throughout (integers below 2^24 are exact): no casts for an FP16 converter to touch
        helper.make_node("Range", [p + "zero", p + "n", p + "one"], [p + "n_idx"]),
        helper.make_node("Range", [p + "zero", p + "k", p + "one"], [p + "k_idx"]),
        helper.make_node("Unsqueeze", [p + "k_idx", p + "ax1"], [p + "k_col"]),
        helper.make_node("Mul", [p + "k_col", p + "n_idx"], [p + "kn"]),
        helper.make_node("Mod", [p + "kn", p + "n"], [p + "kn_mod"], fmod=1),
        helper.make_node("Mul", [p + "kn_mod", p + "step"], [p + "phase"]),
        helper.make_node("Mul", [p + "n_idx", p + "step"], [p + "n_phase"]),
        helper.make_node("Cos", [p + "n_phase"], [p + "n_cos"]),
        helper.make_node("Mul", [p + "n_cos", p + "half"], [p + "n_cos_half"]),
        helper.make_node("Sub", [p + "half", p + "n_cos_half"], [p + "window"]),
        helper.make_node("Cos", [p + "phase"], [p + "cos"]),
        helper.make_node("Sin", [p + "phase"], [p + "sin"]),
        helper.make_node("Neg", [p + "sin"], [p + "neg_sin"]),
        helper.make_node("Concat", [p + "cos", p + "neg_sin"], [p + "rows"], axis=0),
        helper.make_node("Mul", [p + "rows", p + "window"], [p + "windowed"]),
        helper.make_node("Unsqueeze", [p + "windowed", p + "ax1"], [name]),
    ]
    _replace(model, init, consts, nodes, p, scopes)


def mel_filter_nodes(model, audio, scopes: dict) -> None:
    """Replace the stored mel filters [n_mels, n_bins] (:func:`~edge_sdk.models.frontend.mel_filterbank`
    of the ``audio`` spec) by nodes that compute them from the band edges (3 x n_mels floats):
    triangles ``max(0, min((f - lo) / (mid - lo), (hi - f) / (hi - mid)))`` over the bins'
    frequencies ``f``, each row divided by its sum. A spec whose filters needed the
    nearest-bin fallback (a band narrower than a bin) keeps its stored matrix."""
    from onnx import helper, numpy_helper

    from edge_sdk.models.frontend import mel_edges

    init = _find(model, "frontend.mel")
    if init is None:
        return
    stored = numpy_helper.to_array(init)
    n_bins = stored.shape[1]
    edges = mel_edges(audio)
    lo, hi = edges[:-2, None].astype(np.float32), edges[2:, None].astype(np.float32)
    rise = (1.0 / (edges[1:-1] - edges[:-2]))[:, None].astype(np.float32)
    fall = (1.0 / (edges[2:] - edges[1:-1]))[:, None].astype(np.float32)
    bin_hz = np.float32(audio.sample_rate / audio.n_fft)
    f = np.arange(n_bins, dtype=np.float32) * bin_hz  # what the nodes compute, in float32
    tri = np.maximum(np.minimum((f - lo) * rise, (hi - f) * fall), np.float32(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        if not np.abs(tri / tri.sum(1, keepdims=True) - stored).max() <= 2e-6:
            return
    name, p = init.name, init.name.rsplit(".", 1)[0] + ".mel_filters/"
    consts = [numpy_helper.from_array(np.array(v, np.float32), p + k) for k, v in (("zero", 0.0), ("one", 1.0), ("n", n_bins), ("bin_hz", bin_hz))]
    consts += [numpy_helper.from_array(v, p + k) for k, v in (("lo", lo), ("rise", rise), ("hi", hi), ("fall", fall))]
    consts.append(numpy_helper.from_array(np.array([1], np.int64), p + "ax1"))
    nodes = [
        helper.make_node("Range", [p + "zero", p + "n", p + "one"], [p + "idx"]),
        helper.make_node("Mul", [p + "idx", p + "bin_hz"], [p + "f"]),
        helper.make_node("Sub", [p + "f", p + "lo"], [p + "above_lo"]),
        helper.make_node("Mul", [p + "above_lo", p + "rise"], [p + "up"]),
        helper.make_node("Sub", [p + "hi", p + "f"], [p + "below_hi"]),
        helper.make_node("Mul", [p + "below_hi", p + "fall"], [p + "down"]),
        helper.make_node("Min", [p + "up", p + "down"], [p + "peak"]),
        helper.make_node("Max", [p + "peak", p + "zero"], [p + "tri"]),
        helper.make_node("ReduceSum", [p + "tri", p + "ax1"], [p + "area"], keepdims=1),
        helper.make_node("Div", [p + "tri", p + "area"], [name]),
    ]
    _replace(model, init, consts, nodes, p, scopes)
