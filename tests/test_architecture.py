"""The house rules of toolchain/ (docs/architecture.md): three floors, arrows only downwards.

core           knows no stage: the artifact, data, models, ONNX files, targets, measurement, costs, plots
stages         import only the core: a stage that needs another stage's result gets it as a file or a callable
orchestration  pipeline, cli and the package's top level: the only modules that put stages together
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "toolchain"

CORE = {"errors", "progress", "fileio", "options", "artifact", "models", "models.zoo", "data", "data.sources",
        "cache", "onnxio", "bench_runner", "remote", "emulate", "target", "surgery", "importance", "executor", "train",
        "data.packaged", "streaming",
        "convert", "cost", "measure", "plots"}
STAGES = {"analyze", "prune", "profile", "quantize", "export", "bench", "check", "report"}
ORCHESTRATION = {"", "pipeline", "cli"}  # "": the package itself (toolchain/__init__.py, the Python API)

# function-local imports of toolchain modules that are allowed, and why (every other one dodges a circle)
LAZY = {("cli", "*"): "the CLI loads a stage only when its command runs: `compress --help` starts without torch",
        ("measure", "emulate"): "emulate reads data's cache folder and data imports torch: bench starts without it",
        ("models.zoo", "models"): "the A2E rebuilds itself from its spec through the registry that holds it"}
MAX_LINES = 600


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__")


def _floor(module: str) -> str:
    first = module.split(".")[0]
    return ("core" if module in CORE or first in CORE else "stage" if first in STAGES
            else "orchestration" if first in ORCHESTRATION else "?")


def _imports() -> list[tuple[str, str, bool]]:
    """(importer, imported, inside a function) for every import of a toolchain module."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module, tree = _name(path), ast.parse(path.read_text())
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        local = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".") if package else []
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target] if node.module else [".".join(base + [a.name]) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("toolchain"):
                target = node.module.removeprefix("toolchain").lstrip(".")
                names = [target] if target else [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name.removeprefix("toolchain").lstrip(".") for a in node.names if
                         a.name.startswith("toolchain")]
            else:
                continue
            for name in names:
                if (PACKAGE / f"{name.replace('.', '/')}.py").exists() or (PACKAGE / name.replace(".", "/")).is_dir():
                    found.append((module, name, id(node) in local))
    return found


def test_every_module_has_a_floor():
    assert [m for m in map(_name, PACKAGE.rglob("*.py")) if _floor(m) == "?"] == []


def test_arrows_go_only_downwards():
    """A core module imports no stage; a stage imports no other stage; nothing imports the orchestration."""
    rank = {"core": 0, "stage": 1, "orchestration": 2}
    wrong = []
    for importer, imported, _ in _imports():
        a, b = _floor(importer), _floor(imported)
        same_stage = importer.split(".")[0] == imported.split(".")[0]  # within one stage's package
        if (rank[b] > rank[a] or (a == b == "stage" and not same_stage)) and importer != "" and not same_stage:
            wrong.append(f"{importer} ({a}) -> {imported} ({b})")
    assert wrong == []


def test_no_import_inside_a_function_dodges_a_circle():
    lazy = [(a, b) for a, b, inside in _imports()
            if inside and (a, b) not in LAZY and (a.split(".")[0], "*") not in LAZY]
    assert lazy == []


def test_no_import_circle():
    graph: dict[str, set[str]] = {}
    for a, b, inside in _imports():
        if not inside and a != b and not b.startswith(f"{a}.") and not a.startswith(f"{b}."):
            graph.setdefault(a, set()).add(b)
    seen, stack, circles = set(), [], []

    def visit(node: str) -> None:
        if node in stack:
            circles.append(stack[stack.index(node):] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt)
        stack.pop()
    for node in sorted(graph):
        visit(node)
    assert circles == []


def test_no_module_is_a_grab_bag():
    long = {_name(p): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


@pytest.mark.parametrize("path", sorted((ROOT / "benchmarks").glob("*.py")), ids=lambda p: p.name)
def test_benchmarks_use_the_public_api_only(path):
    private = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("toolchain"):
            private += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_") and
                        not a.name.startswith("__")]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__") and \
                isinstance(node.value, ast.Name) and node.value.id in {_name(p).split(".")[0] for p in
                                                                        PACKAGE.glob("*.py")}:
            private.append(f"{node.value.id}.{node.attr}")
    assert private == []


def test_the_emulation_tolerance_is_one_figure():
    from toolchain import emulate, measure

    assert measure.EMULATE_TOLERANCE == emulate.TOLERANCE


def test_the_architecture_page_is_a_map():
    assert len((ROOT / "docs" / "architecture.md").read_text().splitlines()) < 150
