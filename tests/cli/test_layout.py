"""The package's layout holds: no import circles, every ``__all__`` resolves, no private names across packages."""

import ast
import importlib
from pathlib import Path

import pytest

from conftest import REPO

# folder at the repository root -> its import name (pyproject.toml's package-dir)
PACKAGES = {"fieldfit": "fieldfit", "fields": "fieldfit.fields", "render": "fieldfit.render", "mesh": "fieldfit.mesh",
            "cuda": "fieldfit.cuda", "viewer": "fieldfit.viewer", "scenes": "fieldfit.scenes"}


def modules() -> dict[str, Path]:
    out = {}
    for folder, name in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([name, *parts])] = path
    return out


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """Every fieldfit module ``module`` imports, at module level or inside functions."""
    is_pkg = path.name == "__init__.py"
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            root = ".".join(base[:len(base) - node.level + 1]) if node.level else ""
            mod = ".".join(p for p in (root, node.module or "") if p)
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for n in names:
            while n and n not in known:  # a name inside a module: the module
                n = n.rpartition(".")[0]
            if n and n != module:
                out.add(n)
    return out


def test_no_import_circles():
    mods = modules()
    known = set(mods)
    graph = {m: {n for n in imports_of(m, p, known) if not m.startswith(n + ".")} for m, p in mods.items()}
    # a package's __init__ importing its own modules is not a circle with them (they import siblings, not it)
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def strong(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            strong(v)
    assert not cycles, f"import circles: {cycles}"


def test_the_circle_finder_finds_a_circle(tmp_path):
    # the meta-test: a two-module circle written here is reported
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from fieldfit.x import b\n")
    b.write_text("def f():\n    from fieldfit.x import a\n")
    known = {"fieldfit.x.a", "fieldfit.x.b"}
    assert imports_of("fieldfit.x.a", a, known) == {"fieldfit.x.b"}
    assert imports_of("fieldfit.x.b", b, known) == {"fieldfit.x.a"}


@pytest.mark.parametrize("module", sorted(m for m, p in modules().items() if p.name == "__init__.py"))
def test_every_name_in_all_resolves(module):
    if module.startswith("fieldfit.viewer"):
        pytest.importorskip("glfw")
    mod = importlib.import_module(module)
    for name in getattr(mod, "__all__", []):
        assert getattr(mod, name, None) is not None, f"{module}.__all__ names {name}, which it does not define"


# The kernel benchmarks are fieldfit.cuda's own tools: they time each kernel's candidates and launch settings
# (module globals of the Triton files) and the torch paths against the references, which have no public form by
# design.
CUDA_TOOLS = {"kernels_bench.py", "host_overhead.py", "frame_gpu.py", "traverse_bench.py"}


@pytest.mark.parametrize("folder", ["viewer", "bench"])
def test_viewer_and_bench_use_no_private_names_of_other_packages(folder):
    mods = modules()
    bad = []
    for path in sorted((REPO / folder).rglob("*.py")):
        own = "fieldfit.cuda" if folder == "bench" and path.name in CUDA_TOOLS else PACKAGES.get(folder, folder)
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                    and node.module.startswith("fieldfit")):
                private_mod = any(p.startswith("_") for p in node.module.split("."))
                private_names = [a.name for a in node.names if a.name.startswith("_")]
                if (private_mod or private_names) and not node.module.startswith(own):
                    bad.append(f"{path.relative_to(REPO)}: from {node.module} import "
                               f"{', '.join(a.name for a in node.names)}")
    assert not bad, "\n".join(bad)
    assert mods  # the module map is not empty (the checks above looked at something)


def test_pyproject_lists_every_package_folder():
    import tomllib

    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    on_disk = {m for m, p in modules().items() if p.name == "__init__.py"}
    assert listed == on_disk, f"missing from pyproject: {sorted(on_disk - listed)}; gone: {sorted(listed - on_disk)}"
    assert cfg["package-dir"] == {name: folder for folder, name in PACKAGES.items()}


@pytest.mark.parametrize("module", sorted(m for m in modules()
                                           if not m.startswith("fieldfit.viewer") and m != "fieldfit.__main__"))
def test_docstring_examples_run(module):
    import doctest

    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{module}: {result.failed} of {result.attempted} docstring examples failed"
