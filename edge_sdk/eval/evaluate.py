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
from edge_sdk.heatmap import contract_heatmaps
from edge_sdk.media.avclips import EVAL_SHIFTS, AVDigitClips
from edge_sdk.media.avdigits import AVDigits, place_sound, render_single
from edge_sdk.media.digits import DEFAULT_TEST_SPEAKERS, DigitBank, load_bank, synthetic_bank
from edge_sdk.media.image import still_stack
from edge_sdk.outputs import atomic_write_bytes

__all__ = ["EvalConfig", "evaluate", "map_offset_of", "model_input", "offset_error_ms", "save_heatmap_grid", "format_table"]

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

    @classmethod
    def scaled(cls, scenes: int, **kw) -> EvalConfig:
        """Every stage bounded by ``scenes``: localization scenes, retrieval gallery (a tenth per
        class, 5..50), probe images (4x, up to 2000) and synchrony clips (up to 200)."""
        return cls(scenes=scenes, gallery_per_class=min(50, max(5, scenes // 10)), probe_images=min(2000, 4 * scenes),
                   sync_clips=min(200, scenes), **kw)  # fmt: skip


def model_input(contract, images: np.ndarray) -> np.ndarray:
    """Still images [B, 3, H, W] as the model's visual input (a stack model sees each still T times)."""
    return still_stack(images, contract.image.frames)


def map_offset_of(model, fsdd=None, mnist=None, n: int = 48, test_speakers=DEFAULT_TEST_SPEAKERS) -> tuple[int, int]:
    """Measure a model's map offset on unlabeled *training* scenes (no test data, no labels)."""
    import torch

    from edge_sdk.objectives.zoom_equivariance import estimate_map_offset

    sr = model.contract.audio.sample_rate
    bank = load_bank(fsdd, mnist, "train", sr, tuple(test_speakers)) if fsdd and mnist else synthetic_bank("train", sr)
    ds = AVDigits(bank, model.contract, n, seed=7)
    return estimate_map_offset(model, torch.from_numpy(model_input(model.contract, np.stack([ds[i]["image"] for i in range(n)]))))


def _mil_scores(audio_emb: np.ndarray, image_map: np.ndarray) -> np.ndarray:
    return np.einsum("bd,bdhw->bhw", audio_emb, image_map).reshape(len(audio_emb), -1).max(1)


def _centered_sounds(bank: DigitBank, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([place_sound(s, n, rng, train=False) for s in bank.sounds])


def _singles(bank: DigitBank, per_class: int, size, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.choice(bank.images_of(d), per_class, replace=len(bank.images_of(d)) < per_class) for d in range(10)])
    imgs = np.stack([render_single(bank, int(i), size, rng).transpose(2, 0, 1).astype(np.float32) for i in idx])
    return imgs, bank.image_labels[idx]


def _localization(runner, test: DigitBank, cfg: EvalConfig, res: dict, outcomes: dict) -> tuple:
    """Pointing, cIoU and correspondence on K-digit scenes; the scenes and heatmaps, for the PNG."""
    c = runner.contract
    h, w = c.image.height, c.image.width
    ds = AVDigits(test, c, cfg.scenes, cfg.k, cfg.seed, train=False)
    items = [ds[i] for i in range(len(ds))]
    images, waves = np.stack([it["image"] for it in items]), np.stack([it["wave"] for it in items])
    labels, boxes = np.array([it["label"] for it in items]), np.stack([it["box"] for it in items])
    a = runner.embed_audio(waves)
    _, fmap = runner.embed_image(model_input(c, images))
    heat = contract_heatmaps(c, a, fmap)
    hits = M.pointing_hits(heat, boxes)
    outcomes["pointing_acc"] = hits
    res["map_offset_px"] = list(runner.map_offset)
    res["pointing_acc"] = float(hits.mean())
    res["pointing_acc_bilinear"] = float(M.pointing_hits(contract_heatmaps(c, a, fmap, "linear"), boxes).mean())
    gt = np.zeros((len(boxes), h, w), np.float64)
    for g, (x0, y0, x1, y1) in zip(gt, boxes.astype(int)):
        g[y0:y1, x0:x1] = 1.0
    res.update({k: v for k, v in M.ciou_summary([M.ciou(hm, g) for hm, g in zip(heat, gt)]).items() if k in ("ciou50", "auc")})
    adaptive = M.ciou_summary([M.ciou(hm, g, "adaptive") for hm, g in zip(heat, gt)])
    res["ciou_adaptive"], res["auc_adaptive"] = adaptive["mean_ciou"], adaptive["auc"]
    # Mismatched pairs: each scene with the sound of a later scene whose digit it does not show.
    n = len(items)
    neg_idx = [next(j % n for j in range(i + 1, i + 1 + n) if labels[j % n] not in items[i]["digits"]) for i in range(n)]
    res["avc_acc"] = M.balanced_pair_accuracy(_mil_scores(a, fmap), _mil_scores(a[neg_idx], fmap))
    return images, heat, boxes, labels


def _retrieval_and_probes(runner, test: DigitBank, train: DigitBank, cfg: EvalConfig, res: dict, outcomes: dict) -> None:
    """Class-level retrieval between spoken digits and single-digit images, and linear probes on
    frozen embeddings (train speakers/images -> test speakers/images)."""
    c = runner.contract
    n, size = c.audio.num_samples, (c.image.height, c.image.width)
    test_sounds = runner.embed_audio(_centered_sounds(test, n, cfg.seed))
    gallery, gallery_labels = _singles(test, cfg.gallery_per_class, size, cfg.seed)
    gallery_emb, _ = runner.embed_image(model_input(c, gallery))
    hits = M.recall_hits(test_sounds, test.sound_labels, gallery_emb, gallery_labels, 5)
    outcomes["a2i_r1"] = hits[:, 0]
    res["a2i_r1"], res["a2i_r5"] = float(hits[:, 0].mean()), float(hits[:, :5].any(1).mean())
    res["i2a_r1"] = M.recall_at_k(gallery_emb, gallery_labels, test_sounds, test.sound_labels, ks=(1,))[1]
    train_sounds = runner.embed_audio(_centered_sounds(train, n, cfg.seed + 1))
    correct = M.linear_probe(train_sounds, train.sound_labels, test_sounds, test.sound_labels, 10, per_item=True)
    outcomes["probe_audio_acc"] = correct
    res["probe_audio_acc"] = float(correct.mean())
    probe_imgs, probe_labels = _singles(train, max(1, cfg.probe_images // 10), size, cfg.seed + 2)
    res["probe_image_acc"] = M.linear_probe(runner.embed_image(model_input(c, probe_imgs))[0], probe_labels, gallery_emb, gallery_labels, 10)


def _synchrony(runner, test: DigitBank, cfg: EvalConfig, res: dict) -> None:
    """On pulsing clips: the aligned window must outscore every shifted one (``sync_acc``, chance
    ``sync_chance``), and the audio offset read back from the scores (``offset_mae_ms``)."""
    n = runner.contract.audio.num_samples
    clips = AVDigitClips(test, runner.contract, cfg.sync_clips, cfg.k, cfg.seed, train=False)
    views = [clips[i] for i in range(len(clips))]
    _, cmap = runner.embed_image(np.stack([v["image"] for v in views]))
    aligned = _mil_scores(runner.embed_audio(np.stack([v["wave"] for v in views])), cmap)
    sh = np.stack([v["wave_shifted"] for v in views])
    sh_emb = runner.embed_audio(sh.reshape(-1, n)).reshape(len(views), sh.shape[1], -1)
    res["sync_acc"] = M.sync_accuracy(aligned, np.stack([_mil_scores(sh_emb[:, m], cmap) for m in range(sh.shape[1])], 1))
    res["sync_chance"] = round(1 / (1 + len(EVAL_SHIFTS)), 3)
    res["offset_mae_ms"] = offset_error_ms(runner, clips, cfg.seed)


def offset_error_ms(runner, clips: AVDigitClips, seed: int, reach_s: float = 0.7, step_s: float = 0.05) -> float:
    """Median absolute error of the audio offset estimated on clips whose sound is delayed by a
    known amount drawn from [-0.5, +0.5] s: every candidate offset (``step_s`` apart, up to
    ``reach_s`` either way) is scored at several frames of the clip, the scores averaged over
    the frames, and the best candidate is the estimate (what the live sync task does)."""
    rng = np.random.default_rng(seed + 3)
    sr, n = runner.contract.audio.sample_rate, runner.contract.audio.num_samples
    cands = np.arange(-reach_s, reach_s + step_s / 2, step_s)
    errors = []
    for i in range(len(clips)):
        it, truth = clips.item(i), rng.uniform(-0.5, 0.5)
        ts = list(range(clips.stack - 1, clips.frames, 2))
        _, maps = runner.embed_image(np.stack([clips.stack_at(it["frames"], t) for t in ts]))
        # sound delayed by ``truth``: at candidate s, frame t's window ends at its time + s - truth on the original track
        ends = np.array([[int(it["frame_end"][t]) + round((s - truth) * sr) for s in cands] for t in ts])
        unique, where = np.unique(ends, return_inverse=True)
        emb = runner.embed_audio(np.stack([it["track"][e - n : e] for e in unique]))[where.reshape(ends.shape)]  # [P, S, D]
        scores = np.einsum("psd,pdhw->pshw", emb, maps).reshape(len(ts), len(cands), -1).max(-1).mean(0)
        errors.append(abs(cands[int(scores.argmax())] - truth))
    return round(float(np.median(errors)) * 1000, 1)


def evaluate(runner, fsdd=None, mnist=None, cfg: EvalConfig | None = None, heatmap_png: str | Path | None = None,
             outcomes: dict | None = None) -> dict:  # fmt: skip
    """All metrics for one model (a runner: its ``contract`` says the input sizes and where the map
    looks); real data when both folders are given, else the generated fallback. ``outcomes``, when
    given, is filled with each gated metric's per-item results (hits, correct answers): what a
    paired comparison of two models on the same items needs."""
    cfg, outcomes = cfg or EvalConfig(), outcomes if outcomes is not None else {}
    sr = runner.contract.audio.sample_rate
    if fsdd and mnist:
        test = load_bank(fsdd, mnist, "test", sr, tuple(cfg.test_speakers))
        train = load_bank(fsdd, mnist, "train", sr, tuple(cfg.test_speakers))
    else:
        test, train = synthetic_bank("test", sr), synthetic_bank("train", sr)
    res: dict = {"data": test.source, "scenes": cfg.scenes, "k": cfg.k, "seed": cfg.seed, "test_speakers": list(cfg.test_speakers)}
    log.info("eval: %d scenes (K=%d) from %s", cfg.scenes, cfg.k, test.source)
    images, heat, boxes, labels = _localization(runner, test, cfg, res, outcomes)
    log.info("eval: retrieval and probes")
    _retrieval_and_probes(runner, test, train, cfg, res, outcomes)
    log.info("eval: synchrony on %d clips", cfg.sync_clips)
    _synchrony(runner, test, cfg, res)
    res["n"] = {k: len(v) for k, v in outcomes.items()}  # items behind each gated metric: what one item is worth
    if heatmap_png:
        save_heatmap_grid(heatmap_png, images[:8], heat[:8], boxes[:8], [f"said {x}" for x in labels[:8]])
    return res


def save_heatmap_grid(png: str | Path, images: np.ndarray, heat: np.ndarray, boxes: np.ndarray | None, captions: list[str]) -> None:
    """Images (or stacks: their last frame) with the audio-driven heatmap overlaid; the ground-truth
    box in white when there is one."""
    tiles = []
    for i, (img, h, caption) in enumerate(zip(images, heat, captions)):
        rgb = (img if img.ndim == 3 else img[-1]).transpose(1, 2, 0).astype(np.uint8)  # a stack: its last (present) frame
        hn = ((h - h.min()) / (np.ptp(h) + 1e-9) * 255).astype(np.uint8)
        over = cv2.addWeighted(rgb, 0.5, cv2.applyColorMap(hn, cv2.COLORMAP_JET)[:, :, ::-1], 0.5, 0)
        if boxes is not None:
            x0, y0, x1, y1 = boxes[i].astype(int)
            cv2.rectangle(over, (x0, y0), (x1 - 1, y1 - 1), (255, 255, 255), 1)
        cv2.putText(over, caption, (2, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (255, 255, 255), 1)
        tiles.append(np.concatenate([rgb, over], 0))
    grid = cv2.resize(np.concatenate(tiles, 1), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    _, buf = cv2.imencode(".png", grid[:, :, ::-1])
    atomic_write_bytes(png, buf.tobytes())


METRIC_KEYS = (
    "pointing_acc",
    "pointing_acc_bilinear",
    "ciou50",
    "auc",
    "ciou_adaptive",
    "auc_adaptive",
    "a2i_r1",
    "a2i_r5",
    "i2a_r1",
    "avc_acc",
    "probe_audio_acc",
    "probe_image_acc",
    "sync_acc",
    "offset_mae_ms",
)


def format_table(rows: dict[str, dict]) -> str:
    """A Markdown table: one row per model, one column per metric."""
    head = "| model | " + " | ".join(f"{k} (chance)" if k == "sync_acc" else k for k in METRIC_KEYS) + " |"
    sep = "|---|" + "---:|" * len(METRIC_KEYS)

    def cell(m: dict, k: str) -> str:
        text = f"{m.get(k, float('nan')):{'.0f' if k.endswith('_ms') else '.3f'}}"
        return f"{text} ({m['sync_chance']:.2f})" if k == "sync_acc" and "sync_chance" in m else text  # chance beside it

    body = ["| " + name + " | " + " | ".join(cell(m, k) for k in METRIC_KEYS) + " |" for name, m in rows.items()]
    return "\n".join([head, sep, *body])
