"""Evaluation metrics for audio-visual models, in pure numpy.

Where each definition comes from:

* :func:`pointing_hits` -- the pointing game of Zhang et al., "Top-down Neural
  Attention by Excitation Backprop", ECCV 2016: a hit when the heatmap's arg-max
  lies in the object's box.  We use the box exactly (no 15-pixel tolerance).
* :func:`ciou` / :func:`ciou_summary` -- consensus IoU, cIoU@0.5 and AUC exactly as
  EZ-VSL (Mo & Morgado, ECCV 2022, github.com/stoneMo/EZ-VSL): ``utils.py``
  (``normalize_img``; ``Evaluator.cal_CIOU``, ``finalize_AP50``, ``finalize_cIoU``,
  ``finalize_AUC``) and ``test.py`` (``validate``: ``thr = np.sort(pred.flatten())
  [int(H * W * 0.5)]``), itself taken from LVS (Chen et al., CVPR 2021,
  github.com/hche11/Localizing-Visual-Sounds-the-Hard-Way, ``test.py``; LVS
  thresholds with ``>`` where EZ-VSL uses ``>=``; we follow EZ-VSL).
* :func:`recall_at_k` -- class-level Recall@K for cross-modal retrieval by cosine
  similarity (a hit when any of the K nearest gallery items shares the class).
* :func:`balanced_pair_accuracy` -- balanced accuracy (mean of TPR and TNR) of a
  threshold fitted on one half of the scores and applied to the other half.
* :func:`linear_probe` -- the usual linear-evaluation protocol: multinomial
  logistic regression on frozen, standardised features.
* :func:`sync_accuracy` -- audio-visual synchronisation accuracy: the aligned
  pair must outscore every temporally shifted pair.

Bad inputs (wrong shapes, NaN/inf, empty arrays) raise :class:`ValueError`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["pointing_hits", "ciou", "ciou_summary", "recall_at_k", "recall_hits", "balanced_pair_accuracy", "linear_probe", "sync_accuracy"]


def _arr(x, name: str, ndim: int | None = None, finite: bool = True) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    if finite and not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf values")
    return a


def _labels(y, name: str, n: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"{name} must have shape ({n},), got {y.shape}")
    return y


def pointing_hits(heatmaps, boxes) -> np.ndarray:
    """Pointing game: is each heatmap's arg-max inside its box?

    heatmaps: [N, H, W]; boxes: [N, 4] as (x0, y0, x1, y1) in pixels, x0/y0
    inclusive and x1/y1 exclusive.  Ties go to the first maximum (row-major).
    Returns bool[N].
    """
    h = _arr(heatmaps, "heatmaps", 3)
    b = _arr(boxes, "boxes", 2)
    if b.shape != (h.shape[0], 4):
        raise ValueError(f"boxes must have shape ({h.shape[0]}, 4), got {b.shape}")
    if np.any(b[:, 2] <= b[:, 0]) or np.any(b[:, 3] <= b[:, 1]):
        raise ValueError("boxes must satisfy x1 > x0 and y1 > y0")
    flat = h.reshape(h.shape[0], -1).argmax(axis=1)
    y, x = np.unravel_index(flat, h.shape[1:])
    return (x >= b[:, 0]) & (x < b[:, 2]) & (y >= b[:, 1]) & (y < b[:, 3])


def ciou(heatmap, gt_mask, threshold="median") -> float:
    """Consensus IoU of one heatmap against a ground-truth map, as EZ-VSL.

    1. min-max normalise the heatmap to [0, 1] (left unchanged when constant),
       ``utils.normalize_img``;
    2. threshold: ``"median"`` (default, EZ-VSL ``test.py``) uses
       ``t = sort(pred.ravel())[int(H*W*0.5)]``, so about the top 50% of pixels
       are foreground (more when values tie: a flat map is all foreground): an
       object covering a few percent of the image can never reach 0.5;
       ``"adaptive"`` takes as many top pixels as the ground truth covers
       (``t = sort(pred.ravel())[-round(sum(gt))]``), so a heatmap exactly on the
       object scores 1 whatever its size; a float uses that value on the
       normalised map instead;
    3. ``infer = pred >= t`` and, ``Evaluator.cal_CIOU``,
       ``cIoU = sum(infer*gt) / (sum(gt) + sum(infer*(gt==0)))``.

    gt_mask: [H, W] in [0, 1] (binary, or 0.5-valued consensus maps as Flickr).
    """
    pred = _arr(heatmap, "heatmap", 2)
    gt = _arr(gt_mask, "gt_mask", 2)
    if gt.shape != pred.shape:
        raise ValueError(f"gt_mask shape {gt.shape} != heatmap shape {pred.shape}")
    if gt.min() < 0 or gt.max() > 1 or gt.sum() <= 0:
        raise ValueError("gt_mask must have values in [0, 1] and at least one positive pixel")
    lo, hi = pred.min(), pred.max()
    if hi - lo != 0:
        pred = (pred - lo) / (hi - lo)
    if isinstance(threshold, str):
        if threshold not in ("median", "adaptive"):
            raise ValueError(f'threshold must be "median", "adaptive" or a float, got {threshold!r}')
        ranked = np.sort(pred.ravel())
        t = ranked[int(pred.shape[0] * pred.shape[1] * 0.5)] if threshold == "median" else ranked[-max(1, round(gt.sum()))]
    else:
        t = float(threshold)
        if not np.isfinite(t):
            raise ValueError(f"threshold must be finite, got {threshold!r}")
    infer = (pred >= t).astype(np.float64)
    return float(np.sum(infer * gt) / (np.sum(gt) + np.sum(infer * (gt == 0))))


def ciou_summary(cious) -> dict:
    """cIoU@0.5 and AUC over per-sample cIoUs, as EZ-VSL ``utils.Evaluator``.

    ``ciou50 = mean(cious >= 0.5)`` (``finalize_AP50``, reported as "AP50" /
    "cIoU"); ``auc`` = trapezoidal area (``sklearn.metrics.auc``) of the success
    rate ``mean(cious >= 0.05*i)`` over thresholds ``0.05*i``, ``i = 0..20``
    (``finalize_AUC``); ``mean_ciou = mean(cious)`` (``finalize_cIoU``).
    """
    c = _arr(cious, "cious", 1)
    thr = np.array([0.05 * i for i in range(21)])
    rate = np.array([np.sum(c >= t) / len(c) for t in thr])
    auc = float(np.sum(np.diff(thr) * (rate[1:] + rate[:-1]) / 2))
    return {"ciou50": float(np.mean(c >= 0.5)), "auc": auc, "mean_ciou": float(c.mean())}


def recall_hits(query_emb, query_labels, gallery_emb, gallery_labels, k: int = 1) -> np.ndarray:
    """[Q, k] bool: whether gallery item ``r`` of each query's ranking (by cosine similarity) has
    the query's label; a query scores a hit at K when any of its first K does.

    Embeddings are L2-normalised here. No self-match removal: pass disjoint query and gallery sets.
    """
    q = _arr(query_emb, "query_emb", 2)
    g = _arr(gallery_emb, "gallery_emb", 2)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"embedding dims differ: query {q.shape[1]} vs gallery {g.shape[1]}")
    ql = _labels(query_labels, "query_labels", len(q))
    gl = _labels(gallery_labels, "gallery_labels", len(g))
    if not 1 <= int(k) <= len(g):
        raise ValueError(f"every k must be in [1, {len(g)}] (gallery size), got {k}")
    qn, gn = np.linalg.norm(q, axis=1), np.linalg.norm(g, axis=1)
    if np.any(qn == 0) or np.any(gn == 0):
        raise ValueError("embeddings contain all-zero vectors; cosine similarity is undefined")
    sim = (q / qn[:, None]) @ (g / gn[:, None]).T
    order = np.argsort(-sim, axis=1, kind="stable")[:, : int(k)]
    return gl[order] == ql[:, None]


def recall_at_k(query_emb, query_labels, gallery_emb, gallery_labels, ks=(1, 5)) -> dict:
    """Class-level Recall@K by cosine similarity (see :func:`recall_hits`); ``{k: recall}``."""
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise ValueError(f"every k must be 1 or more, got {ks}")
    match = recall_hits(query_emb, query_labels, gallery_emb, gallery_labels, max(ks))
    return {k: float(match[:, :k].any(axis=1).mean()) for k in ks}


def balanced_pair_accuracy(pos_scores, neg_scores) -> float:
    """Balanced accuracy of a fitted threshold, evaluated on held-out halves.

    Higher scores should mean "positive" (e.g. matching audio-visual pairs).  The
    threshold is fitted on the even-indexed elements of each set: among the
    midpoints between consecutive distinct fitting scores (plus one below and
    one above all of them) take the one maximising ``(TPR + TNR) / 2``, the
    smallest on ties; a score ``> t`` is called positive.  That threshold is
    applied to the odd-indexed elements, and their ``(TPR + TNR) / 2`` is
    returned.  Deterministic; chance level is 0.5.  Needs >= 2 scores per set.
    """
    p, n = _arr(pos_scores, "pos_scores", 1), _arr(neg_scores, "neg_scores", 1)
    if len(p) < 2 or len(n) < 2:
        raise ValueError("pos_scores and neg_scores need at least 2 scores each")
    pf, nf = np.sort(p[0::2]), np.sort(n[0::2])
    u = np.unique(np.concatenate([pf, nf]))
    cand = np.concatenate([[u[0] - 1.0], (u[1:] + u[:-1]) / 2, [u[-1] + 1.0]])
    tpr = 1.0 - np.searchsorted(pf, cand, side="right") / len(pf)
    tnr = np.searchsorted(nf, cand, side="right") / len(nf)
    t = cand[np.argmax(tpr + tnr)]
    return float((np.mean(p[1::2] > t) + np.mean(n[1::2] <= t)) / 2)


def linear_probe(train_x, train_y, test_x, test_y, n_classes: int, epochs: int = 300, l2: float = 1e-4, per_item: bool = False):
    """Test accuracy of a multinomial logistic-regression probe (``per_item``: whether each test
    item was classified correctly, a bool array).

    Features are standardised with the training mean/std; weights (not the bias)
    get an ``l2 * |W|^2 / 2`` penalty.  Trained from zeros for ``epochs`` steps of
    full-batch Nesterov-accelerated gradient descent with step ``1/L``, where
    ``L`` bounds the Hessian of the mean cross-entropy.  Deterministic.
    """
    xtr, xte = _arr(train_x, "train_x", 2), _arr(test_x, "test_x", 2)
    if xtr.shape[1] != xte.shape[1]:
        raise ValueError(f"feature dims differ: train {xtr.shape[1]} vs test {xte.shape[1]}")
    ytr, yte = _labels(train_y, "train_y", len(xtr)), _labels(test_y, "test_y", len(xte))
    for name, y in (("train_y", ytr), ("test_y", yte)):
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_classes:
            raise ValueError(f"{name} must be integers in [0, {n_classes})")
    if epochs < 1 or l2 < 0:
        raise ValueError(f"need epochs >= 1 and l2 >= 0, got {epochs}, {l2}")
    mu, sd = xtr.mean(axis=0), xtr.std(axis=0)
    sd[sd == 0] = 1.0
    a = np.hstack([(xtr - mu) / sd, np.ones((len(xtr), 1))])
    b = np.hstack([(xte - mu) / sd, np.ones((len(xte), 1))])
    onehot = np.eye(n_classes)[ytr]
    reg = np.full((a.shape[1], 1), l2)
    reg[-1] = 0.0  # no penalty on the bias
    lip = 0.5 * np.linalg.eigvalsh(a.T @ a / len(a))[-1] + l2
    w = np.zeros((a.shape[1], n_classes))
    v, tk = w.copy(), 1.0
    for _ in range(epochs):
        z = a @ v
        z -= z.max(axis=1, keepdims=True)
        prob = np.exp(z)
        prob /= prob.sum(axis=1, keepdims=True)
        grad = a.T @ (prob - onehot) / len(a) + reg * v
        w_new = v - grad / lip
        tk_new = (1 + np.sqrt(1 + 4 * tk * tk)) / 2
        v = w_new + ((tk - 1) / tk_new) * (w_new - w)
        w, tk = w_new, tk_new
    correct = (b @ w).argmax(axis=1) == yte
    return correct if per_item else float(np.mean(correct))


def sync_accuracy(aligned_scores, shifted_scores) -> float:
    """Fraction of clips whose aligned score is strictly above all M shifted ones.

    aligned_scores: [N]; shifted_scores: [N, M] (same clip, audio offset in time).
    """
    a = _arr(aligned_scores, "aligned_scores", 1)
    s = _arr(shifted_scores, "shifted_scores", 2)
    if s.shape[0] != a.shape[0]:
        raise ValueError(f"shifted_scores must have {a.shape[0]} rows, got shape {s.shape}")
    return float(np.mean(a > s.max(axis=1)))
