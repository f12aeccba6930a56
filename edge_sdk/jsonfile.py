"""Reading a JSON file a user or a download handed us (a bundle manifest, a checkpoint's
sidecar, a run's ``last.json``) with bounds: its size is checked before it is read and its
nesting depth while it is parsed, so a hostile file costs neither memory nor a
``RecursionError`` traceback; every failure is one :class:`~edge_sdk.errors.ModelFileError`
line naming the file. Torch-free.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from edge_sdk.errors import ModelFileError

__all__ = ["MAX_JSON_BYTES", "MAX_JSON_DEPTH", "read_json", "parse_json"]

MAX_JSON_BYTES = 16 << 20  # a real manifest is about 20 KB, a sidecar 5 KB
MAX_JSON_DEPTH = 64  # a real manifest nests 5 levels


def read_json(path: str | os.PathLike, what: str = "JSON file", max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH, fix: str = ""):
    """The JSON value in ``path``, read only if it is at most ``max_bytes`` and nested at most
    ``max_depth`` deep; otherwise (or if it is not valid UTF-8 JSON, or cannot be read) a
    ModelFileError naming ``path`` as a ``what`` with ``fix``."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)  # never more, even if the file grows meanwhile
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read this {what} ({e.strerror or e})", fix) from None
    if len(data) > max_bytes:
        raise ModelFileError(f"{path}: larger than {max_bytes >> 20} MB, too large for a {what}", fix)
    return parse_json(data, path, what, max_depth, fix)


def parse_json(data: bytes | str, source, what: str = "JSON file", max_depth: int = MAX_JSON_DEPTH, fix: str = ""):
    """``data`` parsed, at most ``max_depth`` deep (checked on its brackets before parsing, so no
    nesting reaches the parser's recursion); a ModelFileError naming ``source`` otherwise."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as e:
        raise ModelFileError(f"{source}: not valid JSON ({_one_line(e)})", fix) from None
    if _bracket_depth(text) > max_depth:
        raise ModelFileError(f"{source}: nested deeper than {max_depth} levels, not a {what}", fix)
    try:
        value = json.loads(text)
    except RecursionError:
        raise ModelFileError(f"{source}: nested deeper than {max_depth} levels, not a {what}", fix) from None
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError, and ints too long to convert
        raise ModelFileError(f"{source}: not valid JSON ({_one_line(e)})", fix) from None
    if _depth(value, max_depth) > max_depth:
        raise ModelFileError(f"{source}: nested deeper than {max_depth} levels, not a {what}", fix)
    return value


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')


def _bracket_depth(text: str) -> int:
    """The deepest nesting of brackets outside strings: a cheap scan (a regular expression drops
    the strings, a cumulative sum counts the rest), no recursion. UTF-8 never puts an ASCII byte
    inside a multi-byte character, so the bytes can be counted as they are."""
    b = np.frombuffer(_STRING.sub("", text).encode("utf-8", "replace"), np.uint8)
    steps = ((b == ord("[")) | (b == ord("{"))).astype(np.int8) - ((b == ord("]")) | (b == ord("}")))
    return int(np.cumsum(steps, dtype=np.int64).max(initial=0))


def _depth(value, limit: int) -> int:
    """How deep ``value`` nests (a scalar 0, ``[]`` 1), counted up to ``limit + 1``; iterative."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())[:200]
