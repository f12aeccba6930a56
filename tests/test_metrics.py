"""Tests for edge_sdk.eval.metrics: hand-computed cases, known answers, bad inputs."""

import numpy as np
import pytest

from edge_sdk.eval.metrics import balanced_pair_accuracy, ciou, ciou_summary, linear_probe, pointing_hits, recall_at_k, sync_accuracy


# ---------------------------------------------------------------- pointing game
def test_pointing_hits_peak_in_and_out_of_box():
    h = np.zeros((4, 6, 8))
    h[:, 2, 5] = 1.0  # peak at row y=2, column x=5 in every map
    boxes = np.array(
        [
            [4, 1, 6, 3],  # contains (x=5, y=2): hit
            [0, 0, 5, 6],  # x1=5 is exclusive: miss
            [0, 0, 8, 2],  # y1=2 is exclusive: miss
            [5, 2, 6, 3],
        ]
    )  # single-pixel box on the peak: hit
    np.testing.assert_array_equal(pointing_hits(h, boxes), [True, False, False, True])


def test_pointing_hits_bad_input():
    with pytest.raises(ValueError, match="boxes must have shape"):
        pointing_hits(np.zeros((2, 4, 4)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="x1 > x0"):
        pointing_hits(np.zeros((1, 4, 4)), [[2, 0, 2, 3]])
    with pytest.raises(ValueError, match="NaN"):
        pointing_hits(np.full((1, 4, 4), np.nan), [[0, 0, 2, 2]])


# ---------------------------------------------------------------- cIoU / AUC
def test_ciou_hand_computed_4x4():
    heat = np.arange(16, dtype=float).reshape(4, 4) * 3 + 7  # scale/offset: normalised away
    gt = np.zeros((4, 4))
    gt[1:3, 0:2] = 1  # values 4, 5, 8, 9
    # median threshold: sorted index 8 -> predicted = values 8..15 (rows 2-3)
    # inter = {8, 9} = 2, sum(gt) = 4, pred outside gt = 6 -> 2 / 10
    assert ciou(heat, gt) == pytest.approx(0.2)
    gt2 = np.zeros((4, 4))
    gt2[2:4, 2:4] = 1  # values 10, 11, 14, 15 -- all predicted, plus 4 false positives
    assert ciou(heat, gt2) == pytest.approx(4 / 8)
    # float threshold on the normalised map: v/15 >= 0.95 -> only value 15
    assert ciou(heat, gt2, threshold=0.95) == pytest.approx(1 / 4)
    assert ciou(heat, gt, threshold=0.95) == 0.0


def test_adaptive_ciou_takes_as_many_pixels_as_the_object_covers():
    heat = np.arange(16, dtype=float).reshape(4, 4)
    gt = np.zeros((4, 4))
    gt[2:4, 2:4] = 1  # values 10, 11, 14, 15: the top 4 are 12..15
    assert ciou(heat, gt, threshold="adaptive") == pytest.approx(2 / (4 + 2))
    small = np.zeros((8, 8))
    small[1, 1] = 1.0  # a heatmap exactly on a one-pixel object
    assert ciou(small, small, threshold="adaptive") == 1.0 and ciou(small, small) < 0.1  # the median threshold cannot score it
    with pytest.raises(ValueError, match="adaptive"):
        ciou(heat, gt, threshold="mean")


def test_ciou_ties_and_consensus_gt():
    # 9 zeros and 7 ones: the sorted[8] threshold is 0, so every pixel is foreground
    heat = np.array([0] * 9 + [1] * 7, dtype=float).reshape(4, 4)
    gt = np.zeros((4, 4))
    gt[0, :2] = 1
    assert ciou(heat, gt) == pytest.approx(2 / (2 + 14))
    # Flickr-style consensus map with 0.5 values: sum(infer*gt) / (sum(gt) + fp)
    heat = np.arange(16, dtype=float).reshape(4, 4)
    gt = np.zeros((4, 4))
    gt[3, :] = 1.0
    gt[2, :] = 0.5
    assert ciou(heat, gt) == pytest.approx((4 * 1 + 4 * 0.5) / (6 + 0))


def _ezvsl_reference(pred_raw, gt_map):
    """Line-by-line transcription of EZ-VSL test.py + utils.Evaluator.cal_CIOU."""
    vmin, vmax = pred_raw.min(), pred_raw.max()
    pred = (pred_raw - vmin) / (vmax - vmin) if vmax - vmin != 0 else pred_raw
    thr = np.sort(pred.flatten())[int(pred.shape[0] * pred.shape[1] * 0.5)]
    infer_map = np.zeros(pred.shape)
    infer_map[pred >= thr] = 1
    return np.sum(infer_map * gt_map) / (np.sum(gt_map) + np.sum(infer_map * (gt_map == 0)))


def test_ciou_matches_ezvsl_transcription_on_random_maps():
    rng = np.random.default_rng(0)
    for _ in range(20):
        heat = rng.normal(size=(224, 224))
        gt = np.zeros((224, 224))
        x0, y0 = rng.integers(0, 150, size=2)
        gt[y0 : y0 + 60, x0 : x0 + 70] = 1
        assert ciou(heat, gt) == pytest.approx(_ezvsl_reference(heat, gt), abs=1e-12)


def test_ciou_summary_hand_computed():
    s = ciou_summary([0.0, 0.52, 1.0, 0.27])
    assert s["ciou50"] == pytest.approx(0.5)
    # per-sample trapezoid areas: 0.025, 0.525, 1.0, 0.275 -> mean 0.45625
    assert s["auc"] == pytest.approx(0.45625)
    assert s["mean_ciou"] == pytest.approx(0.4475)
    assert ciou_summary([1.0, 1.0])["auc"] == pytest.approx(1.0)


def test_ciou_bad_input():
    with pytest.raises(ValueError, match="shape"):
        ciou(np.zeros((4, 4)), np.ones((4, 5)))
    with pytest.raises(ValueError, match="positive pixel"):
        ciou(np.random.rand(4, 4), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="NaN"):
        ciou(np.full((4, 4), np.nan), np.ones((4, 4)))
    with pytest.raises(ValueError, match="threshold"):
        ciou(np.random.rand(4, 4), np.ones((4, 4)), threshold="mean")
    with pytest.raises(ValueError, match="empty"):
        ciou_summary([])


# ---------------------------------------------------------------- retrieval
def test_recall_at_k_constructed_gallery():
    gallery = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.7, 0.7, 0]], dtype=float)
    g_labels = np.array([0, 1, 2, 1])
    queries = np.array(
        [
            [1, 0.05, 0],  # label 1: nearest e0 (label 0), then e3 (label 1)
            [0.3, 0, 1],  # label 0: nearest e2 (label 2), then e0 (label 0)
            [0, 2, 0],
        ]
    )  # label 1: nearest e1 (label 1)
    q_labels = np.array([1, 0, 1])
    r = recall_at_k(queries, q_labels, gallery, g_labels, ks=(1, 2))
    assert r[1] == pytest.approx(1 / 3)
    assert r[2] == pytest.approx(1.0)
    # cosine similarity: rescaling embeddings must not change anything
    assert recall_at_k(queries * 100, q_labels, gallery * [[0.1], [5], [2], [9]], g_labels, ks=(1, 2)) == r


def test_recall_at_k_matches_bruteforce():
    rng = np.random.default_rng(1)
    q, g = rng.normal(size=(40, 8)), rng.normal(size=(60, 8))
    ql, gl = rng.integers(0, 5, 40), rng.integers(0, 5, 60)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    sim = qn @ gn.T
    r = recall_at_k(q, ql, g, gl, ks=(1, 5, 10))
    for k in (1, 5, 10):
        hits = [ql[i] in gl[np.argsort(-sim[i])[:k]] for i in range(40)]
        assert r[k] == pytest.approx(np.mean(hits))


def test_recall_at_k_bad_input():
    q, g = np.ones((3, 4)), np.ones((5, 4))
    with pytest.raises(ValueError, match="NaN"):
        bad = q.copy()
        bad[1, 2] = np.nan
        recall_at_k(bad, [0, 1, 2], g, [0] * 5)
    with pytest.raises(ValueError, match="dims differ"):
        recall_at_k(q, [0, 1, 2], np.ones((5, 3)), [0] * 5)
    with pytest.raises(ValueError, match="query_labels"):
        recall_at_k(q, [0, 1], g, [0] * 5)
    with pytest.raises(ValueError, match="gallery size"):
        recall_at_k(q, [0, 1, 2], g, [0] * 5, ks=(1, 6))
    with pytest.raises(ValueError, match="all-zero"):
        recall_at_k(np.zeros((3, 4)), [0, 1, 2], g, [0] * 5)


# ---------------------------------------------------------------- balanced accuracy
def test_balanced_pair_accuracy_hand_computed():
    # fit halves: pos [2, 4], neg [0, 1] -> threshold 1.5 (the midpoint of 1 and 2)
    # test halves: pos [1.6, 3.0] both > 1.5 (TPR 1); neg [1.0, 2.0]: one <= 1.5 (TNR 0.5)
    assert balanced_pair_accuracy([2, 1.6, 4, 3.0], [0, 1.0, 1, 2.0]) == pytest.approx(0.75)


def test_balanced_pair_accuracy_separable_vs_identical():
    rng = np.random.default_rng(2)
    pos, neg = rng.normal(5, 1, 2000), rng.normal(-5, 1, 2000)
    assert balanced_pair_accuracy(pos, neg) == pytest.approx(1.0)
    assert balanced_pair_accuracy(pos, pos) == pytest.approx(0.5)
    same = balanced_pair_accuracy(rng.normal(0, 1, 2000), rng.normal(0, 1, 2000))
    assert abs(same - 0.5) < 0.05
    assert balanced_pair_accuracy(pos, neg) == balanced_pair_accuracy(pos, neg)


def test_balanced_pair_accuracy_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        balanced_pair_accuracy([1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="NaN"):
        balanced_pair_accuracy([1.0, np.nan], [0.0, 1.0])


# ---------------------------------------------------------------- linear probe
def _blobs(rng, n, d=128, k=10, spread=1.0):
    centres = rng.normal(0, 1, size=(k, d))
    y = np.arange(n) % k
    return centres[y] * 0.5 + rng.normal(0, spread, size=(n, d)), y


def test_linear_probe_separable_blobs_deterministic():
    rng = np.random.default_rng(3)
    x, y = _blobs(rng, 2000)
    acc = linear_probe(x[:1500], y[:1500], x[1500:], y[1500:], n_classes=10)
    assert acc > 0.95
    assert acc == linear_probe(x[:1500], y[:1500], x[1500:], y[1500:], n_classes=10)


def test_linear_probe_finds_low_variance_separating_direction():
    # Separable only along x1 - x0, a direction of tiny variance after standardising
    # (x0, x1 correlate ~0.995); nearest-centroid or a few gradient steps give ~50-80%.
    rng = np.random.default_rng(6)
    n = 2000
    y = np.arange(n) % 2
    x = rng.normal(size=(n, 128))
    u = rng.normal(size=n) * 5
    x[:, 0] = u
    x[:, 1] = u + (2 * y - 1) * 0.5 + rng.normal(size=n) * 0.1
    assert linear_probe(x[:1500], y[:1500], x[1500:], y[1500:], n_classes=2) > 0.98


def test_linear_probe_random_labels_near_chance():
    rng = np.random.default_rng(4)
    x, _ = _blobs(rng, 2000)
    y = rng.integers(0, 10, 2000)
    assert linear_probe(x[:1500], y[:1500], x[1500:], y[1500:], n_classes=10) < 0.4


def test_linear_probe_bad_input():
    x, y = np.ones((10, 4)), np.arange(10) % 2
    with pytest.raises(ValueError, match="feature dims"):
        linear_probe(x, y, np.ones((5, 3)), y[:5], n_classes=2)
    with pytest.raises(ValueError, match="train_y"):
        linear_probe(x, y[:9], x, y, n_classes=2)
    with pytest.raises(ValueError, match="integers in"):
        linear_probe(x, y + 5, x, y, n_classes=2)
    with pytest.raises(ValueError, match="NaN"):
        linear_probe(np.full((10, 4), np.nan), y, x, y, n_classes=2)


# ---------------------------------------------------------------- sync accuracy
def test_sync_accuracy_constructed():
    aligned = np.array([0.9, 0.5, 0.3, 0.7])
    shifted = np.array(
        [
            [0.1, 0.2],  # beats both: hit
            [0.5, 0.1],  # tie is not a win: miss
            [0.4, 0.0],  # loses to one: miss
            [0.6, 0.69],
        ]
    )  # beats both: hit
    assert sync_accuracy(aligned, shifted) == pytest.approx(0.5)


def test_sync_accuracy_bad_input():
    with pytest.raises(ValueError, match="rows"):
        sync_accuracy(np.ones(3), np.ones((4, 2)))
    with pytest.raises(ValueError, match="2-D"):
        sync_accuracy(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        sync_accuracy(np.array([np.nan, 1.0]), np.ones((2, 2)))
