"""The shape of the code: no import cycles in core, no Streamlit in core, only pages in pages/."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions, parent packages included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return found


def core_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in (ROOT / "core").rglob("*.py")}
    return {m: {i for i in imports_of(p) if i in files and i != m} for m, p in files.items()}


def test_no_module_of_core_imports_one_that_imports_it_back():
    graph = core_graph()
    assert len(graph) > 20
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


def test_the_cycle_check_finds_a_cycle(monkeypatch):
    """The walk above can fail: a graph with a cycle is reported."""
    graph = core_graph()
    graph["core.config"] = graph["core.config"] | {"core.train"}
    import sys

    monkeypatch.setattr(sys.modules[__name__], "core_graph", lambda: graph)
    try:
        test_no_module_of_core_imports_one_that_imports_it_back()
    except AssertionError as err:
        assert "core.config" in str(err)
    else:
        raise AssertionError("a cycle went unnoticed")


def test_core_never_imports_streamlit_and_pages_hold_only_pages():
    for path in (ROOT / "core").rglob("*.py"):
        assert not any(i.startswith("streamlit") for i in imports_of(path)), path
    for path in (ROOT / "pages").glob("*.py"):
        assert 'framed("pages/' in path.read_text(), f"{path.name} is not a page (helpers belong in ui/)"
