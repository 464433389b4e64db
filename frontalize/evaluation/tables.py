"""Report tables: built from :class:`~.results.EvaluationResults`, written as Markdown, CSV and JSON.

Tables (numbered as in the report):

1. identity preservation — Mean(Angle↔GT), Mean(Frontal↔GT), net gain with CI, median, win rate, Wilcoxon p, N;
2. enhancement — per output tree: mean Frontal↔GT, N, no-face count per arm (with and without padding/retry),
   inference failures, records with one arm only; 2b: each tree minus the first tree;
3. similarity model — Angled vs GT, Angled vs Angled (same subject), GT vs GT (different subjects);
4. net gain by |yaw| bin and by signed pitch bin;
5. identity matching — rank-1 identification and genuine/impostor verification; 5b: official pairs (LFW);
6. detection — per image set, faces found with and without the padding/retry option;
7. head-pose estimators against the known poses (BIWI annotations, rendered posed views), when there are any.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frontalize.evaluation.metrics import far_key
from frontalize.evaluation.results import EvaluationResults

__all__ = ["Column", "Table", "build_tables"]


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats (also inside lists) replaced by None, for strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


@dataclass(frozen=True)
class Column:
    """One column: row-dict ``key``, header text and number format ("f3", "e2", "d", "s", "ci")."""

    key: str
    header: str
    fmt: str = "f3"


@dataclass
class Table:
    """A titled table of row dicts with a fixed column list."""

    name: str
    title: str
    columns: list[Column]
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @staticmethod
    def format_value(value: Any, fmt: str) -> str:
        """Text of one cell ("–" for a missing value)."""
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "–"
        if fmt == "ci":
            low, high = value
            if low is None or high is None:
                return "–"
            return f"[{low:+.3f}, {high:+.3f}]"
        if fmt == "f3":
            return f"{value:.3f}"
        if fmt == "f2":
            return f"{value:.2f}"
        if fmt == "+3":
            return f"{value:+.3f}"
        if fmt == "e2":
            return f"{value:.2e}"
        if fmt == "pct":
            return f"{100 * value:.1f}%"
        return str(value)

    def to_markdown(self) -> str:
        """GitHub-flavoured Markdown: title, table, notes."""
        header = "| " + " | ".join(c.header for c in self.columns) + " |"
        rule = "|" + "|".join("---" for _ in self.columns) + "|"
        lines = [f"### {self.title}", "", header, rule]
        for row in self.rows:
            cells = [self.format_value(row.get(c.key), c.fmt).replace("|", "\\|") for c in self.columns]
            lines.append("| " + " | ".join(cells) + " |")
        if not self.rows:
            lines.append("| " + " | ".join(["–"] * len(self.columns)) + " |")
        lines.extend(f"\n*{note}*" for note in self.notes)
        return "\n".join(lines) + "\n"

    def write_csv(self, path: Path) -> None:
        """One CSV row per row dict (CI columns split into ``_low``/``_high``)."""
        headers: list[str] = []
        for column in self.columns:
            headers += [f"{column.key}_low", f"{column.key}_high"] if column.fmt == "ci" else [column.key]
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(headers)
            for row in self.rows:
                cells: list[Any] = []
                for column in self.columns:
                    value = row.get(column.key)
                    if column.fmt == "ci":
                        cells += list(value) if value else ["", ""]
                    else:
                        cells.append("" if value is None else value)
                writer.writerow(cells)

    def to_json(self) -> dict[str, Any]:
        """{"name", "title", "columns", "rows", "notes"} with plain values (NaN/inf become null)."""
        return {"name": self.name, "title": self.title, "columns": [c.key for c in self.columns],
                "rows": [{c.key: _finite(row.get(c.key)) for c in self.columns} for row in self.rows],
                "notes": self.notes}

    def write(self, folder: Path) -> dict[str, str]:
        """Write ``<name>.csv`` and ``<name>.json`` into ``folder``; returns their file names."""
        folder.mkdir(parents=True, exist_ok=True)
        self.write_csv(folder / f"{self.name}.csv")
        (folder / f"{self.name}.json").write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return {"csv": f"{self.name}.csv", "json": f"{self.name}.json"}


def _arm_rows(results: EvaluationResults) -> list[tuple[str, str, Any]]:
    return [(arm.arm.name, combo.label, arm) for combo in results.combinations for arm in combo.arms]


def table_identity(results: EvaluationResults) -> Table:
    """Table 1."""
    columns = [Column("dataset", "Dataset", "s"), Column("arm", "Output tree", "s"),
               Column("combination", "Combination", "s"), Column("mean_angle_gt", "Mean(Angle↔GT)"),
               Column("mean_frontal_gt", "Mean(Frontal↔GT)"), Column("net_gain", "Net gain", "+3"),
               Column("net_gain_ci95", "95% CI (subjects)", "ci"), Column("median_gain", "Median gain", "+3"),
               Column("win_rate", "Win rate", "pct"), Column("wilcoxon_p", "Wilcoxon p", "e2"),
               Column("n", "N", "d"), Column("n_subjects", "Subjects", "d")]
    rows = [{"dataset": results.dataset.layout, "arm": arm_name, "combination": combo, **arm.summary}
            for arm_name, combo, arm in _arm_rows(results)]
    notes = ["Net gain = mean over images of cos(Frontal, GT) − cos(Angle, GT), on images with a face detected in "
             "the angled image, its frontalized output and the GT. CI: cluster bootstrap over subjects "
             f"({results.config.stats.bootstrap_resamples} resamples, {results.config.stats.bootstrap_method})."]
    return Table("table1_identity", "Table 1 — Identity preservation (Angle↔GT vs Frontal↔GT)", columns, rows, notes)


def table_enhancement(results: EvaluationResults) -> Table:
    """Table 2."""
    columns = [Column("arm", "Output tree", "s"), Column("combination", "Combination", "s"),
               Column("mean_frontal_gt", "Mean(Frontal↔GT)"), Column("n", "N (paired)", "d"),
               Column("no_face_angle", "No face: angled", "d"), Column("no_face_frontal", "No face: frontal", "d"),
               Column("no_face_angle_plain", "No face angled (no retry)", "d"),
               Column("no_face_frontal_plain", "No face frontal (no retry)", "d"),
               Column("frontal_failed", "Inference failed", "d"), Column("frontal_missing", "No output", "d"),
               Column("angle_only", "Angle arm only", "d"), Column("frontal_only", "Frontal arm only", "d"),
               Column("mean_angle_gt_angle_only", "Mean(Angle↔GT) angle only"),
               Column("mean_frontal_gt_frontal_only", "Mean(Frontal↔GT) frontal only")]
    rows = [{"arm": a, "combination": c, **arm.summary} for a, c, arm in _arm_rows(results)]
    notes = ["A face that is not detected is counted, never scored 0. 'Inference failed' = inputs the output "
             "tree's manifest reports with a status other than ok; 'No output' = no file and no manifest row."]
    return Table("table2_enhancement", "Table 2 — Output trees (enhancements) and no-face counts", columns, rows,
                 notes)


def table_arm_differences(results: EvaluationResults) -> Table:
    """Table 2b: each output tree against the first one (empty with a single tree)."""
    columns = [Column("arm", "Output tree", "s"), Column("reference", "Reference", "s"),
               Column("combination", "Combination", "s"), Column("mean_reference", "Mean(Frontal↔GT) ref"),
               Column("mean_arm", "Mean(Frontal↔GT) tree"), Column("mean_difference", "Difference", "+3"),
               Column("difference_ci95", "95% CI (subjects)", "ci"), Column("win_rate", "Win rate", "pct"),
               Column("wilcoxon_p", "Wilcoxon p", "e2"), Column("n", "N", "d")]
    rows = [{"arm": a, "combination": c, **arm.vs_reference} for a, c, arm in _arm_rows(results) if arm.vs_reference]
    return Table("table2b_vs_reference", "Table 2b — Output trees against the first tree (paired per image)",
                 columns, rows)


def table_similarity_model(results: EvaluationResults) -> Table:
    """Table 3."""
    from frontalize.evaluation.analysis import SIMILARITY_DEFINITIONS

    columns = [Column("combination", "Combination", "s"), Column("angle_gt", "Angled vs GT"),
               Column("n_angle_gt", "N", "d"), Column("angle_angle", "Angled vs Angled (same subject)"),
               Column("n_angle_angle", "Pairs", "d"), Column("gt_gt", "GT vs GT (different subjects)"),
               Column("n_gt_gt", "Pairs", "d")]
    rows = [{"combination": combo.label, **combo.similarity} for combo in results.combinations]
    return Table("table3_similarity_model", "Table 3 — Similarity model baselines", columns, rows,
                 list(SIMILARITY_DEFINITIONS.values()))


def table_pose_bins(results: EvaluationResults) -> Table:
    """Table 4."""
    columns = [Column("arm", "Output tree", "s"), Column("combination", "Combination", "s"),
               Column("axis", "Axis", "s"), Column("bin", "Bin (deg)", "s"), Column("n", "N", "d"),
               Column("n_subjects", "Subjects", "d"), Column("mean_angle_gt", "Mean(Angle↔GT)"),
               Column("mean_frontal_gt", "Mean(Frontal↔GT)"), Column("net_gain", "Net gain", "+3"),
               Column("net_gain_ci95", "95% CI", "ci"), Column("no_face_angle", "No face angled", "d"),
               Column("no_face_frontal", "No face frontal", "d")]
    rows = [{"arm": a, "combination": c, **row} for a, c, arm in _arm_rows(results) for row in arm.pose_bins]
    notes = [f"Pose: {results.pose_source}. Bins are 15° wide by default; a record with unknown pose is in no bin."]
    return Table("table4_pose_bins", "Table 4 — Net gain by |yaw| and by pitch", columns, rows, notes)


def table_identification(results: EvaluationResults) -> Table:
    """Table 5."""
    fars = [far_key(far) for far in results.config.stats.far_levels]
    columns = [Column("arm", "Output tree", "s"), Column("combination", "Combination", "s"),
               Column("probes", "Probes", "s"), Column("rank1", "Rank-1", "pct"), Column("auc", "ROC AUC"),
               Column("eer", "EER", "pct")]
    columns += [Column(f"tar@{far}", f"TAR@FAR={far}", "pct") for far in fars]
    columns += [Column("n_genuine", "Genuine", "d"), Column("n_impostor", "Impostor", "d")]
    rows = []
    for arm_name, combo, arm in _arm_rows(results):
        for probes in ("angle", "frontal"):
            numbers = arm.verification[probes]
            row = {"arm": arm_name, "combination": combo, "probes": probes, **numbers}
            row.update({f"tar@{far}": numbers["tar_at_far"].get(far) for far in fars})
            rows.append(row)
    notes = ["Gallery = the GT of every subject; probes = the paired images (face in both arms). Genuine = probe vs "
             "own GT, impostor = probe vs every other GT. TAR@FAR is shown only with ≥ max(20, 1/FAR) impostor "
             "pairs."]
    return Table("table5_identification", "Table 5 — Identification and verification", columns, rows, notes)


def table_pairs(results: EvaluationResults) -> Table:
    """Table 5b: official verification pairs (LFW pairs.txt), angled images vs each output tree."""
    fars = [far_key(far) for far in results.config.stats.far_levels]
    columns = [Column("images", "Images", "s"), Column("combination", "Combination", "s"), Column("auc", "ROC AUC"),
               Column("eer", "EER", "pct")] + [Column(f"tar@{far}", f"TAR@FAR={far}", "pct") for far in fars]
    columns += [Column("n_genuine", "Genuine", "d"), Column("n_impostor", "Impostor", "d"),
                Column("skipped", "Skipped (no face)", "d")]
    rows = []
    for combo in results.combinations:
        entries = [("original", combo.pairs_angle)] + [(arm.arm.name, arm.pairs) for arm in combo.arms]
        for label, pairs in entries:
            if pairs is not None:
                row = {"images": label, "combination": combo.label, **pairs.numbers}
                row.update({f"tar@{far}": pairs.numbers["tar_at_far"].get(far) for far in fars})
                rows.append(row)
    return Table("table5b_pairs", "Table 5b — Official verification pairs", columns, rows)


def table_detection(results: EvaluationResults) -> Table:
    """Table 6."""
    columns = [Column("combination", "Combination", "s"), Column("images", "Image set", "s"),
               Column("total", "Images", "d"), Column("faces", "Face found", "d"), Column("no_face", "No face", "d"),
               Column("no_face_plain", "No face without padding/retry", "d"),
               Column("found_by_retry", "Found by padding/retry", "d"), Column("unreadable", "Unreadable", "d")]
    rows = [{"combination": combo.label, **row} for combo in results.combinations for row in combo.detection]
    spec = results.config.detection
    notes = [f"Padding/retry {'on' if spec.retry else 'off'}: pad {spec.pad_fraction:.0%} per side, then detection "
             f"sizes {', '.join(map(str, spec.retry_sizes))} after {spec.det_size}."]
    return Table("table6_detection", "Table 6 — Face detection with and without padding/retry", columns, rows, notes)


def table_pose_error(results: EvaluationResults) -> Table:
    """Table 7: mean absolute error of the pose estimators against the known poses."""
    from frontalize.datasets.base import POSE_CONVENTION

    columns = [Column("detector", "Detector", "s"), Column("estimator", "Estimator", "s"),
               Column("known", "Known pose", "s"), Column("bin", "Yaw bin (known, abs.)", "s"),
               Column("images", "Images", "d"), Column("no_face", "No face", "d"), Column("no_fit", "No fit", "d"),
               Column("n", "N", "d"), Column("mae_pitch", "MAE pitch", "f2"), Column("mae_yaw", "MAE yaw", "f2"),
               Column("mae_roll", "MAE roll", "f2"), Column("median_abs_yaw_error", "Median abs. yaw error", "f2")]
    notes = ["Mean absolute error in degrees of each estimator on the images whose pose is known (annotation: the "
             "dataset's; rendered: the pose a synthetic view was rendered at), on the face the detector found. N = "
             "images scored; No face = the detector found none; No fit = the pose model could not fit the face's "
             "landmarks (no pose, never 0). The keypoint proxy has no pitch. Bins use the known |yaw|. Convention "
             f"of every angle: {POSE_CONVENTION}."]
    return Table("table7_pose_error", "Table 7 — Head-pose estimators against the known poses", columns,
                 list(results.pose_error), notes)


def build_tables(results: EvaluationResults) -> list[Table]:
    """Every table of the report, in order (5b only when official pairs were given; 7 only with known poses)."""
    tables = [table_identity(results), table_enhancement(results)]
    if len(results.arms) > 1:
        tables.append(table_arm_differences(results))
    tables += [table_similarity_model(results), table_pose_bins(results), table_identification(results)]
    if results.dataset.pairs:
        tables.append(table_pairs(results))
    tables.append(table_detection(results))
    if results.pose_error:
        tables.append(table_pose_error(results))
    return tables


def tables_by_name(tables: Sequence[Table]) -> dict[str, Table]:
    """Name -> table."""
    return {table.name: table for table in tables}
