"""The ONNX Runtime backend: a model's two tower graphs (FP32, FP16 or Q/DQ INT8) on
TensorRT, CUDA or the CPU, whichever this onnxruntime has (:func:`ort_providers`). No torch.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from edge_sdk.bundle import sha256_file
from edge_sdk.contract import ModelContract
from edge_sdk.errors import ModelFileError
from edge_sdk.runner import Towers

__all__ = ["OrtTowers", "ort_load_error", "ort_providers"]

log = logging.getLogger(__name__)


class OrtTowers(Towers):
    """Two ONNX graphs (``audio``: wave -> audio_emb; ``image``: image -> image_emb, image_map).

    Each session gets half the cores (``threads`` overrides) and :meth:`embed_both` runs the
    towers side by side. Two sessions with a pool of every core each fight: one pool's
    threads spin after its run while the other's start, which cost the FP32 towers 40% of
    their throughput on 2 cores (measured); ORT's process-wide pool would avoid that but
    binds every other session in the process to it.
    """

    def __init__(
        self,
        audio: str | Path,
        image: str | Path,
        contract: ModelContract | None,
        providers: list | None = None,
        threads: int = 0,
        batch_size: int = 64,
        precision: str = "fp32",
    ):
        import onnxruntime as ort

        super().__init__(contract, batch_size)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or max(1, (os.cpu_count() or 2) // 2)
        self.sessions = {}
        for tower, path in (("audio", audio), ("image", image)):
            name = "wave" if tower == "audio" else "image"
            inputs = {name: contract.input_shapes[name]} if contract is not None else {}
            chosen = providers or ort_providers(ort.get_available_providers(), precision, inputs, max(batch_size, 1), model=path)
            try:
                self.sessions[tower] = ort.InferenceSession(str(path), opts, providers=chosen)
            except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
                raise ort_load_error(path, e) from None
            fixed = self.sessions[tower].get_inputs()[0].shape[0]
            if isinstance(fixed, int) and fixed > 0:  # a graph exported for one batch size: fed in chunks of it
                self.batch_size = min(self.batch_size, fixed)

    concurrent = True

    def run_audio(self, x):
        return self.sessions["audio"].run(["audio_emb"], {"wave": x})

    def run_image(self, x):
        return self.sessions["image"].run(["image_emb", "image_map"], {"image": x})


def ort_providers(
    available: list[str],
    precision: str,
    inputs: dict[str, tuple[int, ...]],
    max_batch: int = 64,
    cache_dir: str | Path | None = None,
    model: str | Path | None = None,
) -> list:
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
        from edge_sdk.runtime.backends.trt_plan import default_cache_dir

        cache = Path(cache_dir) if cache_dir else default_cache_dir() / "ort-trt"
        if model is not None and Path(model).is_file():
            cache /= sha256_file(Path(model))[:16]
        cache.mkdir(parents=True, exist_ok=True)  # the provider makes one level only, else falls back unseen
        options = {
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache),
            "trt_fp16_enable": precision == "fp16",
        }
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
        return ModelFileError(
            f"{path}: uses an ONNX opset this onnxruntime {ort.__version__} does not have ({first})",
            "upgrade onnxruntime (pip install -U onnxruntime), or re-export with a lower --opset (18 is the default)",
        )
    return ModelFileError(
        f"{path}: ONNX Runtime cannot load it ({first})", "the file is damaged or needs a newer onnxruntime: re-export it, or upgrade onnxruntime"
    )
