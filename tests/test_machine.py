"""The machine line of a benchmark: CPU name, INT8 instruction sets and kernel libraries."""

import platform

import pytest

from edge_sdk.export.machine import format_machine, machine_facts

X86 = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8488C\nflags\t\t: fpu sse avx2 avx512f avx512_vnni amx_int8 amx_tile\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes asimddp sve i8mm\nCPU implementer\t: 0x41\n"


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="the x86 flags are read on an x86 machine")
def test_x86_int8_instruction_sets_are_read_from_cpuinfo():
    facts = machine_facts(X86)
    assert facts["cpu"] == "Intel(R) Xeon(R) Platinum 8488C"
    assert facts["int8_isa"] == ["avx2", "avx512f", "avx512_vnni", "amx_int8"]  # amx_tile is not an INT8 kernel choice
    assert "avx512_vnni" in format_machine(facts)
    assert "avx_vnni" not in facts["int8_isa"]
    assert machine_facts(ARM)["int8_isa"] == []  # Arm features mean nothing on x86


def test_this_machine_and_its_kernel_libraries_are_named():
    facts = machine_facts()
    assert facts["cores"] >= 1 and facts["arch"]
    assert "CPUExecutionProvider" in facts["onnxruntime"]["providers"]
    et = facts["executorch"]
    if et["available"]:  # ExecuTorch is in the pinned set; a user's install may lack it
        assert et["delegate"] == "XnnpackBackend"
        assert ("Arm-only" in et["kleidiai"]) == (facts["arch"] != "aarch64")
    line = format_machine(facts)
    assert line.startswith(facts["arch"]) and f"{facts['cores']} cores" in line


def test_a_machine_without_cpuinfo_still_has_a_line():
    facts = machine_facts("")
    assert facts["int8_isa"] == [] and "INT8 instruction sets: none of" in format_machine(facts)
