import numpy as np
import pytest
import torch

from edge_sdk.models.frontend import ImageNormalize, LogMel, mel_edges, mel_filterbank
from edge_sdk.spec import AudioSpec, ImageSpec


def test_logmel_matches_numpy_stft_reference():
    spec = AudioSpec()
    rng = np.random.default_rng(0)
    t = np.arange(spec.num_samples) / spec.sample_rate
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.normal(size=t.size)).astype(np.float32)
    got = LogMel(spec)(torch.from_numpy(x)[None])[0, 0].numpy()

    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(spec.n_fft) / spec.n_fft)
    frames = np.stack([x[i : i + spec.n_fft] for i in range(0, spec.num_samples - spec.n_fft + 1, spec.hop_length)])
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    fb = mel_filterbank(spec, LogMel(spec).n_bins)
    want = np.log(power[:, : fb.shape[1]] @ fb.T + 1e-6).T
    assert got.shape == (spec.n_mels, spec.num_frames)
    np.testing.assert_allclose(got, want, atol=2e-3, rtol=1e-3)


def test_logmel_peaks_at_the_tone_frequency():
    spec = AudioSpec()
    t = np.arange(spec.num_samples) / spec.sample_rate
    low = LogMel(spec)(torch.from_numpy(np.sin(2 * np.pi * 300 * t).astype(np.float32))[None])[0, 0].mean(1)
    high = LogMel(spec)(torch.from_numpy(np.sin(2 * np.pi * 2500 * t).astype(np.float32))[None])[0, 0].mean(1)
    assert int(low.argmax()) < int(high.argmax())


def test_mel_filters_are_all_non_empty_and_normalised():
    fb = mel_filterbank(AudioSpec(), 66)
    assert (fb.sum(1) > 0.99).all() and (fb >= 0).all()


def test_image_normalize_uses_the_spec():
    spec = ImageSpec(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    x = torch.full((1, 3, 4, 4), 255.0)
    assert torch.allclose(ImageNormalize(spec)(x), torch.full_like(x, 2.0))


def test_logmel_stays_fp32_under_bf16_autocast():
    spec = AudioSpec()
    x = torch.randn(2, spec.num_samples) * 0.1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = LogMel(spec)(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, LogMel(spec)(x))  # bf16 would be off by far more (8-bit mantissa)


def _front_end_graph(spec: AudioSpec, path):
    """The log-mel front end alone, exported as a tower's graph is (dynamo, then lean_graph)."""
    import types

    from edge_sdk.export.graphs import lean_graph

    class Tower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.frontend = LogMel(spec)

        def forward(self, wave):
            return self.frontend(wave)

    torch.onnx.export(
        Tower().eval(),
        (torch.zeros(2, spec.num_samples),),
        str(path),
        input_names=["wave"],
        output_names=["logmel"],
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    lean_graph(path, types.SimpleNamespace(audio=spec))
    return Tower().eval()


@pytest.mark.parametrize("n_mels,computed", [(40, True), (128, False)])
def test_exported_front_end_computes_its_matrices(tmp_path, n_mels, computed):
    """The DFT basis and the mel filters are nodes, not stored weights, and the graph gives
    what the module gives; filters that needed the nearest-bin fallback (128 mel bands over
    129 bins: some narrower than a bin) stay stored."""
    import onnx
    import onnxruntime as ort

    spec = AudioSpec(n_mels=n_mels)
    edges, f = mel_edges(spec), np.arange(LogMel(spec).n_bins) * spec.sample_rate / spec.n_fft
    rise, fall = (f - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None], (edges[2:, None] - f) / (edges[2:] - edges[1:-1])[:, None]
    assert (np.minimum(rise, fall).max(1) <= 0).any() != computed  # a band that catches no bin
    tower = _front_end_graph(spec, tmp_path / "f.onnx")
    graph = onnx.load(str(tmp_path / "f.onnx")).graph
    stored = {t.name for t in graph.initializer}
    assert "frontend.dft" not in stored and ("frontend.mel" in stored) != computed
    x = (np.random.default_rng(0).normal(size=(2, spec.num_samples)) * 0.1).astype(np.float32)
    got = ort.InferenceSession(str(tmp_path / "f.onnx"), providers=["CPUExecutionProvider"]).run(None, {"wave": x})[0]
    with torch.no_grad():
        want = tower(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=2e-4)


@pytest.mark.parametrize("fields", [{}, {"n_fft": 400, "f_max": 8000.0}, {"n_fft": 512, "hop_length": 128, "n_mels": 64, "f_max": 8000.0}])
def test_two_stage_dft_gives_the_stored_basis_values(fields):
    spec = AudioSpec(**fields)
    direct, two_stage = LogMel(spec), LogMel(spec)
    assert two_stage.use_two_stage()
    x = torch.randn(3, spec.num_samples) * 0.3
    torch.testing.assert_close(two_stage(x), direct(x), atol=5e-5, rtol=0)
    assert not LogMel(AudioSpec(n_fft=251)).use_two_stage()  # prime: nothing to split, the conv stays


def test_executorch_program_of_the_front_end_stores_no_basis(tmp_path):
    """The lowered front end keeps its constants small (the stored basis alone is 135 KB)
    and gives what the module gives."""
    pytest.importorskip("executorch")
    from executorch.runtime import Runtime

    from edge_sdk.export.executorch import lower_to_pte

    spec = AudioSpec()
    module = LogMel(spec).eval()
    path, info = lower_to_pte(module, (torch.zeros(1, spec.num_samples),), tmp_path / "f.pte")
    assert path.stat().st_size < 50_000 and info["portable_nodes"] <= 3 and module.two_stage is None  # the caller's module is untouched
    x = torch.randn(1, spec.num_samples) * 0.3
    got = Runtime.get().load_program(str(path)).load_method("forward").execute([x])[0]
    torch.testing.assert_close(got, module(x), atol=5e-5, rtol=0)
