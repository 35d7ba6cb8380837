"""The package layout's rules, checked on the source: imports point one way (cli -> scan/training ->
model/pairs/faces -> paths/io/errors/runtime/metrics; api -> scan), no import cycle between modules, no private name used outside
its module, commands registered statically, no module much over 350 lines, and a test file per module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "forgerydet"
TESTS = Path(__file__).resolve().parent
BASE = {"forgerydet", "errors", "io", "paths", "runtime", "metrics"}  # the bottom layer (forgerydet = the package's __init__)
MAY_IMPORT = {  # stage -> the stages it may import (besides itself)
    "errors": set(),
    "io": {"errors", "runtime"},  # runtime: the process-wide silence of fd 2 around native decoders
    "paths": {"errors", "io"},  # output checks, on io's streams and file kinds
    "runtime": {"errors"},
    "metrics": {"errors", "io"},
    "forgerydet": set(),
    "faces": BASE,
    "model": BASE,
    "pairs": BASE | {"faces"},
    "training": BASE | {"faces", "model", "pairs"},
    "scan": BASE | {"faces", "model", "pairs"},
    "demo": BASE | {"faces", "pairs"},
    "cli": BASE | {"faces", "model", "pairs", "training", "scan"},
    "api": BASE | {"faces", "scan"},  # the Python entry point, beside the CLI
    "__main__": {"cli"},
}
MAX_LINES = 360


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module(p): p for p in sorted(SRC.rglob("*.py"))}


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "forgerydet"


def _imports(path: Path, modules: dict[str, Path]) -> list[tuple[str, str, int]]:
    """(imported module, imported name or '', line) for every forgerydet import of a file, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "forgerydet":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.append((sub, "", node.lineno) if sub in modules else (node.module, a.name, node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.level:
            out.append(("<relative>", "", node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, "", node.lineno) for a in node.names if a.name.split(".")[0] == "forgerydet"]
    return out


def test_imports_point_one_way_and_are_absolute():
    modules = _modules()
    bad = []
    for mod, path in modules.items():
        for target, _, line in _imports(path, modules):
            if target == "<relative>":
                bad.append(f"{mod}:{line}: relative import")
            elif _stage(target) != _stage(mod) and _stage(target) not in MAY_IMPORT[_stage(mod)]:
                bad.append(f"{mod}:{line} imports {target} ({_stage(mod)} may not import {_stage(target)})")
    assert not bad, "\n".join(bad)


def test_no_import_cycle():
    modules = _modules()
    graph = {m: {t for t, _, _ in _imports(p, modules) if t in modules and t != m} for m, p in modules.items()}
    graph = {m: {t for t in ts if t != "forgerydet"} for m, ts in graph.items()}  # __version__ only
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_no_private_name_used_outside_its_module():
    modules = _modules()
    files = list(modules.values()) + sorted(TESTS.rglob("*.py")) + sorted((SRC.parents[1] / "bench").glob("*.py"))
    bad = [f"{p.relative_to(SRC.parents[1])}:{line}: {target}.{name}" for p in files
           for target, name, line in _imports(p, modules) if name.startswith("_") and name != "__version__"]
    assert not bad, "\n".join(bad)


def test_commands_are_registered_statically():
    app = (SRC / "cli" / "app.py").read_text(encoding="utf-8")
    assert "importlib" not in app and "ModuleNotFoundError" not in app
    for f in (SRC / "cli").glob("*.py"):
        assert "def register(" not in f.read_text(encoding="utf-8"), f.name


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_module_size(path):
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(SRC)} has {n} lines: split it by responsibility"


def test_every_module_has_its_test_file():
    missing = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.name in ("__init__.py", "__main__.py", "demo.py"):  # demo: `make demo` runs it end to end
            continue
        if not (TESTS / rel.parent / f"test_{rel.stem}.py").is_file():
            missing.append(f"{rel} -> tests/{rel.parent / f'test_{rel.stem}.py'}")
    assert not missing, "\n".join(missing)
