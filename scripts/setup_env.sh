#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install frontalize with the given extras.
# Usage: bash scripts/setup_env.sh [EXTRAS]   (default extras: dev)
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
# insightface pulls opencv-python and rembg pulls opencv-python-headless; both install the same cv2 package
# folder, and whichever is removed or installed last can leave cv2 broken. Repair it so `import cv2` works.
if ! python -c "import cv2; cv2.imdecode" >/dev/null 2>&1; then
  version=$(python -m pip show opencv-python-headless 2>/dev/null | awk '/^Version:/{print $2}')
  python -m pip install -q --force-reinstall --no-deps "opencv-python-headless${version:+==$version}"
fi
python -c "import cv2, torch, frontalize; print('environment ok: frontalize', frontalize.__version__, 'torch', torch.__version__, 'cv2', cv2.__version__)"
