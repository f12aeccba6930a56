"""Device profiles: what to export for a target and how the runtime should run it.

A profile picks formats, precisions and build options for one kind of machine, so
``edge-sdk export MODEL --device jetson-orin`` writes what that board runs and
``edge-sdk run --device ...`` prefers its backend. ``verified`` says honestly what has
run on that hardware. Torch-free (the runtime reads it).
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field

from edge_sdk.errors import ConfigError

__all__ = ["DeviceProfile", "PROFILES", "get_profile"]


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    formats: tuple[str, ...]
    precisions: tuple[str, ...]
    backend: str  # what the runtime prefers there
    precision: str  # and at which precision
    tensorrt: dict = field(default_factory=dict)  # build options (batch profile, DLA core, workspace)
    verified: str = "untested on this hardware"

    def to_dict(self) -> dict:
        return asdict(self)


PROFILES = {
    p.name: p
    for p in (
        DeviceProfile(
            "jetson-orin",
            "Jetson AGX/NX/Nano Orin, JetPack 6 (TensorRT 10): engines built on the board",
            ("tensorrt", "onnx"),
            ("fp16", "int8"),
            "tensorrt",
            "int8",
            {"batch": (1, 1, 4), "workspace_mb": 1024, "dla_core": None},
            "untested on hardware: TensorRT build plans unit-tested only; the ONNX engine sources run in ONNX Runtime",
        ),
        DeviceProfile(
            "jetson-nano",
            "Jetson Nano (Maxwell), JetPack 4: TensorRT 8, which this SDK's builder does not target",
            ("onnx",),
            ("fp32", "fp16"),
            "onnxruntime",
            "fp32",
            {},
            "untested on hardware; runs ONNX Runtime (CPU or CUDA EP), no TensorRT 8 path",
        ),
        DeviceProfile(
            "desktop-gpu",
            "x86 + NVIDIA GPU, TensorRT 10 or 11",
            ("tensorrt", "onnx"),
            ("fp16", "int8", "fp32"),
            "tensorrt",
            "fp16",
            {"batch": (1, 8, 32), "workspace_mb": 4096},
            "untested on hardware: no GPU was lent to the sessions that built this",
        ),
        DeviceProfile(
            "android-arm64",
            "Android phone, ExecuTorch XNNPACK (batch 1)",
            ("executorch",),
            ("int8", "fp32"),
            "executorch",
            "int8",
            {},
            "the .pte programs run in ExecuTorch's Python runtime on x86 here; not on a phone",
        ),
        DeviceProfile(
            "laptop-cpu",
            "x86 or ARM laptop, ONNX Runtime CPU (ExecuTorch as an alternative)",
            ("onnx", "executorch"),
            ("int8", "fp32"),
            "onnxruntime",
            "int8",
            {},
            "tested here (2-core x86 with AVX-512 VNNI)",
        ),
    )
}


def get_profile(name: str) -> DeviceProfile:
    if name in PROFILES:
        return PROFILES[name]
    near = difflib.get_close_matches(name, PROFILES, n=1)
    raise ConfigError(f"unknown device profile {name!r}" + (f" (did you mean {near[0]}?)" if near else ""), f"use one of: {', '.join(PROFILES)}")
