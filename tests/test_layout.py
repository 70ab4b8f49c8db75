"""The package's layout, read from the source with ``ast`` (nothing is imported):

- the import graph of ``imagescore_det`` has no cycle;
- no code reaches into Detectron2's private trainer state (``._trainer``, ``._data_loader_iter``,
  ``reset_data_loader``): the training stream is extended through ``trainer.data_loader``;
- the scoring core and the classification mode import no Detectron2;
- the tools stay thin (their library code lives in the package);
- test modules do not import one another (shared code is in conftest.py and helpers.py).
"""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "imagescore_det"
TESTS = Path(__file__).resolve().parent
#: Detectron2's private trainer attributes, which nothing here may read.
PRIVATE_ATTRIBUTES = ("_trainer", "_data_loader_iter", "reset_data_loader")
#: Sub-packages that work with PyTorch alone.
DETECTRON2_FREE = ("scoring", "classification")
MAX_TOOL_LINES = 110


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules():
    """``{dotted name: (path, is_package)}`` of every module under imagescore_det/."""
    return {
        module_name(path): (path, path.name == "__init__.py")
        for path in sorted((REPO / PACKAGE).rglob("*.py"))
    }


def imports_of(path: Path, name: str, is_package: bool):
    """Every ``(imported name, [names imported from it])`` in the file (function bodies included), absolute."""
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            yield target, [alias.name for alias in node.names]


def ancestors(name: str):
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph():
    """``{module: set of imagescore_det modules it imports}``.

    ``import a.b.c`` is an edge to a.b.c; ``from a.b import c`` to a.b and, where c is a submodule,
    to a.b.c. Importing a submodule runs its packages' ``__init__`` first, so the packages above an
    imported module are edges too, except the importer's own packages, which are already being
    imported whenever the importer runs.
    """
    modules = package_modules()
    graph = {}
    for name, (path, is_package) in modules.items():
        edges = set()
        for target, names in imports_of(path, name, is_package):
            found = [target] + [
                "%s.%s" % (target, item) for item in names if "%s.%s" % (target, item) in modules
            ]
            for module in found:
                edges.update(m for m in [module] + ancestors(module) if m in modules)
        own = set(ancestors(name)) | {name}
        graph[name] = {module for module in edges if module not in own}
    return graph


def find_cycle(graph):
    """One cycle as a list of modules (first == last), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == "open":
                return stack[stack.index(successor) :] + [successor]
            if successor not in state:
                cycle = visit(successor)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_graph_sees_relative_absolute_and_package_imports():
    graph = import_graph()
    assert len(graph) > 40
    # from ..structures import ScoredImage; from .passes import ...; from ..scoring import ...
    assert {
        "imagescore_det.structures",
        "imagescore_det.detection.passes",
        "imagescore_det.scoring",
    } <= graph["imagescore_det.detection.modes"]
    # from imagescore_det.scoring import constants: the package and its submodule
    assert {"imagescore_det.scoring", "imagescore_det.scoring.constants"} <= graph[
        "imagescore_det.config"
    ]
    # from imagescore_det.utils.detectron2_import import ...: the module and its package
    assert {"imagescore_det.utils", "imagescore_det.utils.detectron2_import"} <= graph[
        "imagescore_det.engine.hooks"
    ]
    assert (
        "imagescore_det" not in graph["imagescore_det.engine.hooks"]
    )  # its own package: already importing
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_import_graph_is_acyclic():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def source_files(*folders):
    return [path for folder in folders for path in sorted((REPO / folder).rglob("*.py"))]


def test_nothing_reaches_into_detectron2s_private_trainer_state():
    found = []
    for path in source_files(PACKAGE, "tools", "bench"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRIBUTES:
                found.append("%s:%d .%s" % (path.relative_to(REPO), node.lineno, node.attr))
            elif isinstance(node, ast.Name) and node.id == "reset_data_loader":
                found.append("%s:%d %s" % (path.relative_to(REPO), node.lineno, node.id))
    assert not found, "private Detectron2 trainer state used: %s" % ", ".join(found)


@pytest.mark.parametrize("subpackage", DETECTRON2_FREE)
def test_pure_subpackages_import_no_detectron2(subpackage):
    modules = package_modules()
    found = []
    for name, (path, is_package) in modules.items():
        if not name.startswith("%s.%s" % (PACKAGE, subpackage)):
            continue
        for target, _ in imports_of(path, name, is_package):
            if target == "detectron2" or target.startswith("detectron2."):
                found.append("%s imports %s" % (name, target))
    assert any(name.startswith("%s.%s." % (PACKAGE, subpackage)) for name in modules)
    assert not found, found


@pytest.mark.parametrize("tool", sorted(path.name for path in (REPO / "tools").glob("*.py")))
def test_tools_are_thin(tool):
    lines = len((REPO / "tools" / tool).read_text().splitlines())
    assert lines <= MAX_TOOL_LINES, (
        "tools/%s has %d lines (at most %d: put library code in imagescore_det)"
        % (tool, lines, MAX_TOOL_LINES)
    )


def imported_test_modules(source: str, test_modules):
    """The test modules that ``source`` imports (``import test_x``, ``from test_x import y``, ``from . import test_x``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] + [alias.name for alias in node.names]
        found += [
            name
            for name in names
            if name.split(".")[0] in test_modules or name.split(".")[-1] in test_modules
        ]
    return found


def test_test_modules_do_not_import_each_other():
    test_modules = {path.stem for path in TESTS.glob("test_*.py")}
    assert imported_test_modules(
        "from test_modeling import slim_vgg_cfg\nimport helpers\n", test_modules
    ) == ["test_modeling"]
    assert imported_test_modules(
        "from . import test_engine\nfrom helpers import REPO\n", test_modules
    ) == ["test_engine"]
    found = {
        path.name: imported_test_modules(path.read_text(), test_modules)
        for path in sorted(TESTS.glob("*.py"))
    }
    assert not any(found.values()), {name: modules for name, modules in found.items() if modules}
