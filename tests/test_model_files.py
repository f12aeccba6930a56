"""Damaged, edited or misplaced model files: checkpoints (weights + sidecar) and bundles
(manifest + artifacts, folders and zips) fail with a ModelFileError naming the file."""

import json
import shutil
import zipfile

import pytest
import torch

from edge_sdk.bundle import read_bundle, shipped_bundles, unpack_zip, write_manifest
from edge_sdk.checkpoint import load_model, load_tensors, save_model, save_tensors
from edge_sdk.errors import ModelFileError
from edge_sdk.manifest import registry_source
from edge_sdk.models.avnet import AVNet
from edge_sdk.spec import get_spec, spec_digest


@pytest.fixture
def ckpt(tmp_path):
    torch.manual_seed(0)
    return save_model(tmp_path / "m.safetensors", AVNet(get_spec("avnet_xs.avdigits")))


def _edit(path, fn):
    """Edit a JSON file in place: ``fn`` changes the dict, or returns what replaces it."""
    d = json.loads(path.read_text())
    new = fn(d)
    path.write_text(json.dumps(d if new is None else new))


def _unstamped(path):
    """As checkpoints were saved before specs were stored with the weights (the shipped ones)."""
    save_tensors(path, load_tensors(path))
    return path


AUDIO_EDITS = [("sample_rate", 8000), ("f_max", 3000.0), ("n_mels", 32)]
IMAGE_EDITS = [("mean", [0.4, 0.5, 0.5]), ("std", [0.3, 0.3, 0.3]), ("size", 128)]


@pytest.mark.parametrize("stamped", [True, False], ids=["stamped", "unstamped"])
@pytest.mark.parametrize("part, key, value", [("audio", *e) for e in AUDIO_EDITS] + [("image", *e) for e in IMAGE_EDITS])
def test_a_sidecar_edited_after_saving_is_refused(ckpt, stamped, part, key, value):
    if not stamped:
        _unstamped(ckpt)
    _edit(ckpt.with_suffix(".json"), lambda d: d["spec"][part].update({key: value}))
    against = "the spec saved with the weights" if stamped else "the registered avnet_xs.avdigits"
    with pytest.raises(
        ModelFileError, match=f"{ckpt} does not match spec avnet_xs.avdigits in its sidecar m.json \\(sidecar != {against}\\): {part}.{key}"
    ):
        load_model(ckpt)


def test_stored_spec_catches_tower_edits_and_ignores_the_description(ckpt):
    _edit(ckpt.with_suffix(".json"), lambda d: d["spec"].update(description="my notes"))
    load_model(ckpt)
    _edit(ckpt.with_suffix(".json"), lambda d: d["spec"]["image_tower"].update(expand=3))
    with pytest.raises(ModelFileError, match="image_tower.expand: 3 != 2"):
        load_model(ckpt)


def test_a_checkpoint_saved_without_a_stored_spec_falls_back_to_shapes_for_its_towers(ckpt):
    _unstamped(ckpt)
    _edit(ckpt.with_suffix(".json"), lambda d: d["spec"]["audio_tower"].update(expand=3))
    with pytest.raises(ModelFileError, match="wrong shapes"):  # the registry compares preprocessing only
        load_model(ckpt)


def test_weights_copied_out_without_their_sidecar_load_by_the_spec_saved_inside(ckpt, tmp_path):
    alone = tmp_path / "copy" / "model.safetensors"  # a bundle's model.safetensors, copied out on its own
    alone.parent.mkdir()
    shutil.copy(ckpt, alone)
    model, meta = load_model(alone)
    assert model.spec.to_dict() == load_model(ckpt)[0].spec.to_dict() and meta["spec"]["name"] == "avnet_xs.avdigits"
    with pytest.raises(ModelFileError, match="was trained for spec avnet_xs.avdigits, not avnet_s.avdigits"):
        load_model(alone, get_spec("avnet_s.avdigits"))
    save_tensors(alone, load_tensors(alone))  # weights with no spec of their own still need the sidecar
    with pytest.raises(ModelFileError, match="model.json is missing, and model.safetensors stores no spec of its own"):
        load_model(alone)


def test_saved_weights_are_readable_by_other_users(ckpt):
    import os
    import stat

    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(ckpt.stat().st_mode) == 0o666 & ~umask  # safetensors alone would make it 0600


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: [], "m.json: a JSON list, not an object"),
        (lambda d: d.pop("spec") and None, 'm.json has no "spec"'),
        (lambda d: d["spec"]["audio"].update(sample_rate="16k"), r"m.json: model spec audio.sample_rate = '16k' is invalid"),
        (lambda d: d["spec"]["audio"].update(sample_rate=-1), "m.json: model spec audio.sample_rate = -1"),
        (lambda d: d["spec"]["audio"].update(hop_length=0), "m.json: model spec audio.hop_length = 0"),
        (lambda d: d["spec"]["audio"].update(samplerate=16000), "m.json: model spec is malformed: .*samplerate"),
    ],
)
def test_a_malformed_sidecar_names_the_sidecar(ckpt, edit, match):
    _edit(ckpt.with_suffix(".json"), edit)
    with pytest.raises(ModelFileError, match=match):
        load_model(ckpt)


def test_non_finite_weights_are_refused_at_load(ckpt):
    state = load_tensors(ckpt)
    name = sorted(k for k, v in state.items() if v.is_floating_point())[3]
    state[name].view(-1)[0] = float("nan")
    save_tensors(ckpt, state)
    with pytest.raises(ModelFileError, match=f"{ckpt}: tensor '{name}' holds NaN or inf") as e:
        load_model(ckpt)
    assert "training diverged" in e.value.fix


# Bundles --------------------------------------------------------------------------------


@pytest.fixture
def bundle(tmp_path):
    folder = tmp_path / "B"
    folder.mkdir()
    for name in ("audio.onnx", "image.onnx"):
        (folder / name).write_bytes(name.encode())
    spec = get_spec("avnet_s.avdigits")
    write_manifest(
        folder,
        spec.contract((2, 2)),
        registry_source(spec),
        [
            {"file": "audio.onnx", "tower": "audio", "format": "onnx", "backend": "onnxruntime", "precision": "fp32"},
            {"file": "image.onnx", "tower": "image", "format": "onnx", "backend": "onnxruntime", "precision": "fp32"},
        ],
    )
    return folder


def _legacy(m: dict) -> None:
    """A manifest as schema 1 wrote it: the spec and the map offset, no contract."""
    spec = m.pop("model")["spec"]
    m.update(schema=1, spec=spec, spec_sha256=spec_digest(spec), map_offset_px=[2, 2])
    m.pop("contract"), m.pop("contract_sha256")


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda m: [], "is not an edge_sdk bundle manifest"),
        (lambda m: m.pop("artifacts") and None, '"artifacts" is missing'),
        (lambda m: m["artifacts"][0].pop("sha256") and None, r"artifact 0 \('audio.onnx'\) lacks or mistypes \['sha256'\]"),
        (lambda m: m["artifacts"][1].update(file=None), r"artifact 1 \(None\) lacks or mistypes \['file'\]"),
        (lambda m: m["artifacts"].append("x.onnx"), r"artifact 2 \('x.onnx'\) lacks or mistypes"),
        (lambda m: m.pop("contract") and None, "model contract"),
        (lambda m: m["contract"]["audio"].update(sample_rate="16k"), "model contract audio.sample_rate = '16k' is invalid"),
        (
            lambda m: m["contract"]["audio"].update(sample_rate=10**9, seconds=10**9),
            r"model contract audio.sample_rate = 1000000000 is invalid: want an integer in 1000..384000",
        ),
        (lambda m: m["contract"]["map"].update(offset=[float("nan"), 0]), r"model contract map.offset\[0\] = nan is invalid: want a finite number"),
        (lambda m: m["contract"]["map"].update(offset=[1e308, 0]), r"model contract map.offset\[0\] = 1e\+308 is invalid"),
        (lambda m: m.update(model={"kind": "factory", "factory": 3}), '"model.factory" = 3 is not'),
        (lambda m: _legacy(m) or m.update(map_offset_px="x"), "\"map_offset_px\" = 'x' is not two finite numbers"),
        (lambda m: _legacy(m) or (m.pop("spec") and None), '"spec" is missing'),
        (lambda m: _legacy(m) or m["spec"]["audio"].update(sample_rate="16k"), "model spec audio.sample_rate = '16k' is invalid"),
    ],
)
def test_a_malformed_manifest_names_manifest_json_and_the_key(bundle, edit, match):
    _edit(bundle / "manifest.json", edit)
    with pytest.raises(ModelFileError, match=f"{bundle / 'manifest.json'}:? {match}") as e:
        read_bundle(bundle)
    assert "edge-sdk" in e.value.fix


def test_a_manifest_contract_edited_after_export_is_refused(bundle):
    assert read_bundle(bundle).contract.map.offset == (2.0, 2.0)
    _edit(bundle / "manifest.json", lambda m: m["contract"]["audio"].update(sample_rate=8000))
    with pytest.raises(ModelFileError, match=r"its contract \(avnet_s.avdigits\) was edited after export"):
        read_bundle(bundle)


@pytest.mark.parametrize("stamped", [True, False], ids=["spec_sha256", "legacy"])
def test_a_schema_1_manifest_loads_and_its_edited_spec_is_refused(bundle, stamped):
    _edit(bundle / "manifest.json", _legacy)
    if not stamped:
        _edit(bundle / "manifest.json", lambda m: m.pop("spec_sha256") and None)
    b = read_bundle(bundle)
    assert b.contract == get_spec("avnet_s.avdigits").contract((2, 2)) and b.spec.name == "avnet_s.avdigits"
    _edit(bundle / "manifest.json", lambda m: m["spec"]["audio"].update(sample_rate=8000))
    with pytest.raises(ModelFileError, match="not the one the bundle was exported with: .*audio.sample_rate: 8000 != 16000"):
        read_bundle(bundle)
    _edit(bundle / "manifest.json", lambda m: m["spec"]["audio"].update(sample_rate=16000) or m["spec"]["audio_tower"].update(stem=16))
    if stamped:  # the digest sees edits the registry comparison leaves to the tensor shapes
        with pytest.raises(ModelFileError, match=r"its spec_sha256 no longer matches"):
            read_bundle(bundle)
    else:
        read_bundle(bundle)


def test_a_shipped_bundle_name_is_a_bundle_path_and_a_member_file_is_not_a_checkpoint(bundle):
    if "avnet_s-demo" in shipped_bundles():
        assert read_bundle("avnet_s-demo").folder == shipped_bundles()["avnet_s-demo"]
    with pytest.raises(ModelFileError, match="bundle no_such_bundle does not exist"):
        read_bundle("no_such_bundle")
    for name in ("audio.onnx", "manifest.json"):
        with pytest.raises(ModelFileError, match=f"{bundle / name} is one file of a bundle -- fix: pass the bundle folder {bundle}"):
            load_model(bundle / name)
    with pytest.raises(ModelFileError, match=f"{bundle} is a bundle, not a checkpoint"):
        load_model(bundle)


def _zip(src, dest, prefix=""):
    with zipfile.ZipFile(dest, "w") as z:
        for f in sorted(src.iterdir()):
            z.write(f, prefix + f.name)
    return dest


def test_a_zip_of_the_bundle_folder_itself_unpacks(bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_SDK_CACHE", str(tmp_path / "cache"))
    b = read_bundle(_zip(bundle, tmp_path / "sub.zip", prefix="B/"))  # what `zip -r sub.zip B/` makes
    assert b.find("onnxruntime", "fp32").files["audio"].read_bytes() == b"audio.onnx"
    assert [p.name for p in (tmp_path / "cache" / "bundles").iterdir()] == [b.folder.name]


def test_a_zip_without_a_manifest_at_its_top_is_refused_and_leaves_nothing(bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_SDK_CACHE", str(tmp_path / "cache"))
    (tmp_path / "two").mkdir()
    shutil.copytree(bundle, tmp_path / "two" / "B")
    (tmp_path / "two" / "notes.txt").write_text("x")
    with zipfile.ZipFile(tmp_path / "nested.zip", "w") as z:
        for f in sorted((tmp_path / "two").rglob("*")):
            z.write(f, f.relative_to(tmp_path / "two"))
    for _ in range(2):  # the same answer on a retry: nothing half-unpacked is left behind
        with pytest.raises(ModelFileError, match="nested.zip: manifest.json is at B/manifest.json inside the zip") as e:
            read_bundle(tmp_path / "nested.zip")
        assert "zip the bundle folder's contents" in e.value.fix
    (bundle / "manifest.json").unlink()
    with pytest.raises(ModelFileError, match="none.zip holds no manifest.json"):
        read_bundle(_zip(bundle, tmp_path / "none.zip"))
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache" / "bundles").iterdir())


def test_a_zip_whose_member_data_is_damaged_is_refused_by_name(bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_SDK_CACHE", str(tmp_path / "cache"))
    (bundle / "audio.onnx").write_bytes(bytes(range(256)) * 2000)  # compressible: a deflate stream to damage
    spec = get_spec("avnet_s.avdigits")
    write_manifest(bundle, spec.contract(), registry_source(spec), json.loads((bundle / "manifest.json").read_text())["artifacts"])
    path = tmp_path / "d.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(bundle.iterdir()):
            z.write(f, f.name)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("audio.onnx")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)  # the member's compressed bytes
    data[start + 20 : start + 60] = bytes(40)
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="d.zip: not a readable zip") as e:  # zlib's or the CRC's error, not a traceback
        read_bundle(path)
    assert "damaged" in e.value.fix


def test_a_damaged_cached_unpack_is_unpacked_again_from_the_zip(bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_SDK_CACHE", str(tmp_path / "cache"))
    z = _zip(bundle, tmp_path / "b.zip")
    cached = unpack_zip(z)
    (cached / "audio.onnx").write_bytes(b"damaged")
    assert read_bundle(z).folder == cached and (cached / "audio.onnx").read_bytes() == b"audio.onnx"
    (cached / "manifest.json").unlink()  # a cached unpack cut short
    assert read_bundle(z).folder == cached


def test_a_run_folder_or_a_pickle_is_named_for_what_it_is(ckpt, tmp_path):
    from edge_sdk.bundle import read_bundle

    with pytest.raises(ModelFileError, match="is a folder, not a checkpoint") as e:
        load_model(ckpt.parent)
    assert e.value.fix.startswith("pass a .safetensors checkpoint")  # its file is m.safetensors, not model.safetensors
    (tmp_path / "run").mkdir()
    save_model(tmp_path / "run" / "model.safetensors", load_model(ckpt)[0])
    with pytest.raises(ModelFileError, match="has no manifest.json") as e:
        read_bundle(tmp_path / "run")
    assert e.value.fix == f"pass the checkpoint {tmp_path / 'run' / 'model.safetensors'}"
    (tmp_path / "model.pt").write_bytes(b"\x80\x04")
    with pytest.raises(ModelFileError, match="model.pt is not a safetensors checkpoint"):
        load_model(tmp_path / "model.pt")
