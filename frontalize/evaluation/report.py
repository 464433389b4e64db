"""Report writer: ``report.md`` (tables + figures + definitions), ``summary.json``, CSV/JSON tables, PNG figures.

Extension point: a :class:`ReportSection` (``name`` + ``build(results, out_dir) -> SectionOutput | None``)
passed to :func:`write_report` adds its own Markdown, tables, figures and a ``sections.<name>`` entry in
``summary.json`` — e.g. the identity guard's guarded-vs-unguarded comparison and trade-off curves. Sections see
the full :class:`~.results.EvaluationResults` (every arm's paired scores, embeddings and manifests' roots).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from frontalize import __version__
from frontalize.datasets.base import NOTES_FILE, POSE_CONVENTION, Dataset
from frontalize.evaluation.analysis import SIMILARITY_DEFINITIONS
from frontalize.evaluation.figure_plan import FigureRef, make_figures
from frontalize.evaluation.pose_error import unfit_count
from frontalize.evaluation.results import EvaluationResults
from frontalize.evaluation.tables import Table, build_tables
from frontalize.evaluation.trees import MATCHING_RULE, FrontalArm
from frontalize.io.atomic import atomic_write_text

log = logging.getLogger(__name__)

__all__ = ["ReportSection", "SectionImages", "SectionOutput", "summary_dict", "write_report"]

NET_GAIN_DEFINITION = ("net gain = mean over images of cos(Frontal, GT) − cos(Angle, GT), on images whose angled "
                       "version, frontalized version and GT all have a detected face")


@dataclass
class SectionOutput:
    """What an extra report section contributes."""

    title: str
    markdown: str
    tables: list[Table] = field(default_factory=list)
    figures: list[FigureRef] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


class ReportSection(Protocol):
    """An extra part of the report (see module docstring)."""

    name: str

    def build(self, results: EvaluationResults, out_dir: Path) -> SectionOutput | None:
        """Compute and draw this section's content (None = nothing to add for this run)."""
        ...


@runtime_checkable
class SectionImages(Protocol):
    """A report section whose own images join the detection + embedding pass (e.g. the identity guard's dumped
    candidates); their detections and embeddings are then in ``results.store`` when :meth:`build` runs."""

    def image_paths(self, dataset: Dataset, arms: Sequence[FrontalArm]) -> list[Path]:
        """Extra image files to detect and embed under every combination."""
        ...


def _arm_entry(arm_result: Any) -> dict[str, Any]:
    entry = dict(arm_result.summary)
    entry["verification"] = arm_result.verification
    entry["pose_bins"] = arm_result.pose_bins
    if arm_result.vs_reference is not None:
        entry["vs_reference"] = arm_result.vs_reference
    if arm_result.pairs is not None:
        entry["pairs_verification"] = arm_result.pairs.numbers
    return entry


def summary_dict(results: EvaluationResults) -> dict[str, Any]:
    """The machine-readable summary (``summary.json``) of a run."""
    dataset = results.dataset
    per_arm: dict[str, dict[str, Any]] = {}
    for combo in results.combinations:
        for arm_result in combo.arms:
            per_arm.setdefault(arm_result.arm.name, {})[combo.label] = _arm_entry(arm_result)
    return {
        "version": __version__,
        "dataset": {
            "layout": dataset.layout, "root": str(dataset.root), "n_records": len(dataset.records),
            "n_subjects": len(dataset.subjects), "n_gt": len(dataset.gt), "gt_rule": dataset.gt_rule,
            "pose_source": results.pose_source, "pose_convention": POSE_CONVENTION,
            "n_synthetic": sum(r.synthetic for r in dataset.records), "notes": list(dataset.notes),
            "supplied_notes": dataset.supplied_notes or None,
        },
        "pose_error": {"pose_model": results.pose_estimator, "rows": list(results.pose_error)},
        "pose_unfit": unfit_count(dataset, results.store, results.combinations[0].combination.detector)
        if results.combinations else 0,
        "arms": [{"name": a.name, "root": str(a.root), "prefix": a.prefix, "outputs": len(a.outputs),
                  "failures": len(a.failures), "manifest": a.manifest} for a in results.arms],
        "combinations": [{"label": c.label, "detector": c.combination.detector,
                          "recognizer": c.combination.recognizer} for c in results.combinations],
        "results": per_arm,
        "similarity_model": {c.label: c.similarity for c in results.combinations},
        "pairs_verification_original": {c.label: c.pairs_angle.numbers for c in results.combinations
                                        if c.pairs_angle is not None},
        "detection": {c.label: c.detection for c in results.combinations},
        "definitions": {"net_gain": NET_GAIN_DEFINITION, **SIMILARITY_DEFINITIONS},
        "computed": dict(results.store.computed),
        "notes": list(results.notes),
        **results.extras,
    }


def _header(results: EvaluationResults) -> list[str]:
    dataset = results.dataset
    cfg = results.config
    lines = [
        "# Identity-preservation report", "",
        f"- Dataset: `{dataset.root}` (layout **{dataset.layout}**), {len(dataset.records)} angled images, "
        f"{len(dataset.subjects)} subjects, {len(dataset.gt)} GT images.",
        f"- GT rule: {dataset.gt_rule}.",
        f"- Pose: {results.pose_source}.",
        *_synthetic_line(dataset),
        "- Output trees: " + ", ".join(f"`{a.name}` ({len(a.outputs)} outputs"
                                       f"{', manifest read' if a.manifest else ''})" for a in results.arms) + ".",
        "- Combinations: " + ", ".join(f"`{c.label}`" for c in results.combinations) + ".",
        f"- Detection: size {cfg.detection.det_size}, threshold {cfg.detection.threshold}, padding/retry "
        f"{'on' if cfg.detection.retry else 'off'}; the largest face of each image is used.",
        f"- Work done: {results.store.computed['decoded']} images decoded, "
        f"{results.store.computed['detections']} detections and {results.store.computed['embeddings']} "
        "embeddings computed (the rest came from the embedding cache).",
        "", "## Definitions", "",
        f"- {NET_GAIN_DEFINITION}. A face that is not detected is counted per arm, never scored 0; pairs with "
        "one arm missing are reported apart (Table 2).",
        *(f"- {text}" for text in SIMILARITY_DEFINITIONS.values()),
        f"- Output matching: {MATCHING_RULE}.",
        "- Per-image results: [per_image.csv](per_image.csv) ([JSON Lines](per_image.jsonl)), one row per output "
        "tree × combination × angled image; GT images: [per_image_gt.csv](per_image_gt.csv)"
        + ("; browse them in [report.html](report.html)." if cfg.report.html else "."),
    ]
    lines += [f"- Note: {note}" for note in [*dataset.notes, *results.notes]]
    if dataset.supplied_notes:
        lines += ["", f"## Dataset notes (`{NOTES_FILE}` supplied with the dataset)", "",
                  *(f"> {line}".rstrip() for line in dataset.supplied_notes.splitlines())]
    return lines


def _synthetic_line(dataset: Dataset) -> list[str]:
    synthetic = sum(r.synthetic for r in dataset.records)
    if not synthetic:
        return []
    return [f"- **Synthetic images:** {synthetic} of the {len(dataset.records)} angled images are synthetic renders, "
            "not photographs (column `synthetic` of per_image.csv; see the dataset notes); their numbers measure the "
            "renderer as much as the frontalizer."]


def _figure_lines(figures: Sequence[FigureRef], out_dir: Path) -> list[str]:
    lines = ["", "## Figures", ""]
    for ref in figures:
        rel = ref.path.relative_to(out_dir).as_posix()
        lines += [f"**{ref.caption}**", "", f"![{ref.kind}]({rel})", ""]
    return lines


def write_report(
    results: EvaluationResults,
    out_dir: str | Path,
    *,
    sections: Sequence[ReportSection] = (),
) -> Path:
    """Write the tables, figures, ``report.md`` and ``summary.json`` into ``out_dir``.

    Returns:
        Path of ``report.md``.
    """
    out = Path(out_dir)
    table_dir = out / "tables"
    tables = build_tables(results)
    figures = make_figures(results, out / "figures") if results.config.figures.enabled else []
    summary = summary_dict(results)
    lines = [*_header(results), "", "## Tables", ""]
    files: dict[str, dict[str, str]] = {}
    for table in tables:
        files[table.name] = {k: f"tables/{v}" for k, v in table.write(table_dir).items()}
        lines += [table.to_markdown(), f"[CSV]({files[table.name]['csv']}) · [JSON]({files[table.name]['json']})",
                  ""]
    lines += _figure_lines(figures, out)
    extra: dict[str, Any] = {}
    for section in sections:
        built = section.build(results, out)
        if built is None:
            continue
        lines += ["", f"## {built.title}", "", built.markdown]
        for table in built.tables:
            files[table.name] = {k: f"tables/{v}" for k, v in table.write(table_dir).items()}
            lines += [table.to_markdown()]
        lines += _figure_lines(built.figures, out) if built.figures else []
        extra[section.name] = built.summary
        figures = [*figures, *built.figures]
    summary["tables"] = files
    summary["figures"] = [{"kind": f.kind, "path": f.path.relative_to(out).as_posix(), "caption": f.caption}
                          for f in figures]
    if extra:
        summary["sections"] = extra
    atomic_write_text(out / "summary.json", json.dumps(_json_safe(summary), indent=2) + "\n")
    report = out / "report.md"
    atomic_write_text(report, "\n".join(lines) + "\n")
    log.info("report written to %s", report)
    return report


def _json_safe(value: Any) -> Any:
    """Strict-JSON copy: NaN/inf -> null, numpy scalars/arrays -> Python values, other objects -> str."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "tolist"):
        return _json_safe(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)
