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
    image = torch.rand(2, *spec.input_shapes["image"]) * 255  # a stack model: [T, 3, S, S] each
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


def _edited(**changes):
    """Student S's spec as a dict, with parts updated (a dict) or replaced (anything else)."""
    d = get_spec("avnet_s.avdigits").to_dict()
    for key, value in changes.items():
        d[key] = {**d[key], **value} if isinstance(value, dict) else value
    return d


@pytest.mark.parametrize(
    "d, match",
    [
        (_edited(audio={"sample_rate": "16k"}), r"audio.sample_rate = '16k' is invalid: want an integer above 0"),
        (_edited(audio={"sample_rate": -1}), r"audio.sample_rate = -1"),
        (_edited(audio={"hop_length": 0}), r"audio.hop_length = 0"),
        (_edited(audio={"n_mels": True}), r"audio.n_mels = True"),
        (_edited(audio={"f_max": 9000.0}), r"audio.f_max = 9000.0 is invalid: want above f_min \(60.0\) and at most sample_rate / 2 \(8000.0\)"),
        (_edited(audio={"f_min": 5000.0}), r"audio.f_max = 4000.0 is invalid: want above f_min"),
        (_edited(audio={"f_min": float("nan")}), r"audio.f_min = nan is invalid: want a finite number"),
        (_edited(audio={"n_fft": 32000}), r"audio.n_fft = 32000 is invalid: want an integer above 0 up to 16384"),
        (_edited(audio={"n_fft": 16384, "num_samples": 8000}), r"audio.n_fft = 16384 is invalid: want at most num_samples"),
        (
            _edited(audio={"sample_rate": 10**9, "num_samples": 10**9}),
            r"audio.sample_rate = 1000000000 is invalid: want an integer above 0 up to 384000",
        ),
        (_edited(audio={"hop_length": 8000}), r"audio = '40 mels x 2 frames' is invalid: want at least the audio tower's stem stride \(4\)"),
        (_edited(audio={"samplerate": 16000}), r"malformed: .*samplerate"),
        (_edited(audio=[16000]), r"malformed: .*must be a mapping"),
        (_edited(image={"std": [0.25, 0.0, 0.25]}), r"image.std = \(0.25, 0.0, 0.25\) is invalid: want all above 0"),
        (_edited(image={"mean": [0.5, 0.5]}), r"image.mean = \[0.5, 0.5\] is invalid: want a list of 3 floats"),
        (_edited(image={"size": 4}), r"image.size = 4 is invalid: want at least the image tower's stride \(8\)"),
        (_edited(image_tower={"depths": [1]}), r"image_tower.depths = \(1,\) is invalid: want one depth per channel \(2\)"),
        (_edited(image_tower={"block": "vit"}), r"image_tower.block = 'vit'"),
        (_edited(image_tower={"channels": []}), r"image_tower.channels = \[\] is invalid: want a list of one or more ints"),
        (_edited(embed_dim=0), r"embed_dim = 0"),
        (_edited(role="boss"), r"role = 'boss'"),
        ({k: v for k, v in _edited().items() if k != "image_tower"}, r"malformed: .*image_tower"),
        ([], r"malformed"),
    ],
)
def test_invalid_specs_name_the_field(d, match):
    with pytest.raises(ConfigError, match=match):
        ModelSpec.from_dict(d)


def test_specs_are_normalised_so_equal_specs_have_equal_digests():
    spec = get_spec("avnet_s.avdigits")
    written_as_ints = ModelSpec.from_dict(_edited(audio={"f_max": 4000, "f_min": 60}, image={"mean": [0.5, 0.5, 0.5]}))
    assert written_as_ints == spec and written_as_ints.digest() == spec.digest()
    assert ModelSpec.from_dict(_edited(description="edited")).digest() == spec.digest()
    assert ModelSpec.from_dict(_edited(audio={"sample_rate": 8000})).digest() != spec.digest()


def test_drift_compares_with_the_saved_spec_else_the_registered_preprocessing():
    import dataclasses

    spec = get_spec("avnet_s.avdigits")
    edited = ModelSpec.from_dict(_edited(audio={"sample_rate": 8000}))
    assert edited.drift(spec) == ["audio.sample_rate: 8000 != 16000"]
    assert edited.drift(None) == ["audio.sample_rate: 8000 != 16000"]  # no saved spec: the registry's preprocessing
    old_towers = dataclasses.replace(spec, image_tower=dataclasses.replace(spec.image_tower, stem=16))
    assert old_towers.drift(None) == [] and old_towers.drift(spec) == ["image_tower.stem: 16 != 32"]
    assert dataclasses.replace(edited, name="mine").drift(None) == []  # unregistered and nothing saved: unchecked


def test_specs_that_work_are_accepted_and_subclasses_keep_their_own_fields():
    import dataclasses

    import torch

    from edge_sdk.models.avnet import AVNet
    from edge_sdk.spec import AudioSpec, spec_digest

    d = get_spec("student_s").to_dict()
    d["audio"]["n_mels"] = 12  # 12 -> 3 -> 2 -> 1 rows through the tower: it runs
    spec = ModelSpec.from_dict(d)
    assert AVNet(spec).audio(torch.zeros(1, spec.audio.num_samples)).shape == (1, spec.embed_dim)

    @dataclasses.dataclass(frozen=True)
    class Centered(AudioSpec):
        center: bool = True  # a field the validator does not know passes through

    assert Centered().center and Centered().f_max == 4000.0
    stored = get_spec("student_s").to_dict()  # a manifest's digest is of the dict as stored:
    assert spec_digest({**stored, "description": "edited"}) == spec_digest(stored)  # the description aside
    assert spec_digest({**stored, "audio": {**stored["audio"], "sample_rate": 8000}}) != spec_digest(stored)
