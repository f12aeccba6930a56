"""A plain wheel (not only the editable install) carries every sub-package and the shipped
files, and a runtime-only install (no extras) runs what it can and names the extra for the rest."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_holds_the_namespace_and_shipped_assets(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    names = set(zipfile.ZipFile(next(tmp_path.glob("edge_sdk-*.whl"))).namelist())
    for pkg in ("edge_sdk", "edge_sdk/export", "edge_sdk/runtime", "edge_sdk/apps", "edge_sdk/toolchain", "edge_sdk/models"):
        assert f"{pkg}/__init__.py" in names, pkg
    assert "edge_sdk/recipes/teacher.toml" in names
    assert {"edge_sdk/assets/models/avnet_t.avdigits.safetensors", "edge_sdk/assets/models/avnet_t.avdigits.json", "edge_sdk/assets/NOTICE"} <= names
    assert any(n.endswith((".dist-info/licenses/LICENSE", ".dist-info/LICENSE")) for n in names)
    assert not any(n.startswith("edge_sdk/toolchain/bench_") for n in names)  # development scripts stay out
    assert not any(n.startswith(("export/", "runtime/", "toolchain/", "tests/")) for n in names)  # no generic top-level modules


# A runtime-only install (pyproject's core dependencies): what the extras bring is absent.
CORE_ONLY = (
    "import sys; sys.modules.update(dict.fromkeys(['torch', 'safetensors', 'onnx', 'onnxscript', 'modelopt', 'executorch', "
    "'torchao', 'av', 'sounddevice'])); from edge_sdk.toolchain.cli import main; raise SystemExit(main(sys.argv[1:]))"
)


def _core(*args):
    return subprocess.run([sys.executable, "-c", CORE_ONLY, *args], capture_output=True, text=True, timeout=300)


def test_runtime_only_install_lists_models_and_evaluates_a_bundle():
    out = _core("info")
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith("avnet_s.avdigits"))
    assert "320,448" in row and "35.1" in row  # from the shipped sidecar: nothing to count with
    assert "pip install 'edge_sdk[train]'" in out.stdout
    out = _core("eval", "avnet_s-demo", "--synthetic", "--scenes", "24")  # what `run` would load: no torch needed
    assert out.returncode == 0 and "pointing_acc" in out.stdout and "not comparable" in out.stderr, out.stderr[-2000:]
    assert "evaluating onnxruntime int8 of avnet_s-demo" in out.stderr


@pytest.mark.parametrize(
    "args,extra",
    [
        (["quantize", "avnet_s.avdigits", "--target", "onnxruntime", "--calib", "x", "--out", "y"], "export"),
        (["run", "--bundle", "avnet_s-demo", "--backend", "torch", "--video", "synthetic://av-digits?seconds=1", "--headless"], "train"),
        (["run", "--bundle", "avnet_s-demo", "--backend", "executorch", "--video", "synthetic://av-digits?seconds=1", "--headless"], "executorch"),
        (["bench-runtime", "--seconds", "1"], "train"),
    ],
)
def test_a_missing_extra_is_named_not_a_traceback(args, extra):
    out = _core(*args)
    assert out.returncode == 2 and f"pip install 'edge_sdk[{extra}]'" in out.stderr and "Traceback" not in out.stderr, out.stderr[-2000:]
