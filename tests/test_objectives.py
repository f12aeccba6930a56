import math

import pytest
import torch
from torch.nn import functional as F

from edge_sdk.models.avnet import AVNet
from edge_sdk.objectives import DISTILL_OBJECTIVES, OBJECTIVES
from edge_sdk.objectives.contrastive import mil_similarity
from edge_sdk.objectives.zoom_equivariance import estimate_map_offset
from edge_sdk.spec import get_spec

SPEC = get_spec("avnet_xs.avdigits")


def _batch(b=4, shifted=True):
    torch.manual_seed(0)
    batch = {"wave": torch.randn(b, SPEC.audio.num_samples) * 0.1, "image": torch.rand(b, 3, SPEC.image.size, SPEC.image.size) * 255}
    if shifted:
        batch["wave_shifted"] = torch.randn(b, 2, SPEC.audio.num_samples) * 0.1
    return batch


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_every_objective_gives_a_finite_loss_with_gradients(name):
    model = AVNet(SPEC).train()
    batch = _batch()
    if name in DISTILL_OBJECTIVES:  # against a different (random) teacher of another width
        teacher = AVNet(get_spec("teacher")).eval()
        obj = OBJECTIVES[name](model, teacher)
        with torch.no_grad():
            batch["teacher"] = teacher(batch["wave"], batch["image"])
    else:
        obj = OBJECTIVES[name](model)
    loss = obj(model(batch["wave"], batch["image"]), batch, model)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_mil_similarity_is_max_over_positions():
    a = F.normalize(torch.randn(3, 8), dim=-1)
    m = F.normalize(torch.randn(2, 8, 4, 5), dim=1)
    want = torch.stack([torch.stack([(a[i][:, None, None] * m[j]).sum(0).max() for j in range(2)]) for i in range(3)])
    assert torch.allclose(mil_similarity(a, m), want, atol=1e-6)


def _out(a, v):
    return {"audio_emb": a, "image_emb": v, "image_map": v[:, :, None, None].expand(-1, -1, 2, 2)}


@pytest.mark.parametrize("name", ["infonce", "mil_nce"])
def test_contrastive_loss_is_chance_for_constant_and_low_for_matched(name):
    obj = OBJECTIVES[name](AVNet(SPEC))
    b, d = 8, SPEC.embed_dim
    const = F.normalize(torch.ones(b, d), dim=-1)
    assert math.isclose(obj(_out(const, const), {}, None).item(), math.log(b), rel_tol=1e-4)
    matched = F.normalize(torch.eye(b, d), dim=-1)
    assert obj(_out(matched, matched), {}, None).item() < 0.01


def test_avc_head_learns_to_separate_matched_pairs():
    model = AVNet(SPEC)
    obj = OBJECTIVES["avc"](model)
    opt = torch.optim.Adam(obj.parameters(), 1e-2)
    e = F.normalize(torch.randn(16, SPEC.embed_dim), dim=-1)
    first = None
    for _ in range(60):
        loss = obj(_out(e, e), {}, None)
        first = first or loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_sync_needs_clips():
    model = AVNet(SPEC)
    batch = _batch(shifted=False)
    with pytest.raises(ValueError, match="clips"):
        OBJECTIVES["sync"](model)(model(batch["wave"], batch["image"]), batch, model)


def test_byol_target_is_an_ema_of_the_online_encoder():
    model = AVNet(SPEC)
    obj = OBJECTIVES["byol_audio"](model, momentum=0.5)
    target_before = [p.clone() for p in obj.target.parameters()]
    with torch.no_grad():
        for p in model.audio.parameters():
            p.add_(1.0)
    obj.update_target(model)
    online = list(model.audio.parameters())
    for before, after, o in zip(target_before, obj.target[0].parameters(), online):
        assert torch.allclose(after, 0.5 * before + 0.5 * o)
    assert not any(p.requires_grad for p in obj.target.parameters())


def test_zoom_equivariance_loss_and_offset_estimate():
    """A map that is a fixed function of the pixel under each cell is zoom-equivariant."""
    obj = OBJECTIVES["zoom_eq"](AVNet(SPEC), fraction=1.0)
    s, h = SPEC.image.size, SPEC.map_size

    class FakeImage(torch.nn.Module):
        def __init__(self, shift):
            super().__init__()
            self.shift = shift

        def forward(self, image):  # sample the image at each cell centre (pixel 8 j), shifted
            idx = (torch.arange(h) * (s // h) + self.shift).clamp(0, s - 1)
            fmap = image[:, :, idx][:, :, :, idx]
            return None, F.normalize(fmap, dim=1)

    class Fake(torch.nn.Module):
        def __init__(self, shift):
            super().__init__()
            self.image = FakeImage(shift)

    yy, xx = torch.meshgrid(torch.arange(s) * 6.28 / 64, torch.arange(s) * 6.28 / 64, indexing="ij")
    image = torch.stack([torch.sin(xx), torch.cos(yy), torch.sin(xx + yy)], 0)[None].repeat(2, 1, 1, 1)
    losses = {}
    for shift in (0, 5):
        fake = Fake(shift)
        assert estimate_map_offset(fake, image, radius=6) == (shift, shift)  # measured without labels
    for shift in (0, -6):
        fake = Fake(shift)
        _, fmap = fake.image(image)
        losses[shift] = obj({"image_map": fmap}, {"image": image}, fake).item()
    assert losses[0] < 0.01 and losses[-6] > 10 * losses[0], losses


@pytest.mark.parametrize("spec", ["avnet_t.avdigits", "avnet_s.avdigits", "avnet_xs.avdigits"])
def test_masked_av_reconstructs_masked_patches_and_learns(spec):
    from edge_sdk.objectives.masked import MaskedAV

    torch.manual_seed(0)
    model = AVNet(get_spec(spec)).train()
    obj = MaskedAV(model, ratio=0.5, fraction=1.0)
    batch = _batch(8, shifted=False)
    batch["image"][:, :, 40:60, 40:60] = 250.0  # structure to reconstruct
    opt = torch.optim.Adam([*model.parameters(), *obj.parameters()], 3e-3)
    losses = []
    for _ in range(15):
        torch.manual_seed(1)  # the same masks each step: the loss must fall
        loss = obj(None, batch, model)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert math.isfinite(losses[0]) and losses[-1] < 0.8 * losses[0]


def test_sinkhorn_balances_clusters_and_the_cluster_loss_needs_agreement():
    from edge_sdk.objectives.clusters import CrossModalClusters, sinkhorn

    torch.manual_seed(0)
    scores = 0.1 * torch.randn(64, 8)
    scores[:, 0] += 0.3  # every item prefers cluster 0
    q = sinkhorn(scores)
    assert torch.allclose(q.sum(1), torch.ones(64), atol=1e-3)
    assert q.sum(0).max() < 1.5 * 64 / 8 and q.argmax(1).unique().numel() > 4  # balanced: cluster 0 does not take the batch
    model = AVNet(SPEC).eval()
    obj = CrossModalClusters(model, clusters=8)
    e = F.normalize(torch.randn(16, SPEC.embed_dim), dim=1)
    same = obj({"audio_emb": e, "image_map": e[:, :, None, None].expand(-1, -1, 2, 2)}, {}, model)
    other = obj({"audio_emb": e, "image_map": e.roll(1, 0)[:, :, None, None].expand(-1, -1, 2, 2)}, {}, model)
    assert torch.isfinite(same) and same < other  # audio and image that agree predict their shared assignment better
