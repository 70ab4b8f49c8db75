#!/usr/bin/env bash
# Set up .venv for imagescore_det in one step: PyTorch, this project (editable, with its test extras)
# and Detectron2, which is on no package registry. Re-running it is cheap: what is there is kept.
#
# Detectron2 comes from, in this order:
#   1. $DETECTRON2_WHEEL, a wheel file built for this Python and torch==2.14.1 (offline machines);
#   2. a wheel matching this Python in ../shared/wheels/ (this project's machines and CI);
#   3. its official source at the pinned commit below, built against the installed torch with
#      --no-build-isolation (needs internet and a C++ compiler; a few minutes on 2 cores);
#      DETECTRON2_SOURCE=none skips this step (CI does, to test the machine without Detectron2).
# CPU-only machines: TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu installs PyTorch's CPU build
# (about 1 GB) instead of the default CUDA build (about 5.8 GB with its libraries).
set -euo pipefail
cd "$(dirname "$0")/.."

DETECTRON2_COMMIT=02b5c4e295e990042a714712c21dc79b731e8833
DETECTRON2_GIT="git+https://github.com/facebookresearch/detectron2.git@${DETECTRON2_COMMIT}"
VENV=${VENV:-.venv}

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
py="$VENV/bin/python"
"$py" -m pip install --quiet --upgrade pip
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  "$py" -m pip install --quiet --index-url "$TORCH_INDEX_URL" torch==2.14.1 torchvision==0.29.1
fi
"$py" -m pip install --quiet -e ".[test]"

if "$py" -c "import detectron2" 2>/dev/null; then
  echo "Detectron2: already installed in $VENV"
  exit 0
fi
tag=$("$py" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
shared_wheel=$(ls ../shared/wheels/detectron2-*-"$tag"-"$tag"-linux_"$(uname -m)".whl 2>/dev/null | head -n 1 || true)
if [ -n "${DETECTRON2_WHEEL:-}" ]; then
  echo "Detectron2: installing the wheel \$DETECTRON2_WHEEL=$DETECTRON2_WHEEL"
  "$py" -m pip install --quiet "$DETECTRON2_WHEEL"
elif [ -n "$shared_wheel" ]; then
  echo "Detectron2: installing the wheel $shared_wheel"
  "$py" -m pip install --quiet "$shared_wheel"
elif [ "${DETECTRON2_SOURCE:-git}" = "none" ]; then
  echo "Detectron2: not installed (no wheel, DETECTRON2_SOURCE=none); its integration tests will be skipped"
else
  echo "Detectron2: building commit $DETECTRON2_COMMIT from its official source (a few minutes)"
  "$py" -m pip install --quiet --no-build-isolation "$DETECTRON2_GIT"
fi
