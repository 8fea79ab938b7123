"""Checks over Keel's own source, the way TigerBeetle runs a tidy pass."""

from __future__ import annotations

import ast
from pathlib import Path

ENGINE_DIR = Path(__file__).resolve().parents[2] / "engine"


def test_engine_never_imports_the_http_side() -> None:
    for path in ENGINE_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = [(node.module or "").split(".")[0]]
            else:
                continue
            for root in roots:
                assert root not in {"aiohttp", "server"}, f"{path} imports {root}"


def test_engine_has_no_bare_except_or_silent_pass() -> None:
    for path in ENGINE_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ExceptHandler):
                assert node.type is not None, f"bare except in {path}:{node.lineno}"
                is_silent = len(node.body) == 1 and isinstance(node.body[0], ast.Pass)
                assert not is_silent, f"swallowed exception in {path}:{node.lineno}"


SERVER_DIR = ENGINE_DIR.parent / "server"
LOG_METHODS = {"debug", "info", "warning", "error", "critical", "exception"}
# Modules whose log lines are still %-formatted text (their owners convert them); such a
# line is escaped but is one string: JSON shows it whole as "event", with no fields.
NOT_YET_LOG_EVENT = {
    "engine/files.py",
    "engine/wal/followers.py",
    "engine/snapshot.py",
    "server/cli.py",
    "server/commands/import_cli.py",
    "server/commands/migrate.py",
    "server/commands/transfer.py",
}


def test_modules_log_through_log_event() -> None:
    """Goal: every log line has its fields as data (engine/logfmt.py), so JSON logs carry
    them and text logs quote them. Method: no `log.<level>(...)` call outside the list."""
    calls = []
    for path in [*ENGINE_DIR.rglob("*.py"), *SERVER_DIR.rglob("*.py")]:
        name = path.relative_to(ENGINE_DIR.parent).as_posix()
        if name in NOT_YET_LOG_EVENT:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            is_log_call = (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in LOG_METHODS
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "log"
            )
            if is_log_call:
                calls.append(f"{name}:{node.lineno}")
    assert calls == [], f"use engine.logfmt.log_event: {calls}"


# --- layers (issue 14) ---
# Each module belongs to one layer: its subpackage, or for a top-level module, the set it is
# listed in below. A layer may import only the layers listed for it (and itself); the
# relation is a DAG, so no two layers can import each other. docs/ARCHITECTURE.md describes
# the layers; a new top-level module must be given a layer here.
ROOT_DIR = ENGINE_DIR.parent
ENGINE_BASE = {"ops", "errors", "limits", "files", "locks", "logfmt", "stats", "__init__"}
ENGINE_SPINE = {
    "applier",
    "collection",
    "catalog",
    "snapshot",
    "full_snapshot",
    "validation",
}
SERVER_BASE = {"__init__", "responses", "config", "logs", "version", "malloc_arenas"}
SERVER_APP = {"__main__", "app", "run", "cli", "auth", "request_log", "routing", "systemd"}
ENGINE_ORDER = [
    "engine.base",
    "engine.filters",
    "engine.wal",
    "engine.store",
    "engine.vectors",
    "engine.readview",
    "engine.query",
    "engine.strict_mode",
    "engine.spine",
    "engine.check",
]
MAY_IMPORT = {
    # engine: each layer may import every layer before it in ENGINE_ORDER
    **{layer: set(ENGINE_ORDER[:index]) for index, layer in enumerate(ENGINE_ORDER)},
    "server.base": {*ENGINE_ORDER},
    "server.wire": {*ENGINE_ORDER, "server.base"},
    "server.api": {*ENGINE_ORDER, "server.base", "server.wire"},
    "server.commands": {*ENGINE_ORDER, "server.base"},
    "server.app": {*ENGINE_ORDER, "server.base", "server.wire", "server.api", "server.commands"},
}


def layer_of(module: str) -> str:
    """`engine.wal.log` -> "engine.wal"; `engine.ops` -> "engine.base"."""
    parts = module.split(".")
    package = parts[0]
    if len(parts) > 2 or (ROOT_DIR / package / parts[1]).is_dir():
        return f"{package}.{parts[1]}"
    sets = {
        "engine": {"base": ENGINE_BASE, "spine": ENGINE_SPINE},
        "server": {"base": SERVER_BASE, "app": SERVER_APP},
    }[package]
    for name, members in sets.items():
        if parts[1] in members:
            return f"{package}.{name}"
    raise AssertionError(f"{module} has no layer: add it to a set in test_tidy.py")


def keel_imports(path: Path) -> set[str]:
    """The engine/server modules a file imports (`from engine.wal import log` -> engine.wal.log)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                is_module = (ROOT_DIR / candidate.replace(".", "/")).with_suffix(".py").exists()
                found.add(candidate if is_module else node.module)
    return {name for name in found if name.split(".")[0] in {"engine", "server"}}


def module_graph() -> dict[str, set[str]]:
    graph = {}
    for package_dir in (ENGINE_DIR, SERVER_DIR):
        for path in package_dir.rglob("*.py"):
            module = ".".join(path.relative_to(ROOT_DIR).with_suffix("").parts)
            module = module.removesuffix(".__init__")
            if module not in {"engine", "server"}:
                graph[module] = keel_imports(path) - {"engine", "server"}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of graph as a list of nodes, or [] if it is a DAG."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = "open"
        stack.append(node)
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == "open":
                return stack[stack.index(successor) :] + [successor]
            if successor not in state and (cycle := visit(successor)):
                return cycle
        state[node] = "done"
        stack.pop()
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, imported in sorted(graph.items()):
        for target in sorted(imported):
            source_layer, target_layer = layer_of(module), layer_of(target)
            if target_layer != source_layer and target_layer not in MAY_IMPORT[source_layer]:
                found.append(f"{module} ({source_layer}) imports {target} ({target_layer})")
    return found


def test_the_declared_layer_order_is_itself_acyclic() -> None:
    assert find_cycle(MAY_IMPORT) == []


def test_no_module_imports_a_layer_above_its_own() -> None:
    """Goal: dependencies point one way (STYLE.md §1): base, then the subsystems, then the
    spine, then check; server base < wire < api < app, commands beside api. Method: every
    import of an engine/server module, module-level or inside a function, checked against
    MAY_IMPORT."""
    assert upward_imports(module_graph()) == []


def test_modules_and_layers_import_no_cycle() -> None:
    graph = module_graph()
    assert find_cycle(graph) == []
    layer_graph: dict[str, set[str]] = {}
    for module, imported in graph.items():
        layer_graph.setdefault(layer_of(module), set()).update(
            layer_of(target) for target in imported if layer_of(target) != layer_of(module)
        )
    assert find_cycle(layer_graph) == []


def test_an_upward_import_is_caught() -> None:
    """The check above is not vacuous: the WAL importing the applier, or a wire module
    importing a handler, is reported."""
    graph = module_graph()
    graph["engine.wal.log"] = graph["engine.wal.log"] | {"engine.applier"}
    graph["server.wire.schemas"] = graph["server.wire.schemas"] | {"server.api.points"}
    assert upward_imports(graph) == [
        "engine.wal.log (engine.wal) imports engine.applier (engine.spine)",
        "server.wire.schemas (server.wire) imports server.api.points (server.api)",
    ]
    assert find_cycle({"engine.wal": {"engine.store"}, "engine.store": {"engine.wal"}})
