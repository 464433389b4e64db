#!/usr/bin/env bash
# Offline test suite: sets up .venv (package installation is the only network use), then runs pytest.
# Usage: bash scripts/test.sh [PYTEST ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh dev
bash scripts/install_browser.sh  # headless chromium + chromedriver from apt for tests/browser (no-op when present)
# shellcheck disable=SC1091
. .venv/bin/activate
export PYTHONDONTWRITEBYTECODE=1
python -m pytest -q "$@"
