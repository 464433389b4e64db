"""report.html of a small real evaluation, opened from file:// in headless Chromium: rows, sorting, filtering,
the enlarged view, a copied report folder, nothing loaded from the network, and a screenshot that is not blank."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from headless_browser import wait_images, wait_ready
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

pytestmark = pytest.mark.slow
THUMB_PX = 96


def _open(browser: Any, report: Path, fragment: str = "") -> None:
    browser.get((report / "report.html").as_uri() + fragment)
    wait_ready(browser)


def _csv(report: Path) -> list[dict[str, str]]:
    with (report / "per_image.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _shown(browser: Any) -> list[int]:
    """Row indices (per_image.csv order) of the rendered rows, top to bottom."""
    return [int(tr.get_attribute("data-row")) for tr in browser.find_elements(By.CSS_SELECTOR, "#rows-body tr")]


def _gain_order(rows: list[dict[str, str]], direction: int) -> list[int]:
    def key(i: int) -> tuple[bool, float, int]:
        gain = rows[i]["gain"]
        return gain == "", 0.0 if gain == "" else direction * float(gain), i

    return sorted(range(len(rows)), key=key)


def _select_option(browser: Any, select_id: str, text_prefix: str) -> None:
    select = Select(browser.find_element(By.ID, select_id))
    option = next(o for o in select.options if o.text.startswith(text_prefix))
    select.select_by_value(option.get_attribute("value"))


def test_rows_thumbnails_and_pages(browser: Any, sample_report: Path) -> None:
    rows = _csv(sample_report)
    assert len(rows) == 2 * 15  # two output trees × one combination × 15 angled images
    _open(browser, sample_report)
    assert _shown(browser) == list(range(len(rows)))  # one <tr data-row> per row, in per_image.csv order
    assert browser.find_element(By.ID, "summary").text.startswith(f"{len(rows)} of {len(rows)} rows")
    first = browser.find_element(By.CSS_SELECTOR, "#rows-body tr").text
    assert rows[0]["rel"] in first and rows[0]["arm"] in first
    wait_images(browser)
    thumbs = browser.find_elements(By.CSS_SELECTOR, "#rows-body tr:first-child img")
    assert len(thumbs) == 4  # angled, frontalized, the other tree's frontalized, GT
    for image in thumbs:
        assert "/thumbs/" in image.get_attribute("src") and image.get_property("naturalWidth") == THUMB_PX
    _select_option(browser, "page-size", "25")
    assert _shown(browser) == list(range(25))
    browser.find_element(By.ID, "page-next").click()
    assert _shown(browser) == list(range(25, len(rows)))
    assert "rows 26–30 of 30" in browser.find_element(By.ID, "page-info").text
    _select_option(browser, "page-size", "100")


def test_sort_by_gain(browser: Any, sample_report: Path) -> None:
    rows = _csv(sample_report)
    _open(browser, sample_report)
    header = browser.find_element(By.CSS_SELECTOR, "th[data-sort='gain']")
    header.click()
    assert _shown(browser) == _gain_order(rows, +1)
    assert browser.find_element(By.CSS_SELECTOR, "th[data-sort='gain']").get_attribute("aria-sort") == "ascending"
    cells = [tr.find_elements(By.TAG_NAME, "td")[-2].text for tr in browser.find_elements(By.CSS_SELECTOR,
                                                                                          "#rows-body tr")]
    known = [float(c) for c in cells if c != "–"]
    assert known == sorted(known) and cells[len(known):] == ["–"] * (len(cells) - len(known))  # missing last
    browser.find_element(By.CSS_SELECTOR, "th[data-sort='gain']").click()
    assert _shown(browser) == _gain_order(rows, -1)
    _select_option(browser, "sort-key", "|yaw|")  # the direction stays descending
    yaws = [abs(float(rows[i]["yaw"])) if rows[i]["yaw"] else None for i in _shown(browser)]
    known = [y for y in yaws if y is not None]
    assert known == sorted(known, reverse=True) and yaws[len(known):] == [None] * (len(yaws) - len(known))


def test_filter_one_subject_and_a_status(browser: Any, sample_report: Path) -> None:
    rows = _csv(sample_report)
    _open(browser, sample_report)
    _select_option(browser, "filter-subject", "p3 ")
    assert _shown(browser) == [i for i, r in enumerate(rows) if r["subject"] == "p3"] and len(_shown(browser)) == 4
    browser.find_element(By.ID, "reset").click()
    _select_option(browser, "filter-status", "no face in frontal")
    expected = [i for i, r in enumerate(rows) if r["frontal_detection"] == "no_face"]
    assert expected and _shown(browser) == expected
    _select_option(browser, "filter-tree", "copy")
    assert _shown(browser) == [i for i in expected if rows[i]["arm"] == "copy"]
    browser.find_element(By.ID, "reset").click()
    assert len(_shown(browser)) == len(rows)


def test_filter_synthetic_images_and_their_badge(browser: Any, sample_report: Path) -> None:
    rows = _csv(sample_report)
    _open(browser, sample_report)
    _select_option(browser, "filter-status", "synthetic image")
    expected = [i for i, r in enumerate(rows) if r["synthetic"] == "true"]
    assert len(expected) == 4 and _shown(browser) == expected  # 2 images × 2 trees
    assert all(rows[i]["rel"] in ("p1/a.jpg", "p4/a.jpg") and rows[i]["pose_source"] == "rendered" for i in expected)
    for tr in browser.find_elements(By.CSS_SELECTOR, "#rows-body tr"):
        assert "synthetic" in tr.text
    browser.find_element(By.ID, "reset").click()
    plain = browser.find_element(By.CSS_SELECTOR, "#rows-body tr[data-row='0']").text
    assert rows[0]["synthetic"] == "false" and "synthetic" not in plain


def test_open_one_row(browser: Any, sample_report: Path) -> None:
    rows = _csv(sample_report)
    _open(browser, sample_report)
    browser.find_elements(By.CSS_SELECTOR, "#rows-body tr")[1].click()
    viewer = browser.find_element(By.ID, "viewer")
    assert viewer.is_displayed() and rows[1]["rel"] in browser.find_element(By.ID, "viewer-title").text
    images = browser.find_elements(By.CSS_SELECTOR, "#viewer-images img")
    assert len(images) == 3
    wanted = [Path(rows[1][k]).as_uri() for k in ("angle_path", "frontal_path", "gt_path")]
    assert [image.get_property("src") for image in images] == wanted  # the originals, through relative paths
    browser.execute_script("return Promise.all(Array.from(arguments[0]).map(i => i.decode().catch(() => 0)))",
                           images)
    assert all(image.get_property("naturalWidth") > THUMB_PX for image in images)
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)
    assert rows[2]["rel"] in browser.find_element(By.ID, "viewer-title").text
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    assert not viewer.is_displayed()


def _requested_urls(browser: Any) -> list[str]:
    """URLs the page requested since the last call (Chrome DevTools Network events of the performance log)."""
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_copied_report_folder_report_tab_and_screenshot(browser: Any, sample_report: Path, tmp_path: Path) -> None:
    moved = tmp_path / "moved" / "REPORT"
    shutil.copytree(sample_report, moved)
    _requested_urls(browser)
    _open(browser, moved)
    wait_images(browser)
    assert all(i.get_property("naturalWidth") == THUMB_PX
               for i in browser.find_elements(By.CSS_SELECTOR, "#rows-body tr:first-child img"))
    browser.find_element(By.CSS_SELECTOR, "#rows-body tr").click()
    browser.execute_async_script(  # originals are out of reach from the copy: each image falls back to its thumbnail
        "const done = arguments[arguments.length - 1];"
        "const wait = () => Array.from(document.querySelectorAll('#viewer-images img'))"
        "  .every(i => i.complete && i.naturalWidth > 0) ? done() : setTimeout(wait, 20); wait();")
    images = browser.find_elements(By.CSS_SELECTOR, "#viewer-images img")
    assert all("/thumbs/" in i.get_property("src") and i.get_property("naturalWidth") == THUMB_PX for i in images)
    browser.find_element(By.ID, "viewer-close").click()
    browser.find_element(By.CSS_SELECTOR, "a[data-tab='report']").click()
    report_tab = browser.find_element(By.ID, "tab-report")
    assert report_tab.is_displayed() and "Table 1" in report_tab.text and "net gain" in report_tab.text
    figures = report_tab.find_elements(By.CSS_SELECTOR, "img")
    assert figures and all(f.get_property("naturalWidth") > 100 for f in figures)
    assert report_tab.find_elements(By.CSS_SELECTOR, "table")
    urls = _requested_urls(browser)
    assert any(u.endswith(".png") for u in urls) and any("/thumbs/" in u for u in urls)
    assert all(u.startswith(("file://", "data:")) for u in urls), urls  # nothing from the network
    assert not [e for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    browser.find_element(By.CSS_SELECTOR, "a[data-tab='images']").click()
    browser.find_element(By.CSS_SELECTOR, "th[data-sort='gain']").click()
    wait_images(browser)
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float32)
    assert pixels.shape[0] >= 600 and pixels.shape[1] >= 1000
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3)[::7], axis=0)) > 500  # faces, not a blank page
