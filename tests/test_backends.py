"""The runtime's one dispatch (runner_for / open_towers / pick_backend), the torch backend as an
entry-point plugin, and ExecuTorch programs checked before the native loader sees them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_sdk.bundle import Choice, read_bundle, sha256_file, shipped_bundles
from edge_sdk.errors import EdgeSDKError, ModelFileError
from edge_sdk.runner import Towers
from edge_sdk.runtime.backends import open_towers, pick_backend, plugin_backends, runner_for


@pytest.fixture(scope="module")
def demo():
    if "avnet_s-demo" not in shipped_bundles():
        pytest.skip("the shipped demo bundle is absent from this checkout")
    return read_bundle(shipped_bundles()["avnet_s-demo"])


def test_every_choice_of_the_demo_bundle_opens_through_runner_for(demo):
    expected = {"onnxruntime": "OrtTowers", "executorch": "ExecuTorchTowers", "torch": "TorchTowers"}
    s = demo.spec.image.size
    for c in demo.choices():
        runner = open_towers(demo, c.backend, c.precision)
        assert isinstance(runner, Towers) and type(runner).__name__ == expected[c.backend], c
        emb, fmap = runner.embed_image(np.full((1, 3, s, s), 128, np.float32))
        assert emb.shape == (1, demo.spec.embed_dim) and fmap.shape[:2] == (1, demo.spec.embed_dim)


def test_the_torch_backend_is_a_registered_plugin_not_a_runtime_import(demo):
    assert plugin_backends()["torch"].value == "edge_sdk.models.torch_runner:open_weights"
    code = (
        "import sys; from edge_sdk.runtime.backends import runner_for; "
        "print(sorted(m for m in sys.modules if m.startswith(('edge_sdk.models', 'edge_sdk.checkpoint', 'torch'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_an_unknown_backend_is_named_with_the_ones_there_are(demo):
    with pytest.raises(EdgeSDKError, match="no backend named 'openvino'") as e:
        runner_for(Choice("openvino", "int8", "xml", {}), demo.spec)
    assert "onnxruntime" in e.value.fix and "torch" in e.value.fix


def test_pick_backend_prefers_int8_onnxruntime_on_a_cpu(demo):
    c = pick_backend(demo)
    assert (c.backend, c.precision) == ("onnxruntime", "int8")
    assert pick_backend(demo, prefer="executorch").backend == "executorch"
    with pytest.raises(ModelFileError, match="has no tensorrt"):
        pick_backend(demo, prefer="tensorrt")


def _copy_with(bundle, tmp_path: Path, name: str, data: bytes) -> Path:
    """A copy of ``bundle`` whose file ``name`` holds ``data``, its hash recomputed (self-consistent)."""
    folder = tmp_path / "b"
    shutil.copytree(bundle.folder, folder)
    (folder / name).write_bytes(data)
    m = json.loads((folder / "manifest.json").read_text())
    for a in m["artifacts"]:
        if a["file"] == name:
            a["sha256"], a["bytes"] = sha256_file(folder / name), len(data)
    (folder / "manifest.json").write_text(json.dumps(m))
    return folder


def test_a_garbage_program_is_a_clear_error_not_an_abort(demo, tmp_path):
    """Random bytes (and a truncated header) in a .pte whose hash matches killed the process with
    SIGABRT inside ExecuTorch's loader; now the file is refused by name, and the app lives on.
    The three files are opened in one process (one ExecuTorch import), each must be refused."""
    garbage = [bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), b"", b"\x3c\x00\x00\x00ET12eh00" + b"\xff" * 64]
    folders = [str(_copy_with(demo, tmp_path / str(i), "image.int8.pte", data)) for i, data in enumerate(garbage)]
    code = (
        "from edge_sdk.bundle import read_bundle\nfrom edge_sdk.errors import ModelFileError\n"
        "from edge_sdk.runtime.backends import open_towers\n"
        f"for folder in {folders!r}:\n"
        "    try:\n        open_towers(read_bundle(folder), 'executorch', 'int8')\n        print('opened:', folder)\n"
        "    except ModelFileError as e:\n        print('refused:', str(e).replace(chr(10), ' '))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-800:]  # not -6 (SIGABRT)
    lines = out.stdout.splitlines()
    assert len(lines) == 3, out.stdout
    assert all(x.startswith("refused:") and "image.int8.pte" in x and "re-export" in x for x in lines), out.stdout
