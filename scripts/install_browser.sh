#!/usr/bin/env bash
# Headless browser for the report tests (tests/browser/): Debian's chromium + chromium-driver, installed with apt
# when missing. Nothing is downloaded from anywhere but the distribution's package archive (Selenium Manager is
# never used: the tests pass /usr/bin/chromium and /usr/bin/chromedriver explicitly).
# Usage: bash scripts/install_browser.sh        (root, or sudo without a password; no-op when both are present)
# Without apt or root it prints why and exits 0: the browser tests then skip, or fail under CI=true.
set -euo pipefail
have() { command -v "$1" >/dev/null 2>&1; }
if have chromium && have chromedriver; then
    exit 0
fi
if ! have apt-get; then
    echo "install_browser: apt-get not found; install chromium and chromium-driver by hand" >&2
    exit 0
fi
run_root=()
if [ "$(id -u)" -ne 0 ]; then
    if have sudo && sudo -n true 2>/dev/null; then
        run_root=(sudo -n)
    else
        echo "install_browser: not root; run: sudo apt-get install chromium chromium-driver" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
echo "install_browser: installing chromium + chromium-driver (apt)" >&2
if ! { "${run_root[@]}" apt-get update -qq \
       && "${run_root[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; }; then
    echo "install_browser: apt-get failed; the browser tests will skip (or fail under CI=true)" >&2
    exit 0
fi
chromium --version >&2
