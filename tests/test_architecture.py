"""The house stays in order: the layers of ARCHITECTURE.md hold (each module imports only its own layer and lower
ones; the harness's stages are packages that import only earlier stages), no import circles, and no room holds too
many jobs."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "plugins" / "yolo_necks"
MAX_LINES = 550  # "under ~500 lines": a module past this wants splitting along its own seams


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Every package module ``path`` imports, at module level or inside a function (a deferred import back up the
    graph is still a circle)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name and not name.startswith(t + "."):  # a module importing its own package: not an edge
                found.add(t)
    return found


def graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in files}
    return {module_name(p): imports_of(p, modules) for p in files}


PACKAGES = {"yolo_necks", "yolo_necks.ablation", "yolo_necks.datasets", "yolo_necks.blocks"} | {
    f"yolo_necks.ablation.{stage}" for stage in ("records", "spec", "prepare", "execute", "analyse")}

# The layers, lowest first (ARCHITECTURE.md, "Who may import whom"): a module may import modules of its own layer or
# of lower ones, never of a higher one. A name is a module or a package (every module under it).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("leaves", ("errors", "_lazy", "catalog", "timing", "threads", "flops", "reference", "blocks", "fast",
                "yamltext")),
    ("parser", ("validate", "translate", "registry", "graph")),
    ("tools", ("editing", "editing_cli", "tables", "bench", "bench_tables", "datasets", "deploy", "cocoeval")),
    ("records", ("ablation.records",)),
    ("spec", ("ablation.spec",)),
    ("prepare", ("ablation.prepare",)),
    ("execute", ("ablation.execute",)),
    ("analyse", ("ablation.analyse",)),
    ("driver", ("ablation.runner", "ablation.adaptive", "ablation.cli", "ablation")),
    ("verbs", ("cli", "yolo_necks")),
]


def layer_of(module: str) -> int | None:
    """The layer of a module (the most specific name that covers it), None when no layer names it."""
    name = module.removeprefix("yolo_necks").removeprefix(".") or "yolo_necks"
    best, found = -1, None
    for rank, (_, names) in enumerate(LAYERS):
        for n in names:
            if (name == n or name.startswith(n + ".")) and len(n) > best:
                best, found = len(n), rank
    return found


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    """Every import of a module of a higher layer, as 'a (layer) -> b (layer)'."""
    out = []
    for a, targets in sorted(edges.items()):
        for b in sorted(targets):
            la, lb = layer_of(a), layer_of(b)
            if lb is not None and la is not None and lb > la:
                out.append(f"{a} ({LAYERS[la][0]}) -> {b} ({LAYERS[lb][0]})")
    return out


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The circles a depth-first walk meets (packages re-export lazily: their modules are the nodes)."""
    state: dict[str, int] = {}
    found = []

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if nxt in PACKAGES:
                continue
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt):] + [nxt])
            elif not state.get(nxt):
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if not state.get(node) and node not in PACKAGES:
            visit(node, [node])
    return found


def test_the_import_graph_has_no_circles():
    edges = graph()
    assert {"yolo_necks.validate", "yolo_necks.translate"} <= edges["yolo_necks.registry"]
    assert cycles(edges) == []


def test_every_module_has_a_layer():
    assert [m for m in graph() if layer_of(m) is None] == []


def test_no_module_imports_a_higher_layer():
    """The stages of the harness import only earlier stages (spec -> prepare -> execute -> analyse -> the driver,
    all over the records), and the plugin's layers below them hold too."""
    assert upward_imports(graph()) == []


def test_what_is_remote_stays_behind_the_executor_interface():
    """Only the execution stage knows Ray: the driver and the preparation ask the executor (check a timing node,
    time the arms there, check that the executor can be used)."""
    edges = graph()
    ray = "yolo_necks.ablation.execute.ray_cluster"
    users = sorted(m for m, targets in edges.items() if ray in targets)
    assert users == ["yolo_necks.ablation.execute.factory"]


def test_the_layer_checker_sees_an_upward_import(tmp_path, monkeypatch):
    pkg = tmp_path / "yolo_necks"
    (pkg / "ablation" / "spec").mkdir(parents=True)
    (pkg / "ablation" / "analyse").mkdir()
    for d in (pkg, pkg / "ablation", pkg / "ablation" / "spec", pkg / "ablation" / "analyse"):
        (d / "__init__.py").write_text("")
    (pkg / "ablation" / "analyse" / "stats.py").write_text("X = 1\n")
    (pkg / "ablation" / "spec" / "checks.py").write_text("def f():\n    from ..analyse.stats import X\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", pkg)
    assert upward_imports(graph()) == [
        "yolo_necks.ablation.spec.checks (spec) -> yolo_necks.ablation.analyse.stats (analyse)"]


def test_the_checker_sees_a_circle(tmp_path, monkeypatch):
    """The graph walker above must notice a circle where there is one (a deferred import included)."""
    pkg = tmp_path / "yolo_necks"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import x\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", pkg)
    edges = graph()
    assert edges["yolo_necks.a"] == {"yolo_necks.b"} and edges["yolo_necks.b"] == {"yolo_necks.a"}
    assert cycles(edges) == [["yolo_necks.a", "yolo_necks.b", "yolo_necks.a"]]


def test_no_module_is_a_house_of_many_rooms():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}
