"""``edge-sdk eval``: every AV-Digits metric, on speakers and images never trained on.

The model is seen only through a runner (:class:`edge_sdk.runner.Towers`: ``embed_audio``,
``embed_image``), so the same evaluation runs a PyTorch model
(:class:`edge_sdk.models.torch_runner.TorchTowers`) and, through the export stage, an ONNX
Runtime, TensorRT or ExecuTorch program. Definitions of the metrics: :mod:`.metrics`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_sdk.eval import metrics as M
from edge_sdk.heatmap import heatmaps
from edge_sdk.media.avdigits import AVDigitClips, AVDigits, place_sound, render_single
from edge_sdk.media.digits import DEFAULT_TEST_SPEAKERS, DigitBank, load_bank, synthetic_bank
from edge_sdk.spec import ModelSpec

__all__ = ["EvalConfig", "evaluate", "map_offset_of", "save_heatmap_grid", "format_table"]

log = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    scenes: int = 500
    k: int = 3
    seed: int = 1234
    test_speakers: tuple[str, ...] = DEFAULT_TEST_SPEAKERS
    gallery_per_class: int = 50
    probe_images: int = 2000
    sync_clips: int = 200


def map_offset_of(model, fsdd=None, mnist=None, n: int = 48, test_speakers=DEFAULT_TEST_SPEAKERS) -> tuple[int, int]:
    """Measure a model's map offset on unlabeled *training* scenes (no test data, no labels)."""
    import torch

    from edge_sdk.objectives.zoom_equivariance import estimate_map_offset

    sr = model.spec.audio.sample_rate
    bank = load_bank(fsdd, mnist, "train", sr, tuple(test_speakers)) if fsdd and mnist else synthetic_bank("train", sr)
    ds = AVDigits(bank, model.spec, n, seed=7)
    return estimate_map_offset(model, torch.from_numpy(np.stack([ds[i]["image"] for i in range(n)])))


def _mil_scores(audio_emb: np.ndarray, image_map: np.ndarray) -> np.ndarray:
    return np.einsum("bd,bdhw->bhw", audio_emb, image_map).reshape(len(audio_emb), -1).max(1)


def _centered_sounds(bank: DigitBank, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([place_sound(s, n, rng, train=False) for s in bank.sounds])


def _singles(bank: DigitBank, per_class: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.choice(bank.images_of(d), per_class, replace=len(bank.images_of(d)) < per_class) for d in range(10)])
    imgs = np.stack([render_single(bank, int(i), size, rng).transpose(2, 0, 1).astype(np.float32) for i in idx])
    return imgs, bank.image_labels[idx]


def evaluate(runner, spec: ModelSpec, fsdd=None, mnist=None, cfg: EvalConfig | None = None, heatmap_png: str | Path | None = None) -> dict:
    """All metrics for one model; real data when both folders are given, else the generated fallback."""
    cfg = cfg or EvalConfig()
    sr, n, s = spec.audio.sample_rate, spec.audio.num_samples, spec.image.size
    if fsdd and mnist:
        test = load_bank(fsdd, mnist, "test", sr, tuple(cfg.test_speakers))
        train = load_bank(fsdd, mnist, "train", sr, tuple(cfg.test_speakers))
    else:
        test, train = synthetic_bank("test", sr), synthetic_bank("train", sr)
    res: dict = {"data": test.source, "scenes": cfg.scenes, "k": cfg.k, "seed": cfg.seed, "test_speakers": list(cfg.test_speakers)}

    # Localization and correspondence on K-digit scenes.
    log.info("eval: %d scenes (K=%d) from %s", cfg.scenes, cfg.k, test.source)
    ds = AVDigits(test, spec, cfg.scenes, cfg.k, cfg.seed, train=False)
    items = [ds[i] for i in range(len(ds))]
    images = np.stack([it["image"] for it in items])
    waves = np.stack([it["wave"] for it in items])
    labels = np.array([it["label"] for it in items])
    boxes = np.stack([it["box"] for it in items])
    a = runner.embed_audio(waves)
    _, fmap = runner.embed_image(images)
    heat = heatmaps(a, fmap, s, runner.map_offset)
    res["map_offset_px"] = list(runner.map_offset)
    res["pointing_acc"] = float(M.pointing_hits(heat, boxes).mean())
    res["pointing_acc_bilinear"] = float(M.pointing_hits(heatmaps(a, fmap, s, runner.map_offset, "linear"), boxes).mean())
    gt = np.zeros((len(boxes), s, s), np.float64)
    for g, (x0, y0, x1, y1) in zip(gt, boxes.astype(int)):
        g[y0:y1, x0:x1] = 1.0
    res.update({k: v for k, v in M.ciou_summary([M.ciou(h, g) for h, g in zip(heat, gt)]).items() if k in ("ciou50", "auc")})
    # Mismatched pairs: each scene with the sound of a later scene whose digit it does not show.
    neg_idx = [
        next(j % len(items) for j in range(i + 1, i + 1 + len(items)) if labels[j % len(items)] not in items[i]["digits"]) for i in range(len(items))
    ]
    pos = _mil_scores(a, fmap)
    neg = _mil_scores(a[neg_idx], fmap)
    res["avc_acc"] = M.balanced_pair_accuracy(pos, neg)

    # Cross-modal retrieval: spoken digits vs single-digit images, class-level.
    log.info("eval: retrieval and probes")
    test_sounds = runner.embed_audio(_centered_sounds(test, n, cfg.seed))
    gallery, gallery_labels = _singles(test, cfg.gallery_per_class, s, cfg.seed)
    gallery_emb, _ = runner.embed_image(gallery)
    r = M.recall_at_k(test_sounds, test.sound_labels, gallery_emb, gallery_labels, ks=(1, 5))
    res["a2i_r1"], res["a2i_r5"] = r[1], r[5]
    res["i2a_r1"] = M.recall_at_k(gallery_emb, gallery_labels, test_sounds, test.sound_labels, ks=(1,))[1]

    # Linear probes on frozen embeddings (train speakers/images -> test speakers/images).
    train_sounds = runner.embed_audio(_centered_sounds(train, n, cfg.seed + 1))
    res["probe_audio_acc"] = M.linear_probe(train_sounds, train.sound_labels, test_sounds, test.sound_labels, 10)
    probe_imgs, probe_labels = _singles(train, max(1, cfg.probe_images // 10), s, cfg.seed + 2)
    res["probe_image_acc"] = M.linear_probe(runner.embed_image(probe_imgs)[0], probe_labels, gallery_emb, gallery_labels, 10)

    # Synchrony on pulsing clips: the aligned window must outscore every shifted one.
    log.info("eval: synchrony on %d clips", cfg.sync_clips)
    clips = AVDigitClips(test, spec, cfg.sync_clips, cfg.k, cfg.seed, train=False)
    views = [clips[i] for i in range(len(clips))]
    _, cmap = runner.embed_image(np.stack([v["image"] for v in views]))
    aligned = _mil_scores(runner.embed_audio(np.stack([v["wave"] for v in views])), cmap)
    sh = np.stack([v["wave_shifted"] for v in views])
    sh_emb = runner.embed_audio(sh.reshape(-1, n)).reshape(len(views), sh.shape[1], -1)
    shifted = np.stack([_mil_scores(sh_emb[:, m], cmap) for m in range(sh.shape[1])], 1)
    res["sync_acc"] = M.sync_accuracy(aligned, shifted)

    if heatmap_png:
        save_heatmap_grid(heatmap_png, images[:8], heat[:8], boxes[:8], [f"said {x}" for x in labels[:8]])
    return res


def save_heatmap_grid(png: str | Path, images: np.ndarray, heat: np.ndarray, boxes: np.ndarray | None, captions: list[str]) -> None:
    """Images with the audio-driven heatmap overlaid; the ground-truth box in white when there is one."""
    tiles = []
    for i, (img, h, caption) in enumerate(zip(images, heat, captions)):
        rgb = img.transpose(1, 2, 0).astype(np.uint8)
        hn = ((h - h.min()) / (np.ptp(h) + 1e-9) * 255).astype(np.uint8)
        over = cv2.addWeighted(rgb, 0.5, cv2.applyColorMap(hn, cv2.COLORMAP_JET)[:, :, ::-1], 0.5, 0)
        if boxes is not None:
            x0, y0, x1, y1 = boxes[i].astype(int)
            cv2.rectangle(over, (x0, y0), (x1 - 1, y1 - 1), (255, 255, 255), 1)
        cv2.putText(over, caption, (2, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (255, 255, 255), 1)
        tiles.append(np.concatenate([rgb, over], 0))
    grid = cv2.resize(np.concatenate(tiles, 1), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(png), grid[:, :, ::-1])


METRIC_KEYS = (
    "pointing_acc",
    "pointing_acc_bilinear",
    "ciou50",
    "auc",
    "a2i_r1",
    "a2i_r5",
    "i2a_r1",
    "avc_acc",
    "probe_audio_acc",
    "probe_image_acc",
    "sync_acc",
)


def format_table(rows: dict[str, dict]) -> str:
    """A Markdown table: one row per model, one column per metric."""
    head = "| model | " + " | ".join(METRIC_KEYS) + " |"
    sep = "|---|" + "---:|" * len(METRIC_KEYS)
    body = ["| " + name + " | " + " | ".join(f"{m.get(k, float('nan')):.3f}" for k in METRIC_KEYS) + " |" for name, m in rows.items()]
    return "\n".join([head, sep, *body])
