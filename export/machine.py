"""What a benchmark ran on: the CPU, the instruction sets INT8 kernels are chosen by, and the
kernel libraries each backend brings, so that a ratio is read beside the machine it came from.

INT8/FP32 ratios are a property of the machine as much as of the graph: with AVX2 alone an
INT8 product (``vpmaddubsw``) has about twice the FP32 rate, with AVX-512 VNNI or AVX-VNNI
about four times, with AMX far more; on Arm, ``dotprod`` and ``i8mm`` play that part and
XNNPACK may run KleidiAI micro-kernels where ExecuTorch was built with them
(``EXECUTORCH_XNNPACK_ENABLE_KLEIDI``, an opt-in for Arm builds).
"""

from __future__ import annotations

import platform
from pathlib import Path

__all__ = ["INT8_ISA", "machine_facts", "format_machine"]

INT8_ISA = {  # the flags (as /proc/cpuinfo spells them) that decide which INT8 kernels run
    "x86_64": ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16"),
    "aarch64": ("asimd", "asimddp", "i8mm", "sve", "sve2", "sme"),
}


def _cpuinfo(text: str | None) -> tuple[str, set[str]]:
    """The CPU's model name and its flags (x86 ``flags``, Arm ``Features``) from /proc/cpuinfo."""
    name, flags = "", set()
    for line in (text or "").splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model", "hardware") and not name:
            name = value.strip()
        elif key in ("flags", "features"):
            flags |= set(value.split())
    return name, flags


def _executorch_kernels(arch: str) -> dict:
    try:
        from executorch.extension.pybindings import portable_lib
    except ImportError:
        return {"available": False}
    names = getattr(portable_lib, "_get_registered_backend_names", None)  # ExecuTorch's own listing, where it has one
    backends = sorted(names()) if callable(names) else []
    kleidi = "not on this architecture (Arm-only)" if arch != "aarch64" else "only if ExecuTorch was built with EXECUTORCH_XNNPACK_ENABLE_KLEIDI"
    return {"available": True, "backends": backends, "delegate": "XnnpackBackend" if "XnnpackBackend" in backends else None, "kleidiai": kleidi}


def machine_facts(cpuinfo: str | None = None) -> dict:
    """The machine of a benchmark: architecture, CPU name, logical cores, the INT8-relevant
    instruction sets present, and the kernel libraries of ONNX Runtime and ExecuTorch.
    ``cpuinfo``: the text of /proc/cpuinfo (read here when None; absent off Linux)."""
    import os

    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    arch = platform.machine().lower().replace("arm64", "aarch64").replace("amd64", "x86_64")
    name, flags = _cpuinfo(cpuinfo)
    facts = {
        "arch": arch,
        "cpu": name or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "int8_isa": [f for f in INT8_ISA.get(arch, ()) if f in flags],
    }
    try:
        import onnxruntime as ort

        facts["onnxruntime"] = {"version": ort.__version__, "providers": ort.get_available_providers()}
    except ImportError:
        facts["onnxruntime"] = {"available": False}
    facts["executorch"] = _executorch_kernels(arch)
    return facts


def format_machine(facts: dict) -> str:
    """One line: ``x86_64 AMD EPYC, 2 cores; INT8 ISA: avx2; ExecuTorch: XnnpackBackend (KleidiAI ...)``."""
    isa = ", ".join(facts.get("int8_isa") or []) or "none of " + "/".join(INT8_ISA.get(facts.get("arch"), ("-",)))
    line = f"{facts.get('arch')} {facts.get('cpu')}, {facts.get('cores')} cores; INT8 instruction sets: {isa}"
    et = facts.get("executorch") or {}
    if et.get("available"):
        line += f"; ExecuTorch delegate: {et.get('delegate') or 'none'} (KleidiAI: {et.get('kleidiai')})"
    return line
