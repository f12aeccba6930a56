import numpy as np
import pytest
import torch

from edge_sdk.eval.evaluate import METRIC_KEYS, EvalConfig, evaluate, format_table
from edge_sdk.heatmap import heatmaps
from edge_sdk.models.avnet import AVNet
from edge_sdk.models.shipped import shipped_models
from edge_sdk.models.torch_runner import TorchTowers
from edge_sdk.spec import get_spec

SMALL = EvalConfig(scenes=40, gallery_per_class=5, probe_images=100, sync_clips=10)


def test_untrained_model_scores_near_chance_on_generated_data():
    torch.manual_seed(0)
    spec = get_spec("avnet_xs.avdigits")
    res = evaluate(TorchTowers(AVNet(spec)), cfg=SMALL)
    for k in METRIC_KEYS:
        assert 0.0 <= res[k] <= (1000.0 if k.endswith("_ms") else 1.0), k
    assert res["pointing_acc"] < 0.5 and res["a2i_r1"] < 0.5
    table = format_table({"x": res})
    assert "| pointing_acc |" in table and "| sync_acc (chance) |" in table and f"{res['sync_acc']:.3f} (0.20)" in table


def test_heatmaps_follow_the_audio_embedding():
    d = 4
    fmap = np.zeros((1, d, 2, 2), np.float32)
    fmap[0, 1, 1, 0] = 1.0  # channel 1 lives at row 1, col 0
    heat = heatmaps(np.eye(d, dtype=np.float32)[1:2], fmap, 8)
    y, x = np.unravel_index(heat[0].argmax(), heat[0].shape)
    assert y >= 4 and x < 4


@pytest.mark.skipif("avnet_t.avdigits" not in shipped_models(), reason="the teacher is not shipped yet")
def test_shipped_teacher_localizes_and_retrieves_on_real_held_out_data(fsdd, mnist):
    from edge_sdk.models.shipped import resolve_model

    model, meta = resolve_model("avnet_t.avdigits")
    cfg = EvalConfig(scenes=120, gallery_per_class=10, probe_images=500, sync_clips=20)
    assert model.contract.map.offset == tuple(meta["map_offset_px"])  # the checkpoint's offset is part of its contract
    res = evaluate(TorchTowers(model), fsdd, mnist, cfg)
    assert res["n"]["pointing_acc"] == 120 and res["n"]["a2i_r1"] > 0 and res["n"]["probe_audio_acc"] > 0
    # Regression guard under the shipped numbers (README; this smaller gallery scores lower),
    # far above chance (~0.1).
    assert res["pointing_acc"] >= 0.8 and res["a2i_r1"] >= 0.65 and res["probe_audio_acc"] >= 0.8, res


def test_upsampled_map_puts_each_cell_where_its_features_are_centred():
    from edge_sdk.heatmap import upsample_map

    sim = np.zeros((12, 12), np.float32)
    sim[2, 3] = 1.0
    up = upsample_map(sim, 96)
    assert np.unravel_index(up.argmax(), up.shape) == (16, 24)  # stride 8: cell j -> pixel 8 j


def test_bicubic_heatmaps_peak_between_cells_bilinear_ones_on_a_cell():
    from edge_sdk.heatmap import upsample_map

    sim = np.zeros((12, 12), np.float32)
    sim[5, 3], sim[5, 4] = 1.0, 0.9  # the object lies between two cell centres, nearer the first
    linear = upsample_map(sim, 96, interpolation="linear")
    ys, xs = np.nonzero(linear == linear.max())
    assert (ys.min(), xs.min()) == (40, 24)  # exactly on cell (5, 3)
    cubic = upsample_map(sim, 96)
    y, x = np.unravel_index(cubic.argmax(), cubic.shape)
    assert y == 40 and 24 < x < 28


def test_cell_centres_match_the_towers_receptive_fields():
    """A bright dot at pixel (8j, 8i) excites cell (i, j) the most in an untrained image tower."""
    from edge_sdk.models.towers import ConvTower

    spec = get_spec("avnet_t.avdigits")
    torch.manual_seed(0)
    tower = ConvTower(spec.image_tower, 3).eval()
    with torch.no_grad():
        for m in tower.modules():  # averaging filters: the response peaks where the dot is centred
            if isinstance(m, torch.nn.Conv2d):
                m.weight.fill_(1.0 / m.weight[0].numel())
        blank = tower(torch.zeros(1, 3, 96, 96)).sum(1)[0]
        img = torch.zeros(1, 3, 96, 96)
        img[..., 40, 56] = 100.0
        resp = tower(img).sum(1)[0] - blank
    assert np.unravel_index(int(resp.argmax()), resp.shape) == (5, 7)
