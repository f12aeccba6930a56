"""Architecture guards (issue 19, item 6): the layering of ``../shared/DESIGN.md``, checked.

The package's folders (the ``package-dir`` mapping of ``pyproject.toml``, so a new
sub-package is covered as soon as it is mapped) are parsed with :mod:`ast`, never imported.
Every import counts: ``import x``, ``from x import y``, relative imports, literal
``importlib.import_module("x")`` / ``__import__("x")``, at module level and inside
functions, conditionals and ``try`` blocks (not the body of ``if TYPE_CHECKING:``, which
never runs). The tests fail on

- an import cycle between modules of the package (reported as ``a -> b -> a``);
- a private name (``_x``, not a dunder) imported from another module, or a private
  module (``_capture``) imported from outside its own package;
- a layering breach: the runtime and the apps import no training-side code, no export and
  no toolchain; the runtime does not import the apps; the core (``edge_sdk`` outside the
  mapped layers; ``python -m edge_sdk``'s ``__main__`` aside) imports none of export, runtime,
  apps, toolchain; the library never imports the CLI; ``edge_sdk.media`` imports only errors, outputs, spec and itself, and never torch;
- a file over 500 lines or a function over 80 (``def`` line to last line).

The checkers are plain functions over a :class:`Project`; ``test_checks_catch_violations``
runs them on a small synthetic project to show each one can fail.
"""

from __future__ import annotations

import ast
import functools
import itertools
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli", reason="on Python 3.10 pyproject.toml is read with tomli")

ROOT = Path(__file__).resolve().parents[1]
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80
SKIP_DIRS = {".git", ".venv", "venv", "__pycache__", "build", "dist", "runs", "node_modules"}

TRAINING = (
    "edge_sdk.data",
    "edge_sdk.models",
    "edge_sdk.quant",
    "edge_sdk.train",
    "edge_sdk.objectives",
    "edge_sdk.checkpoint",
    "edge_sdk.eval",
    "edge_sdk.recipe",
)
OUTER = ("edge_sdk.export", "edge_sdk.runtime", "edge_sdk.apps", "edge_sdk.toolchain")
TORCH = ("torch", "torchvision", "torchaudio", "torchao", "executorch")


@dataclass(frozen=True)
class Rule:
    """Modules under ``importers`` (less those under ``exempt``) must not import anything under
    ``forbidden``; with ``only`` set, the package-internal modules they import must lie under it."""

    importers: str
    forbidden: tuple[str, ...] = ()
    only: tuple[str, ...] | None = None
    exempt: tuple[str, ...] = ()
    why: str = ""


RULES = (
    Rule(
        "edge_sdk.runtime",
        (*TRAINING, "edge_sdk.export", "edge_sdk.toolchain", "edge_sdk.apps"),
        why="runtime: no training code, export, toolchain or apps",
    ),
    Rule("edge_sdk.apps", (*TRAINING, "edge_sdk.export", "edge_sdk.toolchain"), why="apps: runtime parts only, no training code"),
    Rule("edge_sdk.export", ("edge_sdk.apps", "edge_sdk.toolchain"), why="the library never imports the CLI or the apps"),
    # ``python -m edge_sdk`` is the CLI's entry point, which nothing imports: not part of the core
    Rule("edge_sdk", OUTER, exempt=(*OUTER, "edge_sdk.__main__"), why="core: never export, runtime, apps or toolchain"),
    Rule("edge_sdk.media", TORCH, only=("edge_sdk.errors", "edge_sdk.outputs", "edge_sdk.spec", "edge_sdk.media"), why="media: no torch"),
)


@dataclass(frozen=True)
class Import:
    """One import statement (or literal dynamic import) of module ``importer``."""

    importer: str
    module: str  # the module named, relative imports resolved
    names: tuple[str, ...]  # the names of ``from module import ...``; () for ``import module``
    path: Path
    line: int
    lazy: bool  # inside a function

    def where(self) -> str:
        return f"{_rel(self.path)}:{self.line}" + (" (in a function)" if self.lazy else "")


@dataclass
class Project:
    modules: dict[str, Path]  # dotted name -> file
    imports: list[Import]

    def targets(self, imp: Import) -> list[str]:
        """What ``imp`` imports, as dotted names: ``from pkg import sub`` names the module ``pkg.sub``."""
        if not imp.names:
            return [imp.module]
        found = [f"{imp.module}.{n}" if f"{imp.module}.{n}" in self.modules else imp.module for n in imp.names]
        return list(dict.fromkeys(found))

    def resolve(self, name: str) -> str | None:
        """The package module that executes when ``name`` is imported (its longest known prefix)."""
        while name and name not in self.modules:
            name = name.rpartition(".")[0]
        return name or None


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


# -- reading the project --------------------------------------------------------------------------
def package_dirs(pyproject: Path) -> dict[str, Path]:
    """The ``[tool.setuptools] package-dir`` mapping: package name -> folder."""
    mapping = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-dir"]
    return {pkg: (pyproject.parent / folder).resolve() for pkg, folder in mapping.items()}


def discover_modules(dirs: dict[str, Path]) -> dict[str, Path]:
    """Every ``.py`` file of the mapped folders, by module name (a folder mapped to a package of its
    own is left to that package)."""
    mapped = set(dirs.values())
    modules = {}
    for pkg, folder in dirs.items():
        for path in sorted(folder.rglob("*.py")):
            between = path.parent.relative_to(folder).parts
            inner = [folder.joinpath(*between[: i + 1]) for i in range(len(between))]
            if any(d in mapped or d.name in SKIP_DIRS for d in inner):
                continue
            parts = [*between, path.stem] if path.stem != "__init__" else list(between)
            modules[".".join([pkg, *parts])] = path
    return modules


def _absolute(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([target] if target else []))


def _dynamic_target(call: ast.Call) -> str | None:
    """``importlib.import_module("x")`` or ``__import__("x")`` with a literal absolute name."""
    f = call.func
    named = (isinstance(f, ast.Attribute) and f.attr == "import_module") or (isinstance(f, ast.Name) and f.id in ("import_module", "__import__"))
    if named and call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value if not call.args[0].value.startswith(".") else None
    return None


def _type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_imports(module: str, path: Path, source: str | None = None) -> list[Import]:
    """All imports of one module, at any depth (but the body of ``if TYPE_CHECKING:``, never run)."""
    tree = ast.parse(source if source is not None else path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend(Import(module, a.name, (), path, child.lineno, lazy) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = _absolute(module, is_package, child.level, child.module) if child.level else child.module
                found.append(Import(module, base, tuple(a.name for a in child.names), path, child.lineno, lazy))
            elif isinstance(child, ast.Call) and (target := _dynamic_target(child)):
                found.append(Import(module, target, (), path, child.lineno, lazy))
            elif _type_checking(child):
                for branch in child.orelse:
                    visit(ast.Module([branch], []), lazy)
                continue
            visit(child, lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found


def load_project(pyproject: Path) -> Project:
    modules = discover_modules(package_dirs(pyproject))
    return Project(modules, [imp for name, path in modules.items() for imp in module_imports(name, path)])


@functools.lru_cache(maxsize=1)
def this_project() -> Project:
    return load_project(ROOT / "pyproject.toml")


# -- the checks ----------------------------------------------------------------------------------
def import_graph(project: Project) -> dict[str, dict[str, Import]]:
    """Package-internal edges: importer -> imported module -> the first import that makes the edge."""
    graph: dict[str, dict[str, Import]] = {m: {} for m in project.modules}
    for imp in project.imports:
        for target in project.targets(imp):
            dest = project.resolve(target)
            if dest and dest != imp.importer:
                graph[imp.importer].setdefault(dest, imp)
    return graph


def strongly_connected(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(components)


def _shortest_cycle(graph: dict[str, dict[str, Import]], start: str, members: set[str]) -> list[str]:
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph[v]):
            if w == start:
                chain = [v]
                while chain[-1] != start:
                    chain.append(parent[chain[-1]])
                return [*reversed(chain), start]
            if w in members and w not in parent:
                parent[w] = v
                queue.append(w)
    return []


def find_cycles(project: Project) -> list[str]:
    """One line per elementary cycle found (the shortest through each module of every cycle),
    ``a -> b -> a`` followed by where each edge is made."""
    graph = import_graph(project)
    seen, lines = set(), []
    for component in strongly_connected(graph):
        for start in component:
            chain = _shortest_cycle(graph, start, set(component))
            rotated = min(tuple(chain[i:-1] + chain[:i]) for i in range(len(chain) - 1))
            if rotated in seen:
                continue
            seen.add(rotated)
            edges = "; ".join(graph[a][b].where() for a, b in itertools.pairwise(chain))
            lines.append(f"{' -> '.join(chain)}   [{edges}]")
    return lines


def find_private_imports(project: Project) -> list[str]:
    """``_name`` imported from another module; ``_module`` imported from outside its package."""
    found = []
    for imp in project.imports:
        if not _under(imp.module, "edge_sdk") or imp.module == imp.importer:
            continue
        parts = imp.module.split(".")
        owners = [(".".join(parts[:i]), parts[i]) for i in range(1, len(parts)) if _private(parts[i])]
        for name in filter(_private, imp.names):
            if f"{imp.module}.{name}" in project.modules:
                owners.append((imp.module, name))
            else:
                found.append(f"{imp.where()}: {imp.importer} imports {name} from {imp.module}")
        for owner, name in owners:
            if not _under(imp.importer, owner):
                found.append(f"{imp.where()}: {imp.importer} imports private module {owner}.{name} from outside {owner}")
    return found


def find_layer_violations(project: Project, rules: tuple[Rule, ...] = RULES) -> list[str]:
    found = []
    for imp in project.imports:
        for rule in rules:
            if not _under(imp.importer, rule.importers) or any(_under(imp.importer, e) for e in rule.exempt):
                continue
            for target in project.targets(imp):
                bad = any(_under(target, f) for f in rule.forbidden)
                if rule.only is not None and _under(target, "edge_sdk"):
                    bad = bad or not any(_under(target, ok) for ok in rule.only)
                if bad:
                    found.append(f"{imp.where()}: {imp.importer} imports {target} ({rule.why})")
    return found


def python_files(root: Path) -> list[Path]:
    """Every ``.py`` file of the checkout, less virtualenvs, build outputs and hidden folders."""
    return sorted(
        p
        for p in root.rglob("*.py")
        if not any(d in SKIP_DIRS or d.startswith(".") or d.endswith(".egg-info") for d in p.relative_to(root).parts[:-1])
    )


def functions(tree: ast.AST):
    """(qualified name, node) of every function and method, nested ones included."""
    scopes = [(tree, "")]
    while scopes:
        node, prefix = scopes.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if not isinstance(child, ast.ClassDef):
                    yield prefix + child.name, child
                scopes.append((child, f"{prefix}{child.name}."))
            else:
                scopes.append((child, prefix))


def find_oversized(paths: list[Path], max_file: int = MAX_FILE_LINES, max_function: int = MAX_FUNCTION_LINES) -> list[str]:
    """Files over ``max_file`` lines, functions over ``max_function`` (``def`` line to last line, decorators excluded)."""
    found = []
    for path in paths:
        text = path.read_text()
        if (n := len(text.splitlines())) > max_file:
            found.append(f"{_rel(path)}: {n} lines (file)")
        long = [(node.lineno, name, node.end_lineno - node.lineno + 1) for name, node in functions(ast.parse(text, filename=str(path)))]
        found += [f"{_rel(path)}:{line}: {name}() {n} lines" for line, name, n in sorted(long) if n > max_function]
    return found


def _fail_on(found: list[str], what: str) -> None:
    if found:
        pytest.fail(f"{len(found)} {what}:\n  " + "\n  ".join(found), pytrace=False)


# -- the tests -----------------------------------------------------------------------------------
def test_package_is_found():
    modules = this_project().modules
    assert "edge_sdk.spec" in modules and "edge_sdk.runtime" in modules and "edge_sdk.toolchain.cli" in modules


def test_no_import_cycles():
    _fail_on(find_cycles(this_project()), "import cycle(s), counting imports inside functions")


def test_no_private_names_imported_across_modules():
    _fail_on(find_private_imports(this_project()), "private import(s) across modules")


def test_layering():
    _fail_on(find_layer_violations(this_project()), "layering violation(s) (see ../shared/DESIGN.md)")


def test_file_and_function_sizes():
    _fail_on(find_oversized(python_files(ROOT)), f"file(s) over {MAX_FILE_LINES} lines or function(s) over {MAX_FUNCTION_LINES}")


SYNTHETIC = {
    "pkg/__init__.py": "from edge_sdk.errors import Oops\n",
    "pkg/errors.py": "class Oops(Exception):\n    pass\n",
    "pkg/train/__init__.py": "",
    "pkg/train/loop.py": "from edge_sdk.train import helpers\n",
    "pkg/train/helpers.py": "def f():\n    from edge_sdk.train.loop import x  # a lazy import still closes a cycle\n",
    "pkg/media/__init__.py": "",
    "pkg/media/image.py": "import numpy\nfrom edge_sdk.errors import Oops\nfrom ._impl import ok\n",
    "pkg/media/_impl.py": "try:\n    import torch\nexcept ImportError:\n    torch = None\n",
    "pkg/eval.py": "from edge_sdk.runtime.tasks import T\nif TYPE_CHECKING:\n    from edge_sdk.apps import demo\n",
    "rt/__init__.py": "",
    "rt/tasks.py": "from edge_sdk.errors import _hidden, __version__\nfrom edge_sdk.media import _impl\n",
    "rt/sinks.py": "def g():\n    if True:\n        import edge_sdk.train.loop\n    from . import tasks\n    from ..media.image import ok\n",
    "rt/align.py": "import importlib\nM = importlib.import_module('edge_sdk.checkpoint')\n",
}


def test_checks_catch_violations(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.setuptools]\npackage-dir = { "edge_sdk" = "pkg", "edge_sdk.runtime" = "rt" }\n')
    for name, text in SYNTHETIC.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    project = load_project(tmp_path / "pyproject.toml")
    assert set(project.modules) >= {"edge_sdk", "edge_sdk.train.loop", "edge_sdk.runtime", "edge_sdk.runtime.sinks"}
    assert "edge_sdk.rt.tasks" not in project.modules  # a folder mapped elsewhere is not walked twice

    assert find_cycles(project) == [
        "edge_sdk.train.helpers -> edge_sdk.train.loop -> edge_sdk.train.helpers"
        "   [pkg/train/helpers.py:2 (in a function); pkg/train/loop.py:1]".replace("pkg/", f"{tmp_path.resolve()}/pkg/")
    ]

    private = find_private_imports(project)
    assert len(private) == 2, private  # __version__ and media's own _impl are fine
    assert "imports _hidden from edge_sdk.errors" in private[0] and "rt/tasks.py:1" in private[0]
    assert "private module edge_sdk.media._impl from outside edge_sdk.media" in private[1]

    layers = "\n".join(find_layer_violations(project))
    assert "rt/sinks.py:3 (in a function): edge_sdk.runtime.sinks imports edge_sdk.train.loop" in layers
    assert "edge_sdk.runtime.align imports edge_sdk.checkpoint" in layers
    assert "edge_sdk.media._impl imports torch" in layers
    assert "edge_sdk.media.image" not in layers  # numpy, errors and itself are allowed
    assert "edge_sdk.runtime.sinks imports edge_sdk.media.image" not in layers
    assert "edge_sdk.eval imports edge_sdk.runtime.tasks (core:" in layers  # and not the apps: TYPE_CHECKING only
    assert len(layers.splitlines()) == 4, layers

    long = tmp_path / "long.py"
    long.write_text("class C:\n    @staticmethod\n    def m():\n" + "        x = 1\n" * 80 + "\n" * 420)
    assert find_oversized([long]) == [f"{long}: 503 lines (file)", f"{long}:3: C.m() 81 lines"]
