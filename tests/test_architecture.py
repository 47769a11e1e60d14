"""The shape of the code: core in layers (a subpackage never imports one above it), no import cycle,
small modules, no Streamlit in core, only pages in pages/."""

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Lowest first. A module may import modules of its own layer and of the layers before it, never after.
LAYERS = [
    ("core.settings", "core.plugins", "core.access"),  # the environment; plugins named there; who may change what
    ("core.data",),  # splits, augmentation pipelines
    ("core.datasets",),  # datasets brought from the browser: upload, images, their folders and labels
    ("core.models",),  # networks and their registry
    ("core.config",),  # the run config (its arch rule asks core.models)
    ("core.engine",),  # device and precision, the training loop, optimisers, prediction, CUDA graphs
    ("core.methods",),  # what a method is, the method registry, shared pieces, one file per method
    ("core.runs",),  # a run: record, store, fit, many seeds, re-evaluation, prediction
    ("core.views",),  # what the pages show that is not Streamlit: charts, tables, maps, the notebook
    ("core.jobs",),  # queue, worker, supervisor, launcher, Ray, progress text
    ("core.classroom",),  # class mode: who is who, the lesson, the teacher's actions
    ("core.cli", "core.__main__", "core"),
]
MAX_CORE_ROOT_MODULES = 8
MAX_LINES = 350


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module a file names in an import, at the top or inside functions: `from a.b import c` gives
    a.b and a.b.c (c may be a module). The packages above (a) are left out: Python runs their __init__
    first, but that is the package's own business, not this file's dependency."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return found


def core_graph() -> dict[str, set[str]]:
    """module -> the modules of core it imports. `from core import settings` names the package core and
    its module core.settings: only the module counts."""
    files = {module_name(p): p for p in (ROOT / "core").rglob("*.py")}
    graph = {}
    for m, p in files.items():
        named = {i for i in imports_of(p) if i in files and i != m}
        graph[m] = {i for i in named if not any(j.startswith(i + ".") for j in named)}
    return graph


def layer_of(module: str) -> int:
    for i, layer in enumerate(LAYERS):
        if any(module == top or module.startswith(top + ".") for top in layer if top != "core") or module in layer:
            return i
    raise AssertionError(f"{module} belongs to no layer: add its subpackage to LAYERS")


def test_no_module_of_core_imports_one_that_imports_it_back():
    graph = core_graph()
    assert len(graph) > 40
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(nxt) :] + [node, nxt]))
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_no_subpackage_imports_one_above_it():
    upward = [
        f"{m} (layer {layer_of(m)}) imports {i} (layer {layer_of(i)})"
        for m, imported in core_graph().items()
        for i in imported
        if layer_of(i) > layer_of(m)
    ]
    assert not upward, "\n".join(upward)


def test_the_checks_find_a_cycle_and_an_upward_import(monkeypatch):
    """Both walks above can fail: a graph with a cycle, and one with an upward import, are reported."""
    graph = core_graph()
    with_cycle = graph | {"core.engine.device": graph["core.engine.device"] | {"core.engine.loop"}}
    monkeypatch.setattr(sys.modules[__name__], "core_graph", lambda: with_cycle)
    try:
        test_no_module_of_core_imports_one_that_imports_it_back()
    except AssertionError as err:
        assert "core.engine.device" in str(err)
    else:
        raise AssertionError("a cycle went unnoticed")
    upward = graph | {"core.data.splits": graph["core.data.splits"] | {"core.runs.store"}}
    monkeypatch.setattr(sys.modules[__name__], "core_graph", lambda: upward)
    try:
        test_no_subpackage_imports_one_above_it()
    except AssertionError as err:
        assert "core.data.splits (layer 1) imports core.runs.store (layer 7)" in str(err)
    else:
        raise AssertionError("an upward import went unnoticed")


def test_every_subpackage_says_what_it_holds_and_what_it_may_import():
    """Each subpackage's __init__ docstring has a paragraph 'May import: ...', which must name exactly
    the layers below it (so the sentence a newcomer reads is the rule this file checks)."""
    for init in sorted((ROOT / "core").glob("*/__init__.py")):
        package = module_name(init)
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert len(doc.split()) >= 8, f"{package}: its docstring should say what it holds"
        assert "\nMay import:" in doc, f"{package}: the docstring has no 'May import:' paragraph"
        paragraph = doc.split("\nMay import:", 1)[1].split("\n\n", 1)[0]
        stated = {name.strip(" .\n") for name in paragraph.split(",") if name.strip(" .\n")}
        below = {top for layer in LAYERS[: layer_of(package)] for top in layer if top.count(".") == 1}
        assert stated == below or (stated == {"nothing of core"} and not below), (package, stated, below)


def test_core_root_is_small_and_no_module_is_long():
    root_modules = [p.name for p in (ROOT / "core").glob("*.py")]
    assert len(root_modules) <= MAX_CORE_ROOT_MODULES, root_modules
    long = [
        f"{p.relative_to(ROOT)}: {n} lines"
        for folder in ("core", "ui", "pages", "benchmarks")
        for p in (ROOT / folder).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    ]
    assert not long, long


def test_no_docstring_is_a_dead_string():
    """A string placed after a function's first statement is no docstring: nothing reads it."""
    dead = []
    for folder in ("core", "ui", "pages", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    dead += [
                        f"{path.relative_to(ROOT)}:{stmt.lineno} in {node.name}"
                        for stmt in node.body[1:]
                        if isinstance(stmt, ast.Expr) and isinstance(getattr(stmt.value, "value", None), str)
                    ]
    assert not dead, dead


def test_core_never_imports_streamlit_and_pages_hold_only_pages():
    for path in (ROOT / "core").rglob("*.py"):
        assert not any(i.startswith("streamlit") for i in imports_of(path)), path
    for path in (ROOT / "pages").glob("*.py"):
        assert 'framed("pages/' in path.read_text(), f"{path.name} is not a page (helpers belong in ui/)"
