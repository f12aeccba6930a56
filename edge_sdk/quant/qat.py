"""Quantization-aware training, started from the PTQ result: Model Optimizer fake-quant
(ONNX Runtime and TensorRT targets) or PT2E ``prepare_qat_pt2e`` (the XNNPACK target).

The calibrated fake-quant student is fine-tuned to reproduce its own FP32 outputs on
fresh training scenes (self-distillation: embedding cosine, in-batch relation and heatmap
KL, the losses of :mod:`edge_sdk.objectives.distill`), with straight-through gradients
through the quantizers (Jacob et al., CVPR 2018). Batch-norm statistics stay frozen and
the activation ranges keep their calibrated values; only weights move, by a small
learning rate, so QAT repairs what rounding broke instead of retraining the model.
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import torch
from torch.nn import functional as F

__all__ = ["qat_finetune", "pt2e_finetune", "finetune"]

log = logging.getLogger(__name__)


def finetune(
    run,
    params,
    ref,
    fsdd=None,
    mnist=None,
    steps: int = 150,
    batch: int = 32,
    lr: float = 2e-5,
    seed: int = 0,
    progress: bool = True,
    extra_loss=None,
) -> list[dict]:
    """Self-distillation of a quantized student ``run(wave, image) -> outputs`` towards the
    float ``ref`` on fresh training scenes; returns the loss log (a row every 10 steps)."""
    from edge_sdk.media.avdigits import AVDigits
    from edge_sdk.media.digits import load_bank, synthetic_bank

    sr = ref.contract.audio.sample_rate
    bank = load_bank(fsdd, mnist, "train", sr) if fsdd and mnist else synthetic_bank("train", sr)
    data = AVDigits(bank, ref.contract, steps * batch, seed=seed + 101, train=True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    torch.manual_seed(seed)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc="qat", unit="step", dynamic_ncols=True)
    rows = []
    for step in range(steps):
        items = [data[step * batch + i] for i in range(batch)]
        wave = torch.from_numpy(np.stack([it["wave"] for it in items]))
        image = torch.from_numpy(np.stack([it["image"] for it in items]))
        with torch.no_grad():
            target = ref(wave, image)
        out = run(wave, image)
        loss = sum(1 - F.cosine_similarity(out[k].flatten(1), target[k].flatten(1), dim=1).mean() for k in ("audio_emb", "image_emb", "image_map"))
        if extra_loss is not None:
            loss = loss + extra_loss(out, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if (step + 1) % 10 == 0:
            rows.append({"step": step + 1, "loss": round(loss.item(), 5)})
    if bar:
        bar.close()
    return rows


def qat_finetune(
    model,
    calib,
    method: str,
    exclude=(),
    fsdd=None,
    mnist=None,
    steps: int = 150,
    batch: int = 32,
    lr: float = 2e-5,
    seed: int = 0,
    progress: bool = True,
):
    """Model Optimizer QAT: returns the fine-tuned fake-quant model and its loss log."""
    from edge_sdk.objectives.distill import MapKD, RelationKD
    from edge_sdk.quant.fakequant import fake_quantize

    ref = copy.deepcopy(model).eval()
    qmodel = fake_quantize(model, calib, method, exclude).eval()  # eval: BN statistics stay frozen
    relation, heat = RelationKD(qmodel, ref), MapKD(qmodel, ref)

    def extra(out, target):
        fake = {"teacher": target}
        return relation(out, fake, qmodel) + heat(out, fake, qmodel)

    rows = finetune(qmodel, [p for p in qmodel.parameters() if p.requires_grad], ref, fsdd, mnist, steps, batch, lr, seed, progress, extra)
    return qmodel.eval(), rows


def pt2e_finetune(
    prepared: dict, ref, fsdd=None, mnist=None, steps: int = 150, batch: int = 32, lr: float = 2e-5, seed: int = 0, progress: bool = True
) -> list[dict]:
    """QAT of PT2E-prepared towers (``prepare_qat_pt2e``, calibrated) in place; batch norms
    stay in eval mode (frozen statistics), the fake quantizers pass straight-through gradients."""

    def run(wave, image):
        image_emb, image_map = prepared["image"](image)
        return {"audio_emb": prepared["audio"](wave), "image_emb": image_emb, "image_map": image_map}

    params = [p for g in prepared.values() for p in g.parameters() if p.requires_grad]
    return finetune(run, params, ref.eval(), fsdd, mnist, steps, batch, lr, seed, progress)
