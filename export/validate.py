"""Parity of an exported model with its PyTorch original, on real inputs.

Random tensors hide real divergence (an export can match on noise and find nothing on
real images), so every check runs on speaker- and image-disjoint AV-Digits scenes (the
generated fallback only where no data folder exists): per output the largest absolute
difference and the cosine similarity (mean and worst over the inputs), and whether the
localization heatmap peaks in the same cell as PyTorch's. :func:`verdict` compares them
with a :class:`Tolerance` and names every output that misses, and by how much.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Tolerance", "TOLERANCES", "real_inputs", "run_graph", "compare", "heatmap_agreement", "verdict"]


@dataclass(frozen=True)
class Tolerance:
    """What an export must keep, per precision: every output's mean cosine to PyTorch and
    largest absolute difference, the share of heatmaps peaking in the same cell, and the
    largest drop of a gated task metric (pointing_acc, a2i_r1, probe_audio_acc)."""

    cosine: float
    max_abs: float
    heatmap: float
    metric_drop: float

    def to_dict(self) -> dict:
        return asdict(self)


TOLERANCES = {
    "fp32": Tolerance(cosine=0.99999, max_abs=2e-3, heatmap=0.98, metric_drop=0.005),
    "fp16": Tolerance(cosine=0.999, max_abs=5e-2, heatmap=0.9, metric_drop=0.01),
    "int8": Tolerance(cosine=0.98, max_abs=0.25, heatmap=0.8, metric_drop=0.01),
}


def real_inputs(spec, fsdd=None, mnist=None, n: int = 64, seed: int = 99, test_speakers=None) -> dict[str, np.ndarray]:
    """``wave`` and ``image`` of ``n`` held-out AV-Digits scenes (K=3), real data when given."""
    from edge_sdk.media.avdigits import AVDigits
    from edge_sdk.media.digits import DEFAULT_TEST_SPEAKERS, load_bank, synthetic_bank

    sr = spec.audio.sample_rate
    speakers = tuple(test_speakers or DEFAULT_TEST_SPEAKERS)
    bank = load_bank(fsdd, mnist, "test", sr, speakers) if fsdd and mnist else synthetic_bank("test", sr)
    ds = AVDigits(bank, spec, n, 3, seed, train=False)
    items = [ds[i] for i in range(n)]
    return {
        "wave": np.stack([it["wave"] for it in items]).astype(np.float32),
        "image": np.stack([it["image"] for it in items]).astype(np.float32),
        "source": bank.source,
    }


def run_graph(towers, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """All three outputs of a runner (any backend) on ``inputs``."""
    emb, fmap = towers.embed_image(inputs["image"])
    return {"audio_emb": towers.embed_audio(inputs["wave"]), "image_emb": emb, "image_map": fmap}


def compare(ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> dict[str, dict]:
    """Per output: shapes, largest absolute difference, mean and worst per-input cosine."""
    out = {}
    for name, r in ref.items():
        g = got[name]
        if g.shape != r.shape:
            out[name] = {"shape": list(g.shape), "expected_shape": list(r.shape), "max_abs": float("inf"), "cosine_mean": 0.0, "cosine_min": 0.0}
            continue
        a, b = r.reshape(len(r), -1).astype(np.float64), g.reshape(len(g), -1).astype(np.float64)
        cos = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
        finite = bool(np.isfinite(g).all())
        out[name] = {
            "shape": list(g.shape),
            "max_abs": float(np.abs(a - b).max()) if finite else float("inf"),
            "cosine_mean": float(cos.mean()) if finite else 0.0,
            "cosine_min": float(cos.min()) if finite else 0.0,
        }
    return out


def heatmap_agreement(ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> float:
    """Share of inputs whose audio-to-image heatmap peaks in the same map cell as PyTorch's."""

    def peaks(o):
        sim = np.einsum("bd,bdhw->bhw", o["audio_emb"], o["image_map"])
        return sim.reshape(len(sim), -1).argmax(1)

    return float(np.mean(peaks(ref) == peaks(got)))


def verdict(parity: dict[str, dict], heatmap: float | None, drops: dict[str, float] | None, tol: Tolerance) -> list[str]:
    """Every miss beyond ``tol``, each naming the output or metric and by how much (empty: passed)."""
    misses = []
    for name, p in parity.items():
        if "expected_shape" in p:
            misses.append(f"{name}: shape {p['shape']} instead of {p['expected_shape']}")
            continue
        if p["cosine_mean"] < tol.cosine:
            misses.append(f"{name}: mean cosine {p['cosine_mean']:.6f} < {tol.cosine}")
        if p["max_abs"] > tol.max_abs:
            misses.append(f"{name}: max abs diff {p['max_abs']:.3g} > {tol.max_abs}")
    if heatmap is not None and heatmap < tol.heatmap:
        misses.append(f"heatmap peaks agree on {heatmap:.3f} of the scenes < {tol.heatmap}")
    for k, d in (drops or {}).items():
        if d > tol.metric_drop:
            misses.append(f"{k} drops by {d:.3f} > {tol.metric_drop}")
    return misses
