import subprocess
import sys

import pytest
import torch

from edge_sdk.errors import ConfigError
from edge_sdk.models.avnet import OUTPUT_NAMES, AVNet
from edge_sdk.spec import ModelSpec, get_spec, list_specs


def test_registry_has_teacher_and_student():
    roles = {s.role for s in list_specs()}
    assert {"teacher", "student"} <= roles


@pytest.mark.parametrize("spec", list_specs(), ids=lambda s: s.name)
def test_every_registered_spec_builds_and_has_the_contract_outputs(spec):
    model = AVNet(spec).eval()
    wave = torch.randn(2, spec.audio.num_samples) * 0.1
    image = torch.rand(2, 3, spec.image.size, spec.image.size) * 255
    with torch.no_grad():
        out = model(wave, image)
    assert tuple(out) == OUTPUT_NAMES
    d, h = spec.embed_dim, spec.map_size
    assert out["audio_emb"].shape == (2, d) and out["image_emb"].shape == (2, d)
    assert out["image_map"].shape == (2, d, h, h)
    assert torch.allclose(out["audio_emb"].norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(out["image_map"].norm(dim=1), torch.ones(2, h, h), atol=1e-4)


@pytest.mark.parametrize("spec", list_specs(), ids=lambda s: s.name)
def test_spec_round_trips_through_dict(spec):
    assert ModelSpec.from_dict(spec.to_dict()) == spec


def test_unknown_spec_names_the_choices():
    with pytest.raises(ConfigError, match="avnet_t.avdigits"):
        get_spec("avnet_typo")


def test_preprocessing_mismatch_names_fields():
    import dataclasses

    t = get_spec("avnet_t.avdigits")
    other = dataclasses.replace(t, audio=dataclasses.replace(t.audio, sample_rate=8000))
    assert t.preprocessing_mismatch(t) == []
    assert t.preprocessing_mismatch(other) == ["audio.sample_rate: 16000 != 8000"]


def test_import_edge_sdk_does_not_import_torch():
    code = "import sys, edge_sdk, edge_sdk.spec, edge_sdk.errors; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_student_macs_fit_the_edge_budgets():
    from edge_sdk.models.shipped import count_macs

    teacher = count_macs(AVNet(get_spec("avnet_t.avdigits")))
    assert count_macs(AVNet(get_spec("avnet_s.avdigits"))) * 10 <= teacher
    assert count_macs(AVNet(get_spec("avnet_xs.avdigits"))) * 40 <= teacher
