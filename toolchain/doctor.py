"""``edge-sdk doctor``: what this machine has for edge_sdk (backends, devices, packages)."""

from __future__ import annotations

import glob
import importlib.metadata
import platform
import shutil
import subprocess

__all__ = ["machine_report", "format_report"]

PACKAGES = (
    "numpy",
    "onnxruntime",
    "opencv-python-headless",
    "soxr",
    "torch",
    "safetensors",
    "onnx",
    "executorch",
    "torchao",
    "tensorrt",
    "nvidia-modelopt",
    "sounddevice",
    "av",
    "matplotlib",
    "tqdm",
)


def _version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def _gpus() -> list[str]:
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
            return [line.strip() for line in out.stdout.splitlines() if line.strip()]
        except (OSError, subprocess.SubprocessError):
            return []
    if glob.glob("/dev/nvhost-*") or glob.glob("/etc/nv_tegra_release"):
        return ["NVIDIA Jetson (integrated)"]
    return []


def _microphones() -> tuple[list[str], str | None]:
    try:
        import sounddevice as sd

        return [d["name"] for d in sd.query_devices() if d["max_input_channels"] > 0], None
    except ImportError:
        return [], "sounddevice not installed (pip install 'edge_sdk[live]')"
    except OSError as e:  # PortAudio library missing
        return [], f"PortAudio unavailable: {e} (apt-get install libportaudio2)"


def _onnx_providers() -> list[str]:
    try:
        import onnxruntime as ort

        return ort.get_available_providers()
    except ImportError:
        return []


def machine_report() -> dict:
    mics, mic_problem = _microphones()
    providers = _onnx_providers()
    packages = {p: _version(p) for p in PACKAGES}
    backends = {
        "onnxruntime-cpu": "CPUExecutionProvider" in providers,
        "onnxruntime-cuda": "CUDAExecutionProvider" in providers,
        "onnxruntime-tensorrt": "TensorrtExecutionProvider" in providers,
        "tensorrt": packages["tensorrt"] is not None,
        "executorch": packages["executorch"] is not None,
        "torch": packages["torch"] is not None,
    }
    return {
        "platform": f"{platform.system()} {platform.machine()} python {platform.python_version()}",
        "backends": backends,
        "onnxruntime_providers": providers,
        "gpus": _gpus(),
        "cameras": sorted(glob.glob("/dev/video*")),
        "microphones": mics,
        "microphone_problem": mic_problem,
        "ffmpeg": shutil.which("ffmpeg") is not None,
        "packages": packages,
    }


def format_report(r: dict) -> str:
    yes = lambda b: "yes" if b else "no"  # noqa: E731
    lines = [f"platform     {r['platform']}", "backends"]
    lines += [f"  {k:<24}{yes(v)}" for k, v in r["backends"].items()]
    lines.append(f"gpus         {', '.join(r['gpus']) or 'none'}")
    lines.append(f"cameras      {', '.join(r['cameras']) or 'none (use file://, http:// or synthetic:// sources)'}")
    lines.append(f"microphones  {', '.join(r['microphones']) or 'none'}" + (f"  [{r['microphone_problem']}]" if r["microphone_problem"] else ""))
    lines.append(f"ffmpeg       {yes(r['ffmpeg'])}")
    lines.append("packages")
    lines += [f"  {k:<24}{v or '-'}" for k, v in r["packages"].items()]
    return "\n".join(lines)
