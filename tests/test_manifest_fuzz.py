"""Deep or odd JSON (issue 21): manifests, sidecars and ``last.json`` nested 200,000 levels,
larger than any real one, truncated or of random bytes are each one ModelFileError line; and a
fuzz test of the manifest reader: a few hundred seeded mutations of the real shipped manifest
(keys deleted, types changed, huge/negative/NaN numbers, deep nesting, truncation, random bytes)
each end in a valid load or a clean EdgeSDKError, never another exception."""

from __future__ import annotations

import copy
import json
import math
import random
import shutil
import subprocess
import sys

import pytest

from edge_sdk.bundle import read_bundle, shipped_bundles
from edge_sdk.errors import EdgeSDKError, ModelFileError
from edge_sdk.jsonfile import parse_json, read_json

DEMO = shipped_bundles().get("avnet_s-demo")
pytestmark = pytest.mark.skipif(DEMO is None, reason="the shipped demo bundle is absent")
DEEP = "[" * 200_000 + "]" * 200_000


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz") / "b"
    shutil.copytree(DEMO, folder)
    return folder


def test_the_json_reader_bounds_depth_size_and_says_each_failure_in_one_line(tmp_path):
    cases = {
        "deep.json": ('{"a": ' + DEEP + "}", "nested deeper than 64 levels"),
        "just_over.json": ("[" * 65 + "]" * 65, "nested deeper than 64 levels"),
        "cut.json": ('{"a": [1, 2', "not valid JSON"),
        "bytes.json": (b"\xff\xfe\x00garbage", "not valid JSON"),
        "digits.json": ('{"a": ' + "9" * 10_000 + "}", "not valid JSON"),  # past Python's int string limit
        "big.json": ('{"pad": "' + "x" * (17 << 20) + '"}', "larger than 16 MB"),
    }
    for name, (text, what) in cases.items():
        path = tmp_path / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(ModelFileError, match=what) as e:
            read_json(path, "manifest", fix="re-export it")
        assert "\n" not in str(e.value) and str(path) in str(e.value) and e.value.fix == "re-export it"
    assert parse_json("[" * 64 + "]" * 64, "x") == json.loads("[" * 64 + "]" * 64)
    assert parse_json('{"s": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\""}', "x")["s"].startswith("[[[")


def test_a_manifest_nested_200000_levels_is_one_line_from_the_cli(bundle, tmp_path):
    deep = tmp_path / "deep"
    shutil.copytree(bundle, deep)
    m = (deep / "manifest.json").read_text().rstrip()
    (deep / "manifest.json").write_text(m[:-1] + ', "x": ' + DEEP + "}")
    out = subprocess.run([sys.executable, "-m", "edge_sdk", "info", str(deep)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "RecursionError" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        f"edge-sdk info: error: {deep / 'manifest.json'}: nested deeper than 64 levels, not a bundle manifest "
        "-- fix: the manifest is damaged: re-export the bundle"
    ]


def test_a_deep_sidecar_and_a_deep_last_json_are_named(tmp_path):
    pytest.importorskip("torch")
    from edge_sdk.checkpoint import read_sidecar
    from edge_sdk.recipe import load_recipe
    from edge_sdk.train.trainer import pretrain

    (tmp_path / "m.json").write_text(DEEP)
    with pytest.raises(ModelFileError, match="m.json: nested deeper than 64 levels, not a model sidecar"):
        read_sidecar(tmp_path / "m.safetensors")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.json").write_text('{"step": ' + DEEP + "}")
    with pytest.raises(ModelFileError, match="last.json is damaged"):
        pretrain(load_recipe("teacher"), run, progress=False, resume=True)


# -- fuzz ------------------------------------------------------------------------------------------
ODD_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**63,
    -(2**63),
    10**400,
    1e308,
    -1e308,
    math.nan,
    math.inf,
    -math.inf,
    0.5,
    "",
    "x" * 1000,
    [],
    {},
    [[]],
    {"a": {}},
]


def _paths(obj, prefix=()):
    """Every (path, value) inside ``obj``."""
    yield prefix, obj
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        yield from _paths(v, (*prefix, k))


def _set(obj, path, value):
    for k in path[:-1]:
        obj = obj[k]
    if value is _DELETE:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value


_DELETE = object()


def _mutate(manifest: dict, rng: random.Random) -> bytes:
    """One random mutation of the manifest, as the bytes of the file."""
    m = copy.deepcopy(manifest)
    inner = [p for p, _ in _paths(m) if p]
    kind = rng.choice(["delete", "retype", "number", "nest", "truncate", "bytes", "several"])
    if kind == "truncate":
        text = json.dumps(m, indent=2).encode()
        return text[: rng.randrange(len(text))]
    if kind == "bytes":
        text = bytearray(json.dumps(m, indent=2).encode())
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(len(text))
            text[at : at + rng.randint(1, 16)] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        return bytes(text)
    for _ in range(rng.randint(2, 6) if kind == "several" else 1):
        inner = [p for p, _ in _paths(m) if p]
        path = rng.choice(inner)
        how = kind if kind != "several" else rng.choice(["delete", "retype", "number", "nest"])
        if how == "delete":
            _set(m, path, _DELETE)
        elif how == "retype":
            _set(m, path, rng.choice(ODD_VALUES))
        elif how == "number":
            numbers = [p for p, v in _paths(m) if p and type(v) in (int, float)]
            _set(m, rng.choice(numbers) if numbers else path, rng.choice([v for v in ODD_VALUES if type(v) in (int, float)]))
        else:
            depth = rng.choice([10, 63, 65, 1000, 50_000])
            _set(m, path, json.loads("[" * depth + "]" * depth) if depth < 900 else None)
            if depth >= 900:
                return json.dumps(m).replace("null", "[" * depth + "]" * depth, 1).encode()
    return json.dumps(m, indent=2).encode()  # NaN and Infinity as json.dumps writes them


def _touch_everything(b) -> None:
    """What an app reads of a loaded bundle: it must hold up as well."""
    for c in b.choices():
        assert c.files
    b.find()
    _ = (b.contract, b.map_offset, b.spec) if hasattr(b, "contract") else (b.spec, b.map_offset)


def test_fuzzed_manifests_load_or_fail_cleanly(bundle):
    manifest = json.loads((DEMO / "manifest.json").read_text())
    path = bundle / "manifest.json"
    outcomes = {"loaded": 0, "refused": 0}
    failures = []
    for seed in range(300):
        data = _mutate(manifest, random.Random(seed))
        path.write_bytes(data)
        try:
            _touch_everything(read_bundle(bundle))
            outcomes["loaded"] += 1
        except EdgeSDKError as e:
            assert "\n" not in str(e), str(e)
            outcomes["refused"] += 1
        except Exception as e:  # noqa: BLE001 - what the fuzz looks for
            failures.append(f"seed {seed}: {type(e).__name__}: {str(e)[:200]}")
    path.write_text(json.dumps(manifest, indent=2))
    assert not failures, f"{len(failures)} of 300 mutations raised something else than EdgeSDKError:\n" + "\n".join(failures[:20])
    assert outcomes["refused"] > 150 and outcomes["loaded"] > 5, outcomes  # both kinds of outcome were exercised
