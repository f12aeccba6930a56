"""Any audio-visual checkpoint through every stage, proved on two architectures that are not ours
(tests/foreign_models.py): an EZ-VSL-style ResNet-18 pair (contract in a TOML file, towers named
``imgnet`` / ``audnet`` / ``trunk``) and an ImageBind-style ViT-S/16 + AST pair (contract as the
module's attribute). The default run uses narrow copies; the slow tests run the real widths
through quantize for all three targets, bench, and run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import foreign_models as fm  # noqa: E402

from edge_sdk.errors import ConfigError  # noqa: E402
from edge_sdk.export.int8_report import verdict  # noqa: E402
from edge_sdk.models.foreign import build_user_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VIDEOS = ROOT.parent / "shared" / "data" / "video"
FACTORY = str(Path(fm.__file__).resolve())


def _videos() -> Path:
    if not any(VIDEOS.glob("*.mp4")):
        pytest.skip("../shared/data/video is absent: the foreign models are calibrated and checked on real clips")
    return VIDEOS


def _write(folder: Path, name: str, size: str) -> dict:
    """The files a user brings: weights (and for EZ-VSL a contract TOML); the CLI's model options."""
    folder.mkdir(parents=True, exist_ok=True)
    model = getattr(fm, f"{name}_{size}")()
    options = ["--model", f"{FACTORY}:{name}_{size}"]
    if name == "ezvsl":
        dim = model.imgnet.head.out_channels
        (folder / "contract.toml").write_text(fm.EZVSL_CONTRACT.replace("{dim}", str(dim)))
        torch.save(model.state_dict(), folder / "weights.pt")  # a state dict, read with weights_only=True
        options += ["--weights", str(folder / "weights.pt"), "--contract", str(folder / "contract.toml")]
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "weights.safetensors"))
        options += ["--weights", str(folder / "weights.safetensors")]  # the contract is the module's own attribute
    return {"options": options, "folder": folder}


def _cli(*args, timeout: int = 900) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "edge_sdk", *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_the_contract_is_measured_and_checked_against_the_module(tmp_path):
    ez = _write(tmp_path / "ez", "ezvsl", "small")
    model = build_user_model(*ez["options"][1::2])
    m = model.contract.map
    assert m.grid == (7, 7) and m.source == "measured" and abs(m.stride[0] - 32) < 2 and abs(m.offset[0]) < 8  # cell j looks at 32 j
    assert model.contract.audio.num_samples == 48000 and model.contract.image.height == 224
    vit = build_user_model(f"{FACTORY}:imagebind_small")
    assert vit.contract.map.grid == (14, 14) and vit.contract.map.stride == (16.0, 16.0) and vit.contract.map.source == "declared"
    contract = (tmp_path / "ez" / "contract.toml").read_text()
    edits = {  # one wrong declaration each, and the error that names it
        (
            'pool = "max"',
            'pool = "max"\nmap_stride = [8, 8]',
        ): r"declares \[outputs\] map_stride = \[8.0, 8.0\], the module's cells look at stride \[3",
        ("embed_dim = 64", "embed_dim = 99"): r"embed_dim = 99, the module gives audio_emb \(64,\)",
        ('audio = "audnet"', 'audio = "audio_net"'): r"no audio tower at .audio_net",
        ("sample_rate = 16000", "sample_rate = 10000000"): r"audio.sample_rate = 10000000 is invalid: want an integer in 1000..384000",
        ('pool = "max"', 'pool = "max"\nfoo = 1'): r"unknown key\(s\) outputs.foo",
    }
    for (old, new), match in edits.items():
        (tmp_path / "bad.toml").write_text(contract.replace(old, new))
        with pytest.raises(ConfigError, match=match):
            build_user_model(ez["options"][1], ez["options"][3], tmp_path / "bad.toml")


def test_an_int8_label_needs_int8_macs_or_a_named_reason():
    honest = {"int8_share": 0.95, "float": [{"node": "stem", "op": "Conv", "macs": 5, "why": "stem reading at most 4 channels"}]}
    assert verdict(honest, "a.onnx") == []
    named = {"int8_share": 0.3, "float": [{"node": "x", "op": "Conv", "macs": 70, "why": "kept float by the sensitivity analysis"}]}
    assert verdict(named, "a.onnx") == []
    silent = {"int8_share": 0.0, "float": [{"node": f"/trunk/conv{i}", "op": "Conv", "macs": 10, "why": "not quantized"} for i in range(5)]}
    (miss,) = verdict(silent, "image.int8.onnx")
    assert "labelled int8 but only 0% of its layers' MACs run INT8" in miss and "/trunk/conv0" in miss


# the ViT through ONNX by default (56 s); the ResNet-18s through ONNX and ExecuTorch (2.1 min) in
# CI's second step (slow); every target of the full-size models: the fullsize test below
@pytest.mark.parametrize(("name", "formats"), [pytest.param("ezvsl", "onnx,executorch", marks=pytest.mark.slow), ("imagebind", "onnx")])
def test_a_foreign_model_goes_from_clips_to_a_bundle_a_live_run_and_an_app_without_torch(tmp_path, name, formats):
    videos = _videos()
    user = _write(tmp_path / "user", name, "small")
    _cli("calib", "--videos", videos, *user["options"], "--n", 40, "--out", tmp_path / "calib")
    bundle = tmp_path / "bundle"
    _cli("export", *user["options"], "--format", formats, "--precision", "fp32,int8", "--calib", tmp_path / "calib",
         "--videos", videos, "--out", bundle)  # fmt: skip
    report = json.loads((bundle / "report.json").read_text())
    assert report["passed"] and report["eval"] is None  # parity on the user's clips decides; no AV-Digits metrics
    rows = {(r["exporter"], r["precision"]): r for r in report["rows"]}
    int8 = [(f, "int8") for f in formats.split(",")]
    assert {("torch", "fp32"), *int8} <= set(rows)
    for row in (rows[k] for k in int8):
        for a in row["int8"]:  # honest INT8 by op type, whatever the towers are called
            acc = a["accounting"]
            unexplained = sum(f["macs"] for f in acc["float"] if f["why"] == "not quantized")
            assert acc["int8_share"] >= 0.75 and unexplained <= 0.2 * acc["macs"], (a["file"], acc)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["model"]["kind"] == "factory" and manifest["contract"]["image"]["height"] == 224
    clip = videos / "chaplin.mp4"
    out = _cli("run", "--bundle", bundle, "--video", f"file://{clip}", "--task", "localize", "--headless", "--max-seconds", 3, "--quiet",
               "--stats", tmp_path / "stats.json", "--events", tmp_path / "events.jsonl")  # fmt: skip
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["frames_out"] > 10 and stats["backend"] == "onnxruntime/int8", out.stdout
    peaks = [json.loads(line)["peak_xy"] for line in (tmp_path / "events.jsonl").read_text().splitlines() if '"result"' in line]
    assert peaks and all(0 <= x <= 640 and 0 <= y <= 480 for x, y in peaks)
    torch_run = ["run", "--bundle", bundle, "--video", f"file://{clip}", "--backend", "torch", "--headless", "--max-seconds", 1, "--quiet"]
    refused = subprocess.run([sys.executable, "-m", "edge_sdk", *map(str, torch_run)], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "does not import unasked" in refused.stderr  # a bundle never runs code by itself
    _cli(*torch_run, "--model", f"tests/{Path(FACTORY).name}:{name}_small")  # the same file name and function, given again, are trusted
    code = ("import sys; sys.modules['torch'] = None\n"
            "from edge_sdk.runtime import Pipeline\n"
            f"with Pipeline.from_bundle({str(bundle)!r}, video={'file://' + str(clip)!r}, task='localize') as p:\n"
            "    results = [r for _, r in zip(range(20), p)]\n"
            "print(len(results), p.backend, 'torch' in sys.modules and sys.modules['torch'] is not None)")  # fmt: skip
    app = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert app.returncode == 0 and app.stdout.split() == ["20", "onnxruntime/int8", "False"], app.stderr[-2000:]


@pytest.mark.fullsize  # 11 (EZ-VSL) and 47 (ImageBind) min on a 2-core CPU: run by hand (pytest -m fullsize), not in CI
@pytest.mark.parametrize("name", ["ezvsl", "imagebind"])
def test_full_size_foreign_models_quantize_for_every_target_bench_and_run(tmp_path, name):
    videos = _videos()
    user = _write(tmp_path / "user", name, "full")
    _cli("calib", "--videos", videos, *user["options"], "--n", 64, "--out", tmp_path / "calib")
    _cli("quantize", *user["options"], "--target", "all", "--calib", tmp_path / "calib", "--videos", videos, "--qat", "off",
         "--out", tmp_path / "q", timeout=3000)  # fmt: skip
    q = json.loads((tmp_path / "q" / "report.json").read_text())
    assert {r["backend"] for r in q["rows"] if r["precision"] == "int8"} == {"onnxruntime", "executorch", "tensorrt"}
    assert [r for r in q["rows"] if r.get("status", "ok") != "ok"] == []  # parity and the INT8 accounting hold for every target
    bundle = tmp_path / "bundle"
    _cli("export", *user["options"], "--format", "all", "--precision", "fp32,int8", "--calib", tmp_path / "calib", "--videos", videos,
         "--out", bundle, timeout=3000)  # fmt: skip
    _cli(
        "bench",
        bundle,
        "--model",
        user["options"][1],
        "--videos",
        videos,
        "--seconds",
        1,
        "--batch",
        8,
        "--json",
        tmp_path / "bench.json",
        "--md",
        tmp_path / "bench.md",
    )
    report = json.loads((tmp_path / "bench.json").read_text())  # the whole report: machine, peaks, rows, ratios
    rows = {(r["backend"], r["precision"]): r for r in report["rows"] if r["status"] == "ok"}
    assert "ort_int8_vs_ort_fp32" in report["ratios"] and report["machine"]["cores"] >= 1 and report["peak_gmacs"]["int8"] > 0
    assert {("torch", "fp32"), ("onnxruntime", "int8"), ("executorch", "int8")} <= set(rows)
    if name == "ezvsl":  # a convolutional model: INT8 pays off on this CPU
        assert rows[("onnxruntime", "int8")]["throughput_fps"] > rows[("onnxruntime", "fp32")]["throughput_fps"]
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    import cv2
    import numpy as np

    cv2.imwrite(str(gallery / "grey.png"), np.full((240, 320, 3), 128, np.uint8))
    clip = videos / "chaplin.mp4"
    _cli("run", "--bundle", bundle, "--video", f"file://{clip}", "--task", "retrieval", "--gallery", gallery, "--headless", "--max-seconds", 3,
         "--quiet", "--stats", tmp_path / "stats.json")  # fmt: skip
    assert json.loads((tmp_path / "stats.json").read_text())["frames_out"] > 5


@pytest.mark.slow  # 53 s on a 2-core CPU; CI runs it in its second step
def test_the_pipeline_deploys_a_foreign_model_from_its_clips(tmp_path):
    videos = _videos()
    user = _write(tmp_path / "user", "ezvsl", "small")
    recipe = tmp_path / "mine.toml"
    recipe.write_text('[pipeline]\nformats = "onnx"\nprecisions = "fp32"\ncalib_pairs = 32\nbench_seconds = 0.2\n')
    _cli("pipeline", "--recipe", recipe, *user["options"], "--videos", videos, "--out", tmp_path / "run", "--quiet")
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["teacher"]["result"] == {"skipped": "your model (--model)"} and state["export"]["result"]["passed"]
    assert not (tmp_path / "run" / "teacher").exists() and "ort_fp32_vs_torch_fp32" in state["bench"]["result"]["ratios"]
    manifest = json.loads((tmp_path / "run" / "bundle" / "manifest.json").read_text())
    assert manifest["model"]["kind"] == "factory" and str(videos) in json.dumps(manifest["inputs"])  # parity on the clips
    assert len(list((tmp_path / "run" / "calib").glob("*.npz"))) == 32


def test_an_attention_product_left_float_by_xnnpack_is_named_not_silent():
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edge_sdk.export.executorch import pt2e_int8_accounting
    from edge_sdk.export.int8_report import ACTIVATION_MATMUL

    torch.manual_seed(0)
    attention = fm.Attention(16, 2).eval()
    x = torch.randn(1, 5, 16)
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(attention, (x,)).module(), quantizer)
    prepared(x)
    acc = pt2e_int8_accounting(convert_pt2e(prepared), (x,))
    assert acc["layers"] == 4 and acc["int8_layers"] == 2  # qkv and proj run INT8; q k^T and a v stay float
    assert [f["why"] for f in acc["float"]] == [ACTIVATION_MATMUL] * 2 and verdict(acc, "attention.int8.pte") == []


def test_a_traced_graph_that_fixes_its_batch_is_exported_for_batch_one_and_fed_in_chunks(tmp_path, caplog):
    import numpy as np

    from edge_sdk.export.graphs import export_tower
    from edge_sdk.runtime.backends.onnxruntime import OrtTowers

    vit = build_user_model(f"{FACTORY}:imagebind_small").eval()  # its forward expands the CLS token with len(t)
    paths = {t: export_tower(vit, t, tmp_path / f"{t}.onnx", dynamo=False) for t in ("audio", "image")}
    assert "fixes its batch size" in caplog.text
    runner = OrtTowers(paths["audio"], paths["image"], vit.contract, batch_size=8)
    images = np.random.default_rng(0).uniform(0, 255, (3, 3, 224, 224)).astype(np.float32)
    emb, fmap = runner.embed_image(images)
    with torch.inference_mode():
        ref = vit.image(torch.from_numpy(images))[0]
    assert runner.batch_size == 1 and fmap.shape == (3, 64, 14, 14) and np.allclose(emb, ref.numpy(), atol=1e-4)


def test_model_optimizer_linears_count_as_int8_behind_their_transposed_weights(tmp_path):
    """TorchScript writes a fake-quant Linear as weight DequantizeLinear -> Transpose -> MatMul;
    the accounting looks through the Transpose (the full-size ViT's TensorRT graph read 0% INT8
    before), and names the attention products Model Optimizer leaves float."""
    import modelopt.torch.quantization as mtq

    from edge_sdk.export.int8_report import ACTIVATION_MATMUL, onnx_int8_accounting

    torch.manual_seed(0)
    attention = fm.Attention(16, 2).eval()
    x = torch.randn(2, 5, 16)
    mtq.quantize(attention, mtq.INT8_DEFAULT_CFG, forward_loop=lambda m: m(x))
    path = tmp_path / "attention.qdq.onnx"
    with torch.no_grad():
        torch.onnx.export(attention, (x,), str(path), dynamo=False, opset_version=17)
    acc = onnx_int8_accounting(path)
    assert acc["layers"] == 4 and acc["int8_layers"] == 2  # qkv and proj run INT8; q k^T and a v stay float
    assert [f["why"] for f in acc["float"]] == [ACTIVATION_MATMUL] * 2 and verdict(acc, "attention.int8.qdq.onnx") == []
