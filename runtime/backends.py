"""Inference backends: run a model's two towers from exported files on numpy batches.

Every backend has the same face as the PyTorch evaluator: ``spec``, ``map_offset``,
``embed_audio(waves) -> [B, D]`` and ``embed_image(images) -> ([B, D], [B, D, h, w])``,
so ``edge-sdk eval``, the benchmark and the live pipeline run any of them unchanged.
Inputs are checked against the spec first (shape, dtype, NaN/inf; a few microseconds): a
DataError says what the input should be, where a runtime's own error names neither.

- :class:`OrtTowers` -- ONNX Runtime (FP32, FP16 or Q/DQ INT8 graphs) on TensorRT, CUDA or the
  CPU, whichever this onnxruntime has (:func:`ort_providers`); no torch needed.
- :class:`ExecuTorchTowers` -- ExecuTorch ``.pte`` programs through ``executorch.runtime``
  (its Python bindings take torch tensors, so this one imports torch).
- :class:`TorchTowers` -- the bundle's PyTorch weights (safetensors), eager FP32.
- ``TrtTowers`` (:mod:`.tensorrt`) -- TensorRT engines, built from the bundle's ONNX on
  the device they run on and cached.

:func:`open_towers` picks the class for a bundle's backend and precision.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edge_sdk.bundle import sha256_file
from edge_sdk.errors import DataError, ModelFileError
from edge_sdk.spec import ModelSpec

__all__ = ["OrtTowers", "ExecuTorchTowers", "TorchTowers", "open_towers", "ort_load_error", "ort_providers"]

log = logging.getLogger(__name__)


class _Towers:
    def __init__(self, spec: ModelSpec, map_offset=(0, 0), batch_size: int = 64):
        self.spec, self.map_offset, self.batch_size = spec, tuple(map_offset), batch_size
        self._warned: set[str] = set()  # inputs whose scale looked wrong once (said once each)

    def _batched(self, run, x: np.ndarray) -> list[np.ndarray]:
        outs = [run(np.ascontiguousarray(x[i : i + self.batch_size], dtype=np.float32)) for i in range(0, len(x), self.batch_size)]
        return outs[0] if len(outs) == 1 else [np.concatenate(parts) for parts in zip(*outs)]

    def _checked(self, x, name: str) -> np.ndarray:
        """``x`` if it is what the graph input ``name`` (``wave`` or ``image``) takes, else a
        DataError that says what it takes (the runtimes' own errors name neither)."""
        x = np.asarray(x)
        dims = tuple(self.spec.input_shapes[name]) if self.spec is not None else x.shape[1:]
        kinds = "f" if name == "wave" else "fu"  # int16 PCM would be 32768 times too loud; uint8 pixels are fine
        if x.ndim != len(dims) + 1 or x.shape[1:] != dims or not len(x) or x.dtype.kind not in kinds:
            what, fix = self._contract(name, x)
            raise DataError(f"{name} must be float32 [B, {', '.join(map(str, dims))}]{what}; got {x.shape} {x.dtype}", fix)
        if x.dtype.kind != "f":
            return x
        flat = x.reshape(-1)
        ms = float(np.dot(flat, flat)) / flat.size  # one BLAS pass (0.13 ms for 32 images): NaN and inf carry into it
        if not np.isfinite(ms):
            item = int(np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(1))[0])
            raise DataError(f"{name} holds NaN/inf (batch item {item})", "check the source of the input; "
                            "np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0) replaces them")
        if name not in self._warned:
            if name == "image" and 0 < ms <= 1 and 0 < x.max() <= 1 and (x != np.round(x)).any():  # dark 0..255 frames are whole numbers
                self._warned.add(name)
                log.warning("images in 0..1: the model takes RGB in 0..255 (multiply by 255); their embeddings are meaningless")
            elif name == "wave" and ms > 1.5 ** 2:
                self._warned.add(name)
                log.warning("waves at RMS %.0f: the model takes float audio in [-1, 1] (int16 PCM: divide by 32768)", ms ** 0.5)
        return x

    def _contract(self, name: str, x: np.ndarray) -> tuple[str, str]:
        """What the spec's input ``name`` is, and the likeliest fix for ``x``."""
        if self.spec is None:
            return "", "pass a non-empty float32 batch"
        a, size = self.spec.audio, self.spec.image.size
        if x.ndim and not len(x):
            fix = "the batch is empty: give at least one item"
        elif name == "wave":
            fix = ("convert the PCM to float in [-1, 1] (int16: x / 32768)" if x.dtype.kind != "f" else
                   f"cut or pad each wave to {a.num_samples} samples at {a.sample_rate} Hz; one wave is wave[None]")
        else:
            fix = ("the images are channels last: pass images.transpose(0, 3, 1, 2)" if x.ndim == 4 and x.shape[-1] == 3 else
                   f"centre-crop and resize to {size} x {size} RGB; one image is image[None]")
        what = f"{a.window_seconds:g} s at {a.sample_rate / 1000:g} kHz, mono in [-1, 1]" if name == "wave" else "RGB 0..255, channels first"
        return f" ({what})", fix

    def embed_audio(self, waves: np.ndarray) -> np.ndarray:
        return self._batched(self._run_audio, self._checked(waves, "wave"))[0]

    def embed_image(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        emb, fmap = self._batched(self._run_image, self._checked(images, "image"))
        return emb, fmap

    concurrent = False  # whether the towers may run side by side (their runs release the GIL)

    def embed_both(self, waves: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``audio_emb, image_emb, image_map`` of paired inputs; the towers run side by side where
        the backend allows it."""
        if not self.concurrent:
            return (self.embed_audio(waves), *self.embed_image(images))
        if getattr(self, "_pool", None) is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="edge_sdk-audio")
        audio = self._pool.submit(self.embed_audio, waves)
        emb, fmap = self.embed_image(images)
        return audio.result(), emb, fmap


class OrtTowers(_Towers):
    """Two ONNX graphs (``audio``: wave -> audio_emb; ``image``: image -> image_emb, image_map).

    Each session gets half the cores (``threads`` overrides) and :meth:`embed_both` runs the
    towers side by side. Two sessions with a pool of every core each fight: one pool's
    threads spin after its run while the other's start, which cost the FP32 towers 40% of
    their throughput on 2 cores (measured); ORT's process-wide pool would avoid that but
    binds every other session in the process to it.
    """

    def __init__(self, audio: str | Path, image: str | Path, spec: ModelSpec, map_offset=(0, 0),
                 providers: list | None = None, threads: int = 0, batch_size: int = 64, precision: str = "fp32"):
        import os

        import onnxruntime as ort

        super().__init__(spec, map_offset, batch_size)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or max(1, (os.cpu_count() or 2) // 2)
        self.sessions = {}
        for tower, path in (("audio", audio), ("image", image)):
            name = "wave" if tower == "audio" else "image"
            inputs = {name: spec.input_shapes[name]} if spec is not None else {}
            chosen = providers or ort_providers(ort.get_available_providers(), precision, inputs, max(batch_size, 1), model=path)
            try:
                self.sessions[tower] = ort.InferenceSession(str(path), opts, providers=chosen)
            except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
                raise ort_load_error(path, e) from None

    concurrent = True

    def _run_audio(self, x):
        return self.sessions["audio"].run(["audio_emb"], {"wave": x})

    def _run_image(self, x):
        return self.sessions["image"].run(["image_emb", "image_map"], {"image": x})


def ort_providers(available: list[str], precision: str, inputs: dict[str, tuple[int, ...]], max_batch: int = 64,
                  cache_dir: str | Path | None = None, model: str | Path | None = None) -> list:
    """ONNX Runtime execution providers for one tower, best first, among those this
    onnxruntime has (``available``): TensorRT, CUDA, the CPU.

    TensorRT (onnxruntime-gpu built with it, as on Jetson) gets FP32 and FP16 graphs: engines
    built on first use and cached (``<cache>/ort-trt/<model file's sha256 prefix>``, beside the
    native engines; ONNX Runtime names cached engines by the graph's file and tensor names,
    not its weights, so a retrained bundle must not find the old one), one profile from batch
    1 (the live case) to ``max_batch``, FP16 kernels for an fp16 bundle.
    INT8 graphs skip it: ONNX Runtime's QDQ graphs have asymmetric uint8 activations on x86
    (and zero points in general), and TensorRT takes only symmetric Q/DQ; the bundle's
    ``tensorrt`` artifacts (Model Optimizer Q/DQ) are the INT8 path to TensorRT.
    """
    out: list = []
    if "TensorrtExecutionProvider" in available and precision in ("fp32", "fp16"):
        from edge_sdk.runtime.tensorrt import default_cache_dir

        cache = Path(cache_dir) if cache_dir else default_cache_dir() / "ort-trt"
        if model is not None and Path(model).is_file():
            cache /= sha256_file(Path(model))[:16]
        cache.mkdir(parents=True, exist_ok=True)  # the provider makes one level only, else falls back unseen
        options = {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache), "trt_timing_cache_enable": True,
                   "trt_timing_cache_path": str(cache), "trt_fp16_enable": precision == "fp16"}
        if inputs:
            def shapes(batch: int) -> str:
                return ",".join(f"{name}:" + "x".join(str(d) for d in (batch, *dims)) for name, dims in inputs.items())

            options.update(trt_profile_min_shapes=shapes(1), trt_profile_opt_shapes=shapes(1), trt_profile_max_shapes=shapes(max_batch))
        out.append(("TensorrtExecutionProvider", options))
    return out + [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def ort_load_error(path, e: Exception) -> ModelFileError:
    """A clear error for a graph ONNX Runtime refused: an opset it lacks, or a damaged file."""
    import onnxruntime as ort

    msg = str(e)
    first = msg.splitlines()[0][:200]
    if "opset" in msg.lower():
        return ModelFileError(f"{path}: uses an ONNX opset this onnxruntime {ort.__version__} does not have ({first})",
                              "upgrade onnxruntime (pip install -U onnxruntime), or re-export with a lower --opset (18 is the default)")
    return ModelFileError(f"{path}: ONNX Runtime cannot load it ({first})",
                          "the file is damaged or needs a newer onnxruntime: re-export it, or upgrade onnxruntime")


class ExecuTorchTowers(_Towers):
    """Two ExecuTorch programs, one per tower, each taking batch 1 (as a phone app runs them)."""

    def __init__(self, audio: str | Path, image: str | Path, spec: ModelSpec, map_offset=(0, 0), batch_size: int = 1):
        from executorch.runtime import Runtime

        super().__init__(spec, map_offset, batch_size)
        runtime = Runtime.get()
        self.methods = {}
        for tower, path in (("audio", audio), ("image", image)):
            try:
                self.methods[tower] = runtime.load_program(Path(path)).load_method("forward")
            except Exception as e:  # noqa: BLE001 - the bindings raise RuntimeError/ValueError
                raise ModelFileError(f"{path}: ExecuTorch cannot load it ({str(e).splitlines()[0][:200]})",
                                     "re-export the .pte with this executorch version (edge-sdk export --format executorch)") from None

    def _execute(self, tower: str, x: np.ndarray) -> list[np.ndarray]:
        import torch

        # x is C-contiguous (NCHW), the dim order programs are exported with: ExecuTorch does not
        # check it, and a channels-last input gave silently wrong results. Outputs are copied
        # out of the program's planned memory, which the next call overwrites.
        return [np.array(o.numpy(), copy=True) for o in self.methods[tower].execute([torch.from_numpy(x)])]

    def _run_audio(self, x):
        return self._execute("audio", x)

    def _run_image(self, x):
        return self._execute("image", x)


class TorchTowers(_Towers):
    """A bundle's PyTorch weights (``model.safetensors``, never a pickle), run eagerly in FP32."""

    def __init__(self, weights: str | Path, spec: ModelSpec, map_offset=(0, 0), batch_size: int = 64, threads: int = 0):
        import torch

        from edge_sdk.checkpoint import load_tensors
        from edge_sdk.models.avnet import AVNet

        super().__init__(spec, map_offset, batch_size)
        if threads:
            torch.set_num_threads(threads)
        self.model = AVNet(spec).eval()
        state = load_tensors(Path(weights))
        try:
            self.model.load_state_dict(state)
        except RuntimeError as e:
            raise ModelFileError(f"{weights}: the weights do not fit spec {spec.name} ({str(e).splitlines()[0][:160]})",
                                 "the bundle is inconsistent: re-export it") from None

    def _call(self, fn, x):
        import torch

        with torch.inference_mode():
            out = fn(torch.from_numpy(x))
        return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]

    def _run_audio(self, x):
        return self._call(self.model.audio, x)

    def _run_image(self, x):
        return self._call(self.model.image, x)


def open_towers(bundle, backend: str | None = None, precision: str | None = None, *, threads: int = 0,
                batch_size: int | None = None, build_engines: bool = True) -> _Towers:
    """The runner for one backend/precision of a verified bundle (the first one it has when not given).

    ``tensorrt`` artifacts are engine sources (ONNX): their engines are built on this GPU
    and cached (``build_engines``), since an engine only runs on the GPU and TensorRT
    version it was built with.
    """
    choice = bundle.find(backend, precision)
    files, spec, offset = choice.files, bundle.spec, bundle.map_offset
    extra = {"batch_size": batch_size} if batch_size else {}
    if choice.format == "safetensors":
        return TorchTowers(files["av"], spec, offset, threads=threads, **extra)
    if choice.format == "executorch":
        return ExecuTorchTowers(files["audio"], files["image"], spec, offset)
    if choice.backend == "tensorrt":
        from edge_sdk.runtime.tensorrt import TrtTowers, load_or_build

        if not build_engines:
            raise ModelFileError(f"{bundle.folder} holds TensorRT engine sources (ONNX), and engine builds are off",
                                 "pass build_engines=True (the engines are built once for this GPU and cached)")
        engines = {t: load_or_build(files[t], t, choice.precision) for t in ("audio", "image")}
        return TrtTowers(engines["audio"], engines["image"], spec, offset, **extra)
    return OrtTowers(files["audio"], files["image"], spec, offset, threads=threads, precision=choice.precision, **extra)
