"""A plain wheel (not only the editable install) carries every sub-package and the shipped files."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_holds_the_namespace_and_shipped_assets(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    names = set(zipfile.ZipFile(next(tmp_path.glob("edge_sdk-*.whl"))).namelist())
    for pkg in ("edge_sdk", "edge_sdk/export", "edge_sdk/runtime", "edge_sdk/apps", "edge_sdk/toolchain", "edge_sdk/models"):
        assert f"{pkg}/__init__.py" in names, pkg
    assert "edge_sdk/recipes/teacher.toml" in names
    assert {"edge_sdk/assets/models/avnet_t.avdigits.safetensors", "edge_sdk/assets/models/avnet_t.avdigits.json"} <= names
    assert not any(n.startswith(("export/", "runtime/", "toolchain/", "tests/")) for n in names)  # no generic top-level modules
