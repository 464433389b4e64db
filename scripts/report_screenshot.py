#!/usr/bin/env python
"""README screenshot of report.html, made by the project from its own sample run — one command, no download.

Steps: ``scripts/make_samples.py`` (faces from photos that installed packages ship) → ``inference.py`` once per
output tree (default: the identity baseline and the geometric backend of ``configs/offline.yaml``, as the main job
``scripts/run_sample.sh`` runs them; neither needs a download) →
``evaluate.py --config configs/eval-offline.yaml --layout generic`` → headless Chromium opens
``report.html`` from ``file://``, sorts by gain (worst first) and saves the picture.

Usage::

    python scripts/report_screenshot.py                              # -> docs/img/report.png
    python scripts/report_screenshot.py --tree identity "--config configs/offline.yaml" \\
        --tree liveportrait "--frontalize liveportrait"          # needs the LivePortrait weights

Each ``--tree NAME ARGS`` adds one output tree (``inference.py ARGS --source_dir … -o WORK/frontal/NAME``); with
two or more, every row of the page shows the other trees' frontalized faces too.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "scripts") not in sys.path:
    sys.path.insert(0, str(REPO / "scripts"))

from headless_browser import start_chromium, wait_images, wait_ready  # noqa: E402

log = logging.getLogger("report_screenshot")
DEFAULT_TREES = (("identity", "--config configs/offline.yaml"),
                 ("mesh", "--config configs/offline.yaml --frontalize mesh"))


def _run(args: list[str], ok_codes: tuple[int, ...] = (0,)) -> None:
    log.info("$ %s", shlex.join(args))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}
    done = subprocess.run([sys.executable, *args], cwd=REPO, env=env, check=False)
    if done.returncode not in ok_codes:
        raise subprocess.CalledProcessError(done.returncode, done.args)


def sample_report(work: Path, trees: list[tuple[str, str]]) -> Path:
    """Run the sample pipeline into ``work``; returns the report folder."""
    data, report = work / "data", work / "report"
    for folder in (data, work / "frontal", report):
        shutil.rmtree(folder, ignore_errors=True)
    _run(["scripts/make_samples.py", str(data)])
    frontal_dirs = []
    for name, extra in trees:
        out = work / "frontal" / name
        _run(["inference.py", *shlex.split(extra), "--source_dir", str(data), "--list-file",
              str(data / "angled.txt"), "-o", str(out), "-q"], ok_codes=(0, 1))  # 1: some inputs failed (kept)
        frontal_dirs += ["--frontal-dir", str(out)]
    _run(["evaluate.py", "--config", "configs/eval-offline.yaml", "--layout", "generic", "--data", str(data),
          *frontal_dirs, "--cache-dir", str(work / "cache"), "--no-progress", "-q", "-o", str(report)])
    return report


def screenshot(report: Path, target: Path, width: int, height: int) -> None:
    """Open ``report/report.html`` headless, sort by gain (ascending: the faces that lost most first), save."""
    from selenium.webdriver.common.by import By

    driver = start_chromium(width, height)
    try:
        driver.get((report / "report.html").as_uri())
        wait_ready(driver)
        driver.find_element(By.CSS_SELECTOR, "th[data-sort='gain']").click()
        wait_images(driver)
        time.sleep(0.3)  # let the last decoded thumbnails paint
        target.parent.mkdir(parents=True, exist_ok=True)
        if not driver.save_screenshot(str(target)):
            raise RuntimeError(f"cannot save {target}")
    finally:
        driver.quit()


def main(argv: list[str] | None = None) -> int:
    """Sample run + screenshot."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "report_screenshot",
                        help="working folder (sample data, output trees, report)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "report.png", help="picture to write")
    parser.add_argument("--tree", nargs=2, action="append", metavar=("NAME", "ARGS"),
                        help="an output tree: its name and the inference.py arguments (repeatable)")
    parser.add_argument("--size", type=int, nargs=2, default=(1400, 860), metavar=("W", "H"), help="window size")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = sample_report(args.work, [tuple(t) for t in args.tree] if args.tree else list(DEFAULT_TREES))
    screenshot(report, args.out, *args.size)
    log.info("screenshot: %s (report: %s)", args.out, report / "report.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
