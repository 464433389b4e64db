"""Thumbnails (content addressing, reuse, one decode per image) and the report.html document (payload layout,
escaping, nothing from the network) without a browser; tests/browser drives the page itself."""

from __future__ import annotations

import json
import os
import re
import threading
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from frontalize.evaluation import thumbs as thumbs_module
from frontalize.evaluation.html_report import PageMeta, build_payload, markdown_to_html, render_page
from frontalize.evaluation.per_image import PER_IMAGE_COLUMNS
from frontalize.evaluation.thumbs import ThumbRequest, render_thumbnail, thumb_name, write_thumbnails


def _png(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def _quadrants(size: int = 200) -> np.ndarray:
    image = np.zeros((size, size, 3), np.uint8)
    half = size // 2
    image[:half, :half] = (255, 0, 0)
    image[:half, half:] = (0, 255, 0)
    image[half:, :half] = (0, 0, 255)
    image[half:, half:] = (255, 255, 0)
    return image


def test_render_thumbnail_cuts_the_face_square_and_pads_past_the_border() -> None:
    image = _quadrants()
    face = render_thumbnail(image, (110.0, 110.0, 150.0, 150.0), 32)  # box inside the yellow quadrant
    assert face.shape == (32, 32, 3)
    assert np.abs(face[16, 16].astype(int) - (255, 255, 0)).max() < 10
    corner = render_thumbnail(image, (0.0, 0.0, 40.0, 40.0), 32)  # square reaches past the top-left border
    assert tuple(corner[0, 0]) == (236, 236, 236) and np.abs(corner[20, 20].astype(int) - (255, 0, 0)).max() < 10
    whole = render_thumbnail(image[:, :100], None, 50)  # no face: the whole image, aspect kept
    assert whole.shape == (50, 25, 3)


def test_thumbnails_are_content_addressed_reused_and_pruned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _png(tmp_path / "src" / "a.png", _quadrants())
    copy = _png(tmp_path / "src" / "copy_of_a.png", _quadrants())
    other = _png(tmp_path / "src" / "b.png", _quadrants()[::-1].copy())
    broken = tmp_path / "src" / "broken.png"
    broken.write_bytes(b"not an image")
    decoded: Counter[str] = Counter()
    lock = threading.Lock()
    real_load = thumbs_module.load_image

    def counting_load(path: str, **kwargs: object):  # type: ignore[no-untyped-def]
        with lock:
            decoded[Path(path).name] += 1
        return real_load(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(thumbs_module, "load_image", counting_load)
    requests = {"a": ThumbRequest(str(first), "hash-a", (20.0, 20.0, 80.0, 80.0)),
                "copy": ThumbRequest(str(copy), "hash-a", (20.0, 20.0, 80.0, 80.0)),  # same content and box
                "b": ThumbRequest(str(other), "hash-b", None), "broken": ThumbRequest(str(broken), "hash-x", None)}
    report = tmp_path / "report"
    names, stats = write_thumbnails(requests, report, size=48, workers=3)
    assert names["a"] == names["copy"] == thumb_name(requests["a"], 48) and "broken" not in names
    assert (stats.written, stats.reused, stats.failed) == (2, 0, 1)
    assert sum(decoded.values()) == 3  # a (or its copy) once, b once, broken once
    assert cv2.imread(str(report / names["a"])).shape == (48, 48, 3)
    assert re.fullmatch(r"thumbs/[0-9a-f]{2}/[0-9a-f]{24}\.jpg", names["b"])
    mtime = (report / names["a"]).stat().st_mtime_ns
    decoded.clear()
    again, stats = write_thumbnails({"a": requests["a"], "b": requests["b"]}, report, size=48)
    assert again == {"a": names["a"], "b": names["b"]} and (stats.written, stats.reused) == (0, 2)
    assert not decoded and (report / names["a"]).stat().st_mtime_ns == mtime
    bigger, stats = write_thumbnails({"a": requests["a"]}, report, size=64)  # new size: new name, old ones pruned
    assert bigger["a"] != names["a"] and stats.written == 1 and stats.removed == 2
    assert sorted(p.relative_to(report).as_posix() for p in report.glob("thumbs/*/*.jpg")) == [bigger["a"]]
    moved_box = ThumbRequest(str(first), "hash-a", (21.0, 20.0, 80.0, 80.0))
    same_bytes_elsewhere = ThumbRequest("elsewhere.png", "hash-a", (20.0, 20.0, 80.0, 80.0))
    assert thumb_name(moved_box, 64) != bigger["a"] and thumb_name(same_bytes_elsewhere, 64) == bigger["a"]


def _row(arm: str, rel: str, subject: str, gain: float | None, **extra: object) -> dict:
    row: dict = dict.fromkeys(PER_IMAGE_COLUMNS)
    row.update(arm=arm, combination="c1", rel=rel, subject=subject, gain=gain, pair_status="paired",
               angle_path=f"/data/{rel}", frontal_path=f"/out/{arm}/{rel}", gt_path=f"/data/gt/{subject}.png")
    row.update(extra)
    return row


def _decode(payload: dict, name: str, i: int) -> object:
    column = payload["rows"][name]
    if isinstance(column, dict):
        code = column["codes"][i]
        return None if code < 0 else column["values"][code]
    return column[i]


def test_payload_round_trips_the_rows(tmp_path: Path) -> None:
    rows = [_row("t1", "s/a.png", "s", 0.123456, yaw=-31.25, guard_fallback=True),
            _row("t2", "s/a.png", "s", None, pair_status="angle_only", frontal_path=None, guard_fallback=False),
            _row("t1", "s/b png#1.png", "s", -0.5, gt_path=None)]
    thumbs = {"/data/s/a.png": "thumbs/aa/x.jpg", "/out/t1/s/a.png": "thumbs/bb/y.jpg"}
    payload = build_payload(rows, thumbs, tmp_path / "report", PageMeta("T", ["t1", "t2"], ["c1"], ["[0, 15)"], []))
    assert payload["rows"]["n"] == 3 and payload["trees"] == ["t1", "t2"]
    assert _decode(payload, "gain", 0) == 0.123456 and _decode(payload, "gain", 1) is None
    assert _decode(payload, "yaw", 0) == -31.25 and _decode(payload, "arm", 2) == "t1"
    assert [_decode(payload, "guard_fallback", i) for i in range(3)] == ["true", "false", None]
    assert _decode(payload, "pair_status", 1) == "angle_only" and not any(c in payload["rows"] for c in
                                                                          ("angle_path", "frontal_path", "gt_path"))
    images = payload["images"]
    a, f, g = (payload["rows"][k] for k in "afg")
    assert images["thumb"][a[0]] == "thumbs/aa/x.jpg" and images["thumb"][f[0]] == "thumbs/bb/y.jpg"
    assert a[0] == a[1] and f[1] == -1 and g[2] == -1 and images["thumb"][a[2]] is None
    expected = os.path.relpath("/data/s/b png#1.png", tmp_path / "report").replace(" ", "%20").replace("#", "%23")
    assert images["src"][a[2]] == expected and expected.startswith("../")  # relative to the report, URL-quoted
    rel_code = payload["rows"]["rel"]["codes"][0]
    assert payload["frontal_by_rel"][rel_code] == [f[0], -1]  # tree t2 has no output for s/a.png


def test_page_escapes_data_and_markdown_and_loads_nothing_remote(tmp_path: Path) -> None:
    evil = "</script><script>alert(1)</script>"
    rows = [_row("t1", "s/a.png", evil, 0.1)]
    payload = build_payload(rows, {}, tmp_path, PageMeta("<b>title</b>", ["t1"], ["c1"], [], []))
    html = render_page(payload, markdown_to_html(f"# Report\n\n- subject `{evil}` and <img src=x onerror=alert(2)>\n\n"
                                                 "| a | b |\n|---|---|\n| 1 | 2 |\n\n![fig](figures/f.png)\n"))
    assert html.count("<script") == 2 and "alert(1)</script>" not in html and "<img src=x" not in html
    assert "<table>" in html and '<img alt="fig" src="figures/f.png"' in html and "<title>&lt;b>title" in html
    data = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', html, re.S)
    assert data is not None and json.loads(data.group(1))["rows"]["subject"]["values"] == [evil]
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # nothing from the network
    assert "default-src 'none'" in html  # and the Content-Security-Policy forbids it anyway
