"""Skips Detectron2 integration tests where Detectron2 is missing, and counts them for CI; and the
fixtures that several test modules share (plain helpers are in helpers.py).

The count is of collected items (each parametrised case is one), by the ``detectron2`` marker, plus
the test modules that pytest skipped whole at import (``pytest.importorskip`` at their top): their
items are never collected, so they are named instead. With ``IMAGESCORE_REQUIRE_INTEGRATION=1``
(.ci/run sets it where Detectron2 imports) the session fails unless every integration item ran and
no module was skipped at import.
"""

import os

import pytest
from helpers import TINY_DATA

from imagescore_det.utils.detectron2_import import INSTALL_GUIDE, detectron2_available

SKIP_REASON = "Detectron2 is not installed (see %s)" % INSTALL_GUIDE
REQUIRE_VARIABLE = "IMAGESCORE_REQUIRE_INTEGRATION"
_integration_items = set()  # node ids of the collected items marked detectron2
_ran, _skipped = set(), set()
_modules_skipped = []  # test modules skipped whole at import: (node id, reason)


def pytest_collection_modifyitems(config, items):
    if detectron2_available():
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if item.get_closest_marker("detectron2"):
            item.add_marker(skip)


def pytest_collection_finish(session):
    """After deselection (-k, -m): the integration items this session will run."""
    _integration_items.update(
        item.nodeid for item in session.items if item.get_closest_marker("detectron2")
    )


def pytest_collectreport(report):
    if report.outcome == "skipped":
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _modules_skipped.append((report.nodeid, reason))


def pytest_runtest_logreport(report):
    """One verdict per item: skipped at setup or in the call, or ran (passed or failed)."""
    if report.nodeid not in _integration_items:
        return
    if report.outcome == "skipped" and report.when in ("setup", "call"):
        _skipped.add(report.nodeid)
    elif report.when == "call" or (report.when == "setup" and report.outcome == "failed"):
        _ran.add(report.nodeid)


def _shortfall():
    """Why the integration tests did not all run, or None."""
    reasons = []
    if _skipped:
        reasons.append("%d integration item(s) skipped" % len(_skipped))
    if _modules_skipped:
        reasons.append("%d test module(s) skipped at import" % len(_modules_skipped))
    if not _ran:
        reasons.append("no integration item ran")
    return "; ".join(reasons) or None


def pytest_sessionfinish(session):
    if os.environ.get(REQUIRE_VARIABLE) == "1" and _shortfall() and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    line = "Detectron2 integration tests: %d ran, %d skipped, of %d collected items; " % (
        len(_ran),
        len(_skipped),
        len(_integration_items),
    )
    line += "%d test module(s) skipped at import" % len(_modules_skipped)
    if not detectron2_available():
        line += " (%s)" % SKIP_REASON
    terminalreporter.write_line(line)
    for nodeid, reason in _modules_skipped:
        terminalreporter.write_line("  skipped at import: %s (%s)" % (nodeid, reason))
    if os.environ.get(REQUIRE_VARIABLE) == "1" and _shortfall():
        terminalreporter.write_line(
            "%s=1: the integration tests must all run, but %s" % (REQUIRE_VARIABLE, _shortfall())
        )


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
