"""Parity of an exported model with its PyTorch original, on real inputs.

Random tensors hide real divergence (an export can match on noise and find nothing on
real images), so every check runs on real inputs: the user's own clips where given, else
speaker- and image-disjoint AV-Digits scenes (the generated fallback only where no data
folder exists): per output the largest absolute
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


def real_inputs(contract, fsdd=None, mnist=None, n: int = 64, seed: int = 99, test_speakers=None, videos=None) -> dict[str, np.ndarray]:
    """``wave`` and ``image`` of ``n`` real inputs at the contract's sizes: pairs cut from the
    user's clips (``videos``: a folder, evenly over them) where given, else held-out AV-Digits
    scenes (K=3; for a multi-frame model, stacks of held-out pulsing clips), real FSDD + MNIST when given."""
    if videos is not None:
        from edge_sdk.quant.calib import load_calib_set

        clips = load_calib_set(videos, contract, min_clips=1, max_pairs=n)
        return {"wave": clips.waves, "image": clips.images, "source": clips.source}
    from edge_sdk.media.avdigits import AVDigits
    from edge_sdk.media.digits import DEFAULT_TEST_SPEAKERS, load_bank, synthetic_bank

    sr = contract.audio.sample_rate
    speakers = tuple(test_speakers or DEFAULT_TEST_SPEAKERS)
    bank = load_bank(fsdd, mnist, "test", sr, speakers) if fsdd and mnist else synthetic_bank("test", sr)
    if contract.image.frames > 1:  # a model that sees time: held-out pulsing clips' stacks, as it is calibrated
        from edge_sdk.media.avclips import AVDigitClips

        ds = AVDigitClips(bank, contract, n, 3, seed, train=False)
    else:
        ds = AVDigits(bank, contract, n, 3, seed, train=False)
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


TIE = 0.02  # of a heatmap's range: reference cells this close to its peak are ties


def heatmap_agreement(ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> float:
    """Share of inputs whose audio-to-image heatmap peaks in the same map cell as PyTorch's, or
    in a cell PyTorch's heatmap scores within :data:`TIE` of its range from its peak (a tie: an
    untrained or unsure model's map has several near-equal peaks, and either is as right)."""

    def sims(o):
        sim = np.einsum("bd,bdhw->bhw", o["audio_emb"], o["image_map"])
        return sim.reshape(len(sim), -1)

    r, g = sims(ref), sims(got)
    top, low = r.max(1), r.min(1)
    at = r[np.arange(len(r)), g.argmax(1)]
    return float(np.mean((g.argmax(1) == r.argmax(1)) | (at >= top - TIE * (top - low))))


def verdict(parity: dict[str, dict], heatmap: float | None, gate: dict[str, dict] | None, tol: Tolerance) -> list[str]:
    """Every miss beyond ``tol``, each naming the output or metric and by how much (empty: passed).
    A task metric misses when it drops by more than ``tol.metric_drop`` and the drop is larger
    than what its evaluation resolves (``gate``'s ``significant``: the paired 95% interval)."""
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
    for k, g in (gate or {}).items():
        if g["drop"] > tol.metric_drop and g["significant"]:
            resolves = f" (+-{g['ci95']:.3f} at 95% over {g['n']} items)" if g.get("ci95") is not None else ""
            misses.append(f"{k} drops by {g['drop']:.3f} > {tol.metric_drop}{resolves}")
    return misses
