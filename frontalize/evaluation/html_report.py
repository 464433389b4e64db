"""``REPORT/report.html``: one static page with everything ``report.md`` shows plus a per-image browser.

The page needs no server and loads nothing from the network (a Content-Security-Policy forbids it): CSS, script
and data are inline, thumbnails and figures are files under the report folder reached by relative paths, so the
page works from ``file://`` and after the REPORT folder is copied elsewhere. The per-image rows are embedded as
one JSON document (``<script type="application/json">``, parsed with ``JSON.parse``, which browsers parse faster
than the same data as a script literal; Chromium would refuse a ``fetch()`` of a local JSON file anyway).

Data layout (columnar, so 32,000 rows stay a few MB): every string column of :data:`~.per_image.PER_IMAGE_COLUMNS`
is dictionary-encoded (``{"values": [...], "codes": [...]}``, code −1 = missing), every number column is a plain
array (``null`` = missing); images are listed once (``images.thumb`` / ``images.src`` / ``images.name``) and rows
point at them (``a`` angled, ``f`` frontalized, ``g`` GT; −1 = none). ``frontal_by_rel[rel code][tree]`` gives every
output tree's frontalized image of an angled image, for the "other trees" thumbnails.

The report part is ``report.md`` rendered with Python-Markdown (tables extension) with raw HTML switched off, so
a subject name or path can never inject markup. The enlarged view of a row shows the original images through
relative paths (full resolution while the dataset is where it was) and falls back to the thumbnail when the
original cannot be loaded (a copied report folder): thumbnails stay small, yet nothing breaks.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from frontalize.evaluation import stats
from frontalize.evaluation.per_image import PER_IMAGE_COLUMNS, PerImageTables, write_per_image
from frontalize.evaluation.results import EvaluationResults
from frontalize.evaluation.thumbs import ThumbRequest, write_thumbnails
from frontalize.io.atomic import atomic_write_text

log = logging.getLogger(__name__)

__all__ = ["NUMBER_COLUMNS", "PageMeta", "build_payload", "markdown_to_html", "render_page", "write_html_report",
           "write_per_image_outputs"]

NUMBER_COLUMNS: dict[str, int] = {
    "pitch": 2, "yaw": 2, "roll": 2, "sim_angle_gt": 6, "sim_frontal_gt": 6, "gain": 6,
    "residual_pitch": 2, "residual_yaw": 2, "residual_roll": 2,
}
"""Numeric columns of the page and their decimals (those of the CSV: the page sorts exactly as the CSV would)."""

PATH_COLUMNS = ("angle_path", "frontal_path", "gt_path")
_IMAGE_KEYS = {"angle_path": "a", "frontal_path": "f", "gt_path": "g"}
_MARKER = re.compile(r"<!--@([A-Z]+)@-->")


@dataclass(frozen=True)
class PageMeta:
    """What the page lists besides the rows: tree and combination order, pose-bin labels, paging."""

    title: str
    trees: Sequence[str]
    combinations: Sequence[str]
    yaw_bins: Sequence[str]
    pitch_bins: Sequence[str]
    page_size: int = 100


def _encode(values: Sequence[Any]) -> dict[str, list[Any]]:
    """Dictionary encoding: distinct non-missing values in first-seen order and one code per row (−1 = None)."""
    index: dict[Any, int] = {}
    codes = []
    for value in values:
        if value is None:
            codes.append(-1)
            continue
        key = str(value).lower() if isinstance(value, bool) else value
        codes.append(index.setdefault(key, len(index)))
    return {"values": list(index), "codes": codes}


def _source_url(path: str, out_dir: Path) -> str | None:
    """URL-quoted path of ``path`` relative to the report folder (None when there is none, e.g. another drive)."""
    try:
        rel = os.path.relpath(path, out_dir)
    except ValueError:
        return None
    return quote(Path(rel).as_posix())


def _images(rows: Sequence[Mapping[str, Any]], thumbs: Mapping[str, str], out_dir: Path
            ) -> tuple[dict[str, list[Any]], dict[str, list[int]]]:
    """Unique images of the rows and, per row, the index of its angled / frontalized / GT image (−1 = none)."""
    index: dict[str, int] = {}
    refs: dict[str, list[int]] = {key: [] for key in _IMAGE_KEYS.values()}
    for row in rows:
        for column, key in _IMAGE_KEYS.items():
            path = row.get(column)
            refs[key].append(-1 if path is None else index.setdefault(path, len(index)))
    paths = list(index)
    images: dict[str, list[Any]] = {
        "thumb": [thumbs.get(p) for p in paths],
        "src": [_source_url(p, out_dir) for p in paths],
        "name": ["/".join(Path(p).parts[-2:]) for p in paths],
    }
    return images, refs


def build_payload(rows: Sequence[Mapping[str, Any]], thumbs: Mapping[str, str], out_dir: str | Path,
                  meta: PageMeta) -> dict[str, Any]:
    """The page's data document (see the module docstring for its layout).

    Args:
        rows: per-image rows (:func:`~.per_image.build_rows`).
        thumbs: image path -> thumbnail path relative to the report folder (images without one are left out).
        out_dir: report folder (original images are linked relative to it).
        meta: trees, combinations, bin labels, paging.
    """
    out = Path(out_dir)
    images, refs = _images(rows, thumbs, out)
    columns: dict[str, Any] = {"n": len(rows), **refs}
    for name in PER_IMAGE_COLUMNS:
        if name in PATH_COLUMNS:
            continue
        values = [row.get(name) for row in rows]
        if name in NUMBER_COLUMNS:
            digits = NUMBER_COLUMNS[name]
            columns[name] = [None if v is None else round(float(v), digits) for v in values]
        else:
            columns[name] = _encode(values)
    trees = list(meta.trees)
    rel_codes, tree_names = columns["rel"]["codes"], columns["arm"]["values"]
    frontal_by_rel = [[-1] * len(trees) for _ in columns["rel"]["values"]]
    for i, (rel_code, tree_code) in enumerate(zip(rel_codes, columns["arm"]["codes"])):
        frontal_by_rel[rel_code][trees.index(tree_names[tree_code])] = refs["f"][i]
    return {
        "version": 1, "title": meta.title, "trees": trees, "combinations": list(meta.combinations),
        "yaw_bins": list(meta.yaw_bins), "pitch_bins": list(meta.pitch_bins), "page_size": meta.page_size,
        "numeric": list(NUMBER_COLUMNS), "digits": NUMBER_COLUMNS, "images": images, "rows": columns,
        "frontal_by_rel": frontal_by_rel,
    }


def markdown_to_html(text: str) -> str:
    """HTML of Markdown ``text`` (tables extension); raw HTML in the text is shown as text, never interpreted."""
    import markdown  # local: only report writing needs it

    converter = markdown.Markdown(extensions=["tables"], output_format="html")
    converter.preprocessors.deregister("html_block")
    converter.inlinePatterns.deregister("html")
    return converter.convert(text)


def _asset(name: str) -> str:
    return resources.files("frontalize.evaluation").joinpath("assets", name).read_text(encoding="utf-8")


def _json_for_script(payload: Mapping[str, Any]) -> str:
    """JSON that cannot end its ``<script>`` element early (``<`` escaped; still valid JSON)."""
    text = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render_page(payload: Mapping[str, Any], report_html: str) -> str:
    """The complete ``report.html`` text: template + inline CSS, script, report body and data."""
    parts = {"CSS": _asset("report.css"), "JS": _asset("report.js"), "REPORT": report_html,
             "DATA": _json_for_script(payload), "TITLE": str(payload.get("title", "Report")).replace("<", "&lt;")}
    return _MARKER.sub(lambda match: parts[match.group(1)], _asset("report.html"))


def _thumb_requests(results: EvaluationResults, rows: Sequence[Mapping[str, Any]]) -> dict[str, ThumbRequest]:
    """One request per image of the rows: its content hash and its face box under the first detector."""
    store = results.store
    detector = results.combinations[0].combination.detector if results.combinations else ""
    requests: dict[str, ThumbRequest] = {}
    for row in rows:
        for column in PATH_COLUMNS:
            path = row.get(column)
            if path is None or path in requests:
                continue
            content = store.image_of.get(os.path.abspath(path))
            if content is None or content.startswith("unreadable:"):
                continue
            detection = store.detection(path, detector)
            box = None
            if detection is not None and detection.found and detection.box is not None:
                box = tuple(float(v) for v in detection.box)
            requests[path] = ThumbRequest(path, content, box)  # type: ignore[arg-type]
    return requests


def _meta(results: EvaluationResults) -> PageMeta:
    cfg = results.config
    yaw_edges = stats.pose_bin_edges(cfg.stats.yaw_bin_width, cfg.stats.yaw_bin_limit, signed=False)
    pitch_edges = stats.pose_bin_edges(cfg.stats.pitch_bin_width, cfg.stats.pitch_bin_limit, signed=True)
    return PageMeta(title=f"Identity-preservation report — {results.dataset.root.name or results.dataset.root}",
                    trees=[arm.name for arm in results.arms], combinations=[c.label for c in results.combinations],
                    yaw_bins=stats.bin_labels(yaw_edges), pitch_bins=stats.bin_labels(pitch_edges),
                    page_size=cfg.report.page_size)


def write_html_report(results: EvaluationResults, out_dir: str | Path, tables: PerImageTables) -> Path:
    """Write the thumbnails and ``report.html`` (reads the ``report.md`` written before)."""
    out = Path(out_dir)
    cfg = results.config.report
    thumbs, _ = write_thumbnails(_thumb_requests(results, tables.rows), out, size=cfg.thumb_px,
                                 quality=cfg.thumb_quality, workers=cfg.workers,
                                 max_pixels=results.config.run.max_pixels)
    markdown_path = out / "report.md"
    report_html = markdown_to_html(markdown_path.read_text(encoding="utf-8")) if markdown_path.is_file() else ""
    page = out / "report.html"
    atomic_write_text(page, render_page(build_payload(tables.rows, thumbs, out, _meta(results)), report_html))
    log.info("report page written to %s (%d rows)", page, len(tables.rows))
    return page


def write_per_image_outputs(results: EvaluationResults, out_dir: str | Path) -> PerImageTables:
    """Per-image CSV/JSONL tables, then (``report.html: true``) thumbnails and ``report.html``."""
    tables = write_per_image(results, out_dir)
    if results.config.report.html:
        write_html_report(results, out_dir, tables)
    return tables
