"""The house rules of docs/architecture.md, checked on the source: which layer may import
which, no import cycles, kernels that know nothing of the harness, no model named by name
where its declaration should be read, and modules small enough to read."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"seqbench": ROOT / "seqbench", "seqbench.kernels": ROOT / "kernels"}
MAX_LINES = 500


def _modules() -> dict:
    """module name -> (path, is_package) for every file of seqbench and seqbench.kernels."""
    found = {}
    for package, base in PACKAGES.items():
        for path in base.rglob("*.py"):
            parts = [p for p in path.relative_to(base).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts])] = (path, path.name == "__init__.py")
    return found


def _imports(name: str, path: Path, is_package: bool, known) -> set:
    """The seqbench modules ``name`` imports, at the top or inside functions."""
    package = name if is_package else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            # `from pkg import sub` imports the module pkg.sub; `from pkg import name`, pkg
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


@pytest.fixture(scope="module")
def graph() -> dict:
    mods = _modules()
    return {name: _imports(name, *mods[name], mods) for name in mods}


def _cycle(graph: dict) -> list | None:
    """One import cycle as a list of modules, or None (depth-first search, three colours)."""
    colour, stack = dict.fromkeys(graph, 0), []

    def visit(v):
        colour[v] = 1
        stack.append(v)
        for w in sorted(graph[v]):
            if colour[w] == 1:
                return stack[stack.index(w) :] + [w]
            if colour[w] == 0 and (found := visit(w)):
                return found
        colour[v] = 2
        stack.pop()
        return None

    for v in sorted(graph):
        if colour[v] == 0 and (found := visit(v)):
            return found
    return None


def test_no_import_cycle(graph):
    assert len(graph) > 50  # the walk found the modules
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_kernels_import_nothing_of_the_harness(graph):
    bad = {
        (m, t)
        for m, targets in graph.items()
        if m.startswith("seqbench.kernels")
        for t in targets
        if not t.startswith("seqbench.kernels")
    }
    assert bad == set()


# A lower layer never imports a higher one (docs/architecture.md).
LAYERS = [
    ("seqbench.kernels", "seqbench.errors"),
    ("seqbench.backends",),
    ("seqbench.models", "seqbench.tasks"),
    ("seqbench.results",),
    ("seqbench.report",),
    ("seqbench.sweep",),
]


def _layer(module: str) -> int | None:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    return None


def test_no_layer_imports_a_higher_one(graph):
    upward = [
        (m, t)
        for m, targets in graph.items()
        for t in targets
        if _layer(m) is not None and _layer(t) is not None and _layer(t) > _layer(m)
    ]
    assert upward == []


def _code_hits(files: str, hit) -> list:
    """file:line of every AST node of ``files`` (globs) for which hit(node) is true."""
    paths = [p for f in files.split() for p in ROOT.glob(f)]
    assert paths
    return [
        f"{p.relative_to(ROOT)}:{node.lineno}"
        for p in paths
        for node in ast.walk(ast.parse(p.read_text()))
        if hit(node)
    ]


def _compares_backend(node) -> bool:
    if not isinstance(node, ast.Compare):
        return False
    sides = [node.left, *node.comparators]
    return any(getattr(s, "id", getattr(s, "attr", "")).endswith("backend") for s in sides)


def test_models_do_not_branch_on_the_backend():
    """models/ finds a backend through the registry, never through `backend == ...`."""
    assert _code_hits("seqbench/models/*.py", _compares_backend) == []
    assert _compares_backend(ast.parse("self.backend == 'cuda'").body[0].value)  # it would see one


def test_the_harness_reads_model_declarations_not_model_names():
    """config, training, console, sweeps and reports never name the reservoir: they read its
    ModelKind (fitted, run options, gates)."""
    files = "seqbench/config.py seqbench/train.py seqbench/console.py"
    files += " seqbench/sweep/*.py seqbench/report/*.py"
    named = _code_hits(files, lambda n: isinstance(n, ast.Constant) and n.value == "esn")
    assert named == []


def test_modules_fit_on_a_read():
    """No module over MAX_LINES lines, unless its docstring says why one idea needs more."""
    long = []
    for path, _ in _modules().values():
        lines = len(path.read_text().splitlines())
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > MAX_LINES and "one idea" not in doc:
            long.append(f"{path.relative_to(ROOT)}: {lines}")
    assert long == []
