"""The layering of `docs/architecture.md`, checked on the source: a module imports only from its
own layer or the ones below it, the packages import each other without cycles, and the local
engine (a process of its own) imports nothing of the gateway. A new package must be given a
layer here, and in the architecture description."""

from __future__ import annotations

import ast
import itertools
from collections import defaultdict
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "src" / "modelyard"

# Lowest first. A unit is a top-level module or package of `modelyard`, or one module of a
# package whose modules sit in different layers (`policy`: its values sit below `auth`, the
# access policy that reads the directory above it).
LAYERS: list[tuple[str, list[str]]] = [
    (
        "foundation",
        [
            "errors",
            "money",
            "streams",
            "settings",
            "engine",
            "__init__",
            "policy",
            "policy.rbac",
            "policy.spending",
            "policy.networks",
        ],
    ),
    ("wire formats and stores", ["protocol", "db", "limits", "catalog"]),
    ("domain", ["structured", "observability", "audit", "auth"]),
    ("accounting and access", ["ledger", "policy.access"]),
    ("providers", ["providers"]),
    ("routing", ["routing"]),
    ("use-cases", ["serving", "admin", "evals"]),
    ("application state", ["state"]),
    ("HTTP surfaces", ["api"]),
    ("application", ["app", "http_protocol", "http_server"]),
    ("entry points", ["workers", "cli", "admin_cli", "eval_cli", "__main__", "testing"]),
]
LAYER_OF = {unit: index for index, (_, units) in enumerate(LAYERS) for unit in units}


def unit_of(dotted: str) -> str:
    """The layered unit of `modelyard.a.b.c`: `a.b` when that is listed, otherwise `a`."""
    parts = dotted.split(".")[1:] or ["__init__"]
    two = ".".join(parts[:2])
    return two if two in LAYER_OF else parts[0]


def module_name(path: Path) -> str:
    relative = path.relative_to(SOURCE.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts) if len(parts) > 1 else "modelyard.__init__"


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every `modelyard` import, lazy ones in functions included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("modelyard."):
                found.append((node.lineno, node.module))
            elif node.module == "modelyard":
                found += [(node.lineno, _from_package(alias.name)) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [
                (node.lineno, alias.name)
                for alias in node.names
                if alias.name.startswith("modelyard.")
            ]
    return found


def _from_package(name: str) -> str:
    """`from modelyard import name`: a submodule, or a name defined in `__init__`."""
    is_module = (SOURCE / name).is_dir() or (SOURCE / f"{name}.py").is_file()
    return f"modelyard.{name}" if is_module else "modelyard.__init__"


def source_files() -> list[Path]:
    return [p for p in sorted(SOURCE.rglob("*.py")) if "migrations" not in p.parts]


def unit_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in source_files():
        importer = unit_of(module_name(path))
        for _, imported in imports_of(path):
            target = unit_of(imported)
            if target != importer:
                graph[importer].add(target)
    return graph


def test_every_unit_has_a_layer() -> None:
    unplaced = sorted({unit_of(module_name(path)) for path in source_files()} - set(LAYER_OF))
    assert not unplaced, f"give these a layer in LAYERS and docs/architecture.md: {unplaced}"


def test_no_module_imports_a_higher_layer() -> None:
    test_every_unit_has_a_layer()
    violations = []
    for path in source_files():
        importer = unit_of(module_name(path))
        for line, imported in imports_of(path):
            target = unit_of(imported)
            if LAYER_OF[target] > LAYER_OF[importer]:
                violations.append(
                    f"{path.relative_to(SOURCE)}:{line} ({LAYERS[LAYER_OF[importer]][0]}) "
                    f"imports {imported} ({LAYERS[LAYER_OF[target]][0]})"
                )
    assert not violations, "a lower layer imports a higher one:\n" + "\n".join(violations)


def test_units_import_each_other_without_cycles() -> None:
    graph = unit_graph()
    cycles = [
        f"{a} <-> {b}"
        for a, b in itertools.combinations(sorted(graph), 2)
        if _reaches(graph, a, b) and _reaches(graph, b, a)
    ]
    assert not cycles, f"import cycles between units: {cycles}"


def test_the_engine_imports_nothing_of_the_gateway() -> None:
    assert unit_graph().get("engine", set()) == set()


@pytest.mark.parametrize(
    ("importer", "imported", "allowed"),
    [
        ("modelyard.serving.chat", "modelyard.api.chat", False),
        ("modelyard.api.chat", "modelyard.serving.chat", True),
        ("modelyard.auth.principal", "modelyard.policy.rbac", True),
        ("modelyard.auth.directory", "modelyard.policy.access", False),
    ],
)
def test_the_rule_itself(importer: str, imported: str, allowed: bool) -> None:
    assert (LAYER_OF[unit_of(imported)] <= LAYER_OF[unit_of(importer)]) is allowed


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, stack = {start}, [start]
    while stack:
        for nxt in graph.get(stack.pop(), set()):
            if nxt == goal:
                return True
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return False
