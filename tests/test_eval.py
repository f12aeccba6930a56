import numpy as np
import pytest
import torch

from edge_sdk.eval.evaluate import METRIC_KEYS, EvalConfig, TorchEmbedder, evaluate, format_table, heatmaps
from edge_sdk.models.avnet import AVNet
from edge_sdk.models.shipped import shipped_models
from edge_sdk.spec import get_spec

SMALL = EvalConfig(scenes=40, gallery_per_class=5, probe_images=100, sync_clips=10)


def test_untrained_model_scores_near_chance_on_generated_data():
    torch.manual_seed(0)
    spec = get_spec("avnet_xs.avdigits")
    res = evaluate(TorchEmbedder(AVNet(spec)), spec, cfg=SMALL)
    for k in METRIC_KEYS:
        assert 0.0 <= res[k] <= 1.0, k
    assert res["pointing_acc"] < 0.5 and res["a2i_r1"] < 0.5
    assert "| pointing_acc |" in format_table({"x": res})


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
    res = evaluate(TorchEmbedder(model), model.spec, fsdd, mnist, cfg)
    assert res["pointing_acc"] >= 0.8 and res["a2i_r1"] >= 0.75 and res["probe_audio_acc"] >= 0.8, res
