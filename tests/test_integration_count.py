"""conftest.py's count of Detectron2 integration tests, which CI relies on (.ci/run): every collected
item counts (parametrised cases one by one), skips are seen wherever they happen, and a module that
pytest skipped whole at import is named and fails a session that requires the integration tests.

Each check runs pytest in a subprocess, with IMAGESCORE_REQUIRE_INTEGRATION=1 as .ci/run sets it, on
a folder holding this suite's conftest.py and helpers.py beside small test modules.
"""

import os
import shutil
import subprocess
import sys

import pytest

from imagescore_det.utils.detectron2_import import detectron2_available

HERE = os.path.dirname(os.path.abspath(__file__))
ITEMS = """
import pytest

pytestmark = pytest.mark.detectron2


@pytest.mark.parametrize("case", [1, 2, 3])
def test_parametrised(case):
    assert case > 0


def test_skips_in_its_call():
    pytest.importorskip("imagescore_det_no_such_module")


@pytest.mark.detectron2
class TestInAClass:
    def test_method(self):
        pass
"""
PLAIN = """
def test_not_an_integration_test():
    pass
"""
SKIPPED_AT_IMPORT = """
import pytest

pytest.importorskip("imagescore_det_no_such_module")
pytestmark = pytest.mark.detectron2


def test_never_collected():
    pass
"""


def run_pytest(folder, modules):
    """pytest -q on ``folder`` as .ci/run runs it where Detectron2 imports: (exit status, count lines)."""
    for name in ("conftest.py", "helpers.py"):
        shutil.copy(os.path.join(HERE, name), folder / name)
    (folder / "pytest.ini").write_text("[pytest]\nmarkers =\n    detectron2: integration test\n")
    for name, text in modules.items():
        (folder / name).write_text(text)
    env = dict(os.environ, IMAGESCORE_REQUIRE_INTEGRATION="1")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)],
        capture_output=True,
        text=True,
        cwd=folder,
        env=env,
        timeout=300,
    )
    lines = [
        line
        for line in result.stdout.splitlines()
        if line.startswith(("Detectron2 integration tests:", "  skipped at import:"))
        or line.startswith("IMAGESCORE_REQUIRE_INTEGRATION")
    ]
    return result.returncode, lines


def test_the_count_is_of_items_and_sees_every_skip(tmp_path):
    code, lines = run_pytest(tmp_path, {"test_items.py": ITEMS, "test_plain.py": PLAIN})
    # Five integration items: three parametrised cases, one that skips in its call, one method.
    ran, skipped = (4, 1) if detectron2_available() else (0, 5)
    assert lines[0].startswith(
        "Detectron2 integration tests: %d ran, %d skipped, of 5 collected items; "
        "0 test module(s) skipped at import" % (ran, skipped)
    )
    # A session that requires the integration tests fails on any skipped item.
    reasons = ["%d integration item(s) skipped" % skipped] + (
        [] if ran else ["no integration item ran"]
    )
    assert code == pytest.ExitCode.TESTS_FAILED and lines[1:] == [
        "IMAGESCORE_REQUIRE_INTEGRATION=1: the integration tests must all run, but "
        + "; ".join(reasons)
    ]


def test_a_module_skipped_at_import_is_named_and_fails_a_required_session(tmp_path):
    modules = {"test_plain.py": PLAIN, "test_gone.py": SKIPPED_AT_IMPORT}
    code, lines = run_pytest(tmp_path, modules)
    assert lines[0].startswith(
        "Detectron2 integration tests: 0 ran, 0 skipped, of 0 collected items; "
        "1 test module(s) skipped at import"
    )
    assert (
        lines[1].startswith("  skipped at import: test_gone.py (") and "no_such_module" in lines[1]
    )
    assert code == pytest.ExitCode.TESTS_FAILED and lines[2:] == [
        "IMAGESCORE_REQUIRE_INTEGRATION=1: the integration tests must all run, but "
        "1 test module(s) skipped at import; no integration item ran"
    ]


@pytest.mark.detectron2  # without Detectron2 every inner item is skipped: this one is too
def test_a_required_session_passes_when_every_item_ran(tmp_path):
    everything_runs = ITEMS.replace('pytest.importorskip("imagescore_det_no_such_module")', "pass")
    code, lines = run_pytest(tmp_path, {"test_items.py": everything_runs})
    assert code == 0 and lines == [
        "Detectron2 integration tests: 5 ran, 0 skipped, of 5 collected items; "
        "0 test module(s) skipped at import"
    ]
