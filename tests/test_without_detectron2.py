"""The scoring core and classification mode work where Detectron2 is absent; its parts say how to get it.

Each check runs in a fresh interpreter in which ``import detectron2`` fails (``sys.modules`` entry set to
None, Python's own way to block an import), so it holds whether or not Detectron2 is installed here.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from imagescore_det.utils.detectron2_import import INSTALL_GUIDE

BLOCK = "import sys; sys.modules['detectron2'] = None\n"


def run_without_detectron2(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCK + code], capture_output=True, text=True, timeout=300
    )


def test_core_and_classification_import_and_score():
    result = run_without_detectron2(
        "import torch, imagescore_det\n"
        "from imagescore_det.scoring import ActivationRecorder, ReferenceBuilder, Reference\n"
        "import imagescore_det.classification\n"
        "acts = {'layer': torch.rand(4, 6)}\n"
        "print(imagescore_det.detectron2_available(), ReferenceBuilder().update(acts).finalize().score(acts).shape)\n"
        "assert not any(name.startswith('detectron2.') for name in sys.modules)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "torch.Size([4])"]


def test_pure_detection_and_study_parts_import_and_work():
    """Box ranking, the ScoredImage record and the study summary: no Detectron2 needed, none loaded."""
    result = run_without_detectron2(
        "from imagescore_det.structures import ScoredImage\n"
        "from imagescore_det.detection.ranking import box_ranking_values\n"
        "from imagescore_det.study.summary import summarize\n"
        "images = [ScoredImage('a', 'a.jpg', 1, 1, [[0, 0, 1, 1]], [0], [0.9], box_scores=[-2.0]),\n"
        "          ScoredImage('b', 'b.jpg', 1, 1, [], [], [])]\n"
        "print(box_ranking_values(images, 'score', 'min', empty_score=-9.0).tolist())\n"
        "rows = [{'arm': 'control', 'seed': 0, 'iteration': 9, 'ap50': 50.0, 'ap': 20.0},\n"
        "        {'arm': 'imagescore', 'seed': 0, 'iteration': 9, 'ap50': 52.0, 'ap': 21.0}]\n"
        "print(summarize(rows)[1]['delta_vs_control'])\n"
        "assert not any(name == 'detectron2' or name.startswith('detectron2.') for name in sys.modules if sys.modules[name])\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[-2.0,", "-9.0]", "2.0"]


@pytest.mark.parametrize(
    "module",
    [
        "imagescore_det.detection.ranking",
        "imagescore_det.structures",
        "imagescore_det.study.summary",
        "imagescore_det.evaluation.noise",
        "imagescore_det.data.nuclei",
    ],
)
def test_pure_module_imports_without_detectron2(module):
    result = run_without_detectron2(
        "import %s\n"
        "assert not any(name.startswith('detectron2') for name, m in sys.modules.items() if m is not None)\n"
        % module
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "module",
    [
        "imagescore_det.config",
        "imagescore_det.modeling",
        "imagescore_det.engine",
        "imagescore_det.data.voc",
    ],
)
def test_detectron2_parts_raise_one_import_error_with_the_guide(module):
    result = run_without_detectron2("import %s" % module)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("ImportError:") and INSTALL_GUIDE in last_line


TOOLS_DIR = Path(__file__).resolve().parent.parent / "tools"
TOOLS = sorted(path.name for path in TOOLS_DIR.glob("*.py"))


@pytest.mark.parametrize("tool", TOOLS)
def test_every_tool_help_works_without_detectron2(tool):
    """A new user's first command: --help exits 0. A tool that needs Detectron2 (it calls
    require_detectron2_or_help) says so and how to get it; any other prints its argparse usage."""
    path = TOOLS_DIR / tool
    result = run_without_detectron2(
        "import runpy; sys.argv = [%r, '--help']; runpy.run_path(%r, run_name='__main__')"
        % (str(path), str(path))
    )
    assert result.returncode == 0, result.stderr
    if "require_detectron2_or_help(" in path.read_text():
        assert "needs Detectron2" in result.stdout and "usage:" not in result.stdout
        assert "tools/setup_env.sh" in result.stdout and INSTALL_GUIDE in result.stdout
    else:
        assert (
            result.stdout.startswith("usage: %s" % tool) and "needs Detectron2" not in result.stdout
        )


def test_the_classification_tool_needs_no_detectron2():
    """The classification mode works without Detectron2, its tool included: the help check above
    expects its full usage, so both of its branches run."""
    assert "require_detectron2_or_help(" not in (TOOLS_DIR / "train_classifier.py").read_text()


def test_tools_that_need_detectron2_say_so_without_help():
    path = TOOLS_DIR / "train_net.py"
    result = run_without_detectron2(
        "import runpy; sys.argv = [%r]; runpy.run_path(%r, run_name='__main__')"
        % (str(path), str(path))
    )
    assert result.returncode != 0
    assert "ImportError" in result.stderr and "tools/setup_env.sh" in result.stderr
