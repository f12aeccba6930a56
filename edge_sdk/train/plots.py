"""A training run's pictures: the loss curves of ``metrics.jsonl`` (``loss.png``) and example
localization heatmaps of the trained model (``heatmaps.png``). Written atomically."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from edge_sdk.outputs import atomic_write_bytes

__all__ = ["plot_heatmaps", "plot_losses"]


def plot_heatmaps(model, data, png: Path, offset, n: int = 8) -> None:
    """Example localization heatmaps of ``model`` on ``n`` items of ``data`` spread over it
    (AV-Digits items are labelled with the spoken digit and its box, real clips with their time)."""
    from edge_sdk.eval.evaluate import save_heatmap_grid
    from edge_sdk.heatmap import heatmaps
    from edge_sdk.models.torch_runner import TorchTowers

    items = [data[int(i)] for i in np.linspace(0, len(data) - 1, min(n, len(data))).astype(int)]
    images, waves = np.stack([it["image"] for it in items]), np.stack([it["wave"] for it in items])
    emb = TorchTowers(model)
    heat = heatmaps(emb.embed_audio(waves), emb.embed_image(images)[1], model.spec.image.size, offset)
    labelled = "box" in items[0]  # AV-Digits has ground truth; real videos do not
    save_heatmap_grid(
        png,
        images,
        heat,
        np.stack([it["box"] for it in items]) if labelled else None,
        [f"said {it['label']}" for it in items] if labelled else [f"{it['pts_s']:.1f} s" for it in items],
    )
    model.train()


def plot_losses(metrics_path: Path, png: Path) -> None:
    """Every loss of ``metrics.jsonl`` against the step."""
    if not metrics_path.exists():
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    keys = sorted({k for r in rows for k in r} - {"step", "epoch", "lr", "time_s", "samples_per_s"})
    fig, ax = plt.subplots(figsize=(7, 4))
    for k in keys:
        pts = [(r["step"], r[k]) for r in rows if k in r]
        ax.plot(*zip(*pts), label=k, lw=2 if k == "loss" else 1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(png, buf.getvalue())
