"""Skips Detectron2 integration tests where Detectron2 is missing, and counts them for CI; and the
fixtures that several test modules share (plain helpers are in helpers.py)."""

import ast
import collections

import pytest
from helpers import TINY_DATA

from imagescore_det.utils.detectron2_import import INSTALL_GUIDE, detectron2_available

SKIP_REASON = "Detectron2 is not installed (see %s)" % INSTALL_GUIDE
_outcomes = collections.Counter()


def pytest_collection_modifyitems(config, items):
    if detectron2_available():
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if "detectron2" in item.keywords:
            item.add_marker(skip)


def _count_test_functions(path) -> int:
    tree = ast.parse(open(path).read())
    return sum(
        isinstance(node, ast.FunctionDef) and node.name.startswith("test") for node in tree.body
    )


def pytest_collectreport(report):
    """A module that imports Detectron2 at the top is skipped whole (pytest.importorskip): count its tests."""
    if report.outcome == "skipped" and "detectron2" in str(report.longrepr):
        _outcomes["skipped"] += _count_test_functions(report.fspath)


def pytest_runtest_logreport(report):
    if "detectron2" not in report.keywords:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _outcomes["ran" if report.outcome != "skipped" else "skipped"] += 1


def pytest_terminal_summary(terminalreporter):
    line = "Detectron2 integration tests: %d ran, %d skipped" % (
        _outcomes["ran"],
        _outcomes["skipped"],
    )
    if not detectron2_available():
        line += " (%s)" % SKIP_REASON
    terminalreporter.write_line(line)


# ---------------------------------------------------------------- shared fixtures


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """The tiny synthetic VOC set (:data:`helpers.TINY_DATA`) under a temporary DETECTRON2_DATASETS;
    the default registration is restored after."""
    from imagescore_det.data.synthetic import generate_synthetic_voc
    from imagescore_det.data.voc import register_synthetic_voc, synthetic_root

    root = str(tmp_path_factory.mktemp("datasets"))
    generate_synthetic_voc(synthetic_root(root, TINY_DATA), **TINY_DATA)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DETECTRON2_DATASETS", root)
        yield root
    register_synthetic_voc(synthetic_root())


@pytest.fixture
def empty_data_root(tmp_path, monkeypatch):
    """An empty DETECTRON2_DATASETS (subprocesses inherit it): a tool generates the synthetic set there."""
    from imagescore_det.data.voc import register_synthetic_voc, synthetic_root

    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "datasets"))
    yield tmp_path / "datasets"
    register_synthetic_voc(synthetic_root())
