"""Report figures (matplotlib, Agg canvas — no pyplot, no global backend switch).

The kinds the original study drew by hand (``shared/reference/seed-figures``), generated from the data:

* :func:`triplet_grid` — Angle → Frontal → GT for the best, median and worst net gain, similarities under each;
* :func:`similarity_strip` — one probe (angled and frontalized) against all GTs sorted by similarity, its own
  GT framed;
* :func:`pose_bin_plot` — net gain by |yaw| and pitch bin with CIs;
* :func:`roc_plot` — ROC curves of angled vs frontalized probes;
* :func:`three_row_grid` — LFW-style grid: angled / frontalized / GT rows, similarities under each column;
* :func:`input_output_pairs` — input next to output for a sample of images.

Images are read one at a time and reduced to thumbnails, so figures never hold full-size images.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from frontalize.errors import InputError
from frontalize.io.images import load_image

log = logging.getLogger(__name__)

__all__ = [
    "BinSeries",
    "Cell",
    "RocSeries",
    "StripEntry",
    "Triplet",
    "input_output_pairs",
    "pose_bin_plot",
    "roc_plot",
    "similarity_strip",
    "three_row_grid",
    "thumbnail",
    "triplet_grid",
]

_OWN_COLOUR = "#d62728"


@dataclass(frozen=True)
class Triplet:
    """One angled probe with its frontalized output, GT and the two similarities."""

    title: str
    angle: str
    frontal: str
    gt: str
    sim_angle: float
    sim_frontal: float


@dataclass(frozen=True)
class StripEntry:
    """One GT in the ordered-similarity strip."""

    path: str
    subject: str
    similarity: float
    own: bool


@dataclass(frozen=True)
class BinSeries:
    """Net gain per pose bin of one (output tree, combination); ``bin_starts`` = lower edges (−inf allowed)."""

    label: str
    axis: str
    bins: list[str]
    bin_starts: list[float]
    means: list[float | None]
    lows: list[float | None]
    highs: list[float | None]


@dataclass(frozen=True)
class RocSeries:
    """One ROC curve."""

    label: str
    fpr: np.ndarray
    tpr: np.ndarray
    auc: float | None
    dashed: bool = False


def thumbnail(path: str | Path, size: int) -> np.ndarray:
    """Square ``size``×``size`` RGB thumbnail of an image (letter-boxed on white; grey when unreadable)."""
    canvas = np.full((size, size, 3), 255, dtype=np.uint8)
    try:
        rgb = load_image(path).rgb
    except InputError as exc:
        log.warning("figure: cannot read %s (%s)", path, exc)
        canvas[:] = 200
        return canvas
    scale = size / max(rgb.shape[:2])
    height, width = max(1, round(rgb.shape[0] * scale)), max(1, round(rgb.shape[1] * scale))
    small = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    top, left = (size - height) // 2, (size - width) // 2
    canvas[top : top + height, left : left + width] = small
    return canvas


def _save(figure: Figure, path: Path, dpi: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=dpi, pil_kwargs={"compress_level": 1})  # fast PNG encoding; size matters less
    return path


@dataclass(frozen=True)
class Cell:
    """One image of a mosaic figure: the file, a caption under it and an optional frame colour."""

    path: str
    caption: str = ""
    frame: str | None = None


def _mosaic(path: Path, rows: Sequence[Sequence[Cell]], title: str, *, row_labels: Sequence[str] = (),
            thumb: int = 128, dpi: int = 100) -> Path:
    """Draw rows of thumbnails with captions as ONE image plus text (fast: one axes, one imshow).

    Many small matplotlib axes (one per image) cost seconds per figure; composing the thumbnails into a single
    array and placing the captions as text keeps every figure well under a second.
    """
    font = 7.0
    line = font * dpi / 72.0
    gap = 6
    caption_h = int(3.3 * line)
    label_w = int(9 * line) if row_labels else 0
    title_h = int(2.4 * line)
    columns = max((len(r) for r in rows), default=1)
    width = label_w + gap + columns * (thumb + gap)
    height = title_h + len(rows) * (thumb + caption_h + gap)
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    ax = figure.add_axes((0, 0, 1, 1))
    texts: list[tuple[float, float, str, dict[str, object]]] = []
    for r, row in enumerate(rows):
        top = title_h + r * (thumb + caption_h + gap)
        if r < len(row_labels):
            texts.append((label_w / 2, top + thumb / 2, row_labels[r], {"rotation": 90, "va": "center"}))
        for c, cell in enumerate(row):
            left = label_w + gap + c * (thumb + gap)
            canvas[top : top + thumb, left : left + thumb] = thumbnail(cell.path, thumb)
            texts.append((left + thumb / 2, top + thumb + 2, cell.caption, {"va": "top"}))
            if cell.frame is not None:
                ax.add_patch(Rectangle((left - 1.5, top - 1.5), thumb + 2, thumb + 2, fill=False,
                                       edgecolor=cell.frame, linewidth=2.5))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    for x, y, text, style in texts:
        ax.text(x, y, text, fontsize=font, ha="center", **style)  # type: ignore[arg-type]
    ax.text(width / 2, title_h / 2, title, fontsize=font + 1.5, ha="center", va="center")
    return _save(figure, path, dpi)


def triplet_grid(path: Path, triplets: Sequence[Triplet], title: str, *, thumb: int = 128, dpi: int = 100) -> Path:
    """Rows of Angle | Frontal | GT with ``Sim_Angle_GT`` / ``Sim_Front_GT`` captions."""
    rows = [[Cell(t.angle, f"Angle\nSim_Angle_GT = {t.sim_angle:.3f}"),
             Cell(t.frontal, f"Frontal\nSim_Front_GT = {t.sim_frontal:.3f}"), Cell(t.gt, "GT")] for t in triplets]
    return _mosaic(path, rows, title, row_labels=[t.title for t in triplets], thumb=thumb, dpi=dpi)


def similarity_strip(path: Path, probes: Sequence[tuple[str, str, Sequence[StripEntry]]], title: str, *,
                     thumb: int = 128, dpi: int = 100) -> Path:
    """One row per probe: the probe, then GTs sorted by similarity (own GT framed in red).

    Args:
        probes: (row label, probe image, GT entries sorted by decreasing similarity).
    """
    rows = []
    for label, probe, entries in probes:
        row = [Cell(probe, label, frame="black")]
        row += [Cell(e.path, f"{e.subject}{' (own)' if e.own else ''}\n{e.similarity:.3f}",
                     frame=_OWN_COLOUR if e.own else None) for e in entries]
        rows.append(row)
    return _mosaic(path, rows, title, thumb=thumb, dpi=dpi)


AXIS_SENSE = {"pitch": "; > 0 = looking down"}
"""What a positive angle means on each pose axis (the project's convention), shown in the axis label."""


def pose_bin_plot(path: Path, series: Sequence[BinSeries], title: str, *, dpi: int = 100) -> Path:
    """Net gain per pose bin (one panel per axis) with CI error bars; a dashed line marks zero."""
    axes_names = list(dict.fromkeys(s.axis for s in series)) or ["|yaw|"]
    figure = Figure(figsize=(5.5 * len(axes_names), 4))
    axes = figure.subplots(1, len(axes_names), squeeze=False)[0]
    for ax, axis in zip(axes, axes_names):
        chosen = [s for s in series if s.axis == axis]
        edges = {label: low for item in chosen for label, low in zip(item.bins, item.bin_starts)}
        labels = sorted(edges, key=lambda label: edges[label])  # union of the series' bins, in bin order
        for offset, item in enumerate(chosen):
            x = np.array([labels.index(b) for b in item.bins]) + (offset - (len(chosen) - 1) / 2) * 0.08
            means = np.array([np.nan if m is None else m for m in item.means], dtype=float)
            lows = np.array([np.nan if v is None else v for v in item.lows], dtype=float)
            highs = np.array([np.nan if v is None else v for v in item.highs], dtype=float)
            errors = np.vstack([np.clip(means - lows, 0, None), np.clip(highs - means, 0, None)])
            ax.errorbar(x, means, yerr=np.nan_to_num(errors), marker="o", capsize=3, label=item.label)
        ax.set_xticks(np.arange(len(labels)))
        ax.set_xticklabels(labels, rotation=30, fontsize=7)
        ax.axhline(0.0, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel(f"{axis} bin (degrees{AXIS_SENSE.get(axis, '')})")
        ax.set_ylabel("net gain (Frontal↔GT − Angle↔GT)")
        ax.legend(fontsize=7)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return _save(figure, path, dpi)


def roc_plot(path: Path, series: Sequence[RocSeries], title: str, *, dpi: int = 100) -> Path:
    """ROC curves (log false-accept axis); dashed = angled probes, solid = frontalized probes."""
    figure = Figure(figsize=(5.5, 4.5))
    ax = figure.subplots()
    for item in series:
        if item.fpr.size == 0:
            continue
        label = f"{item.label} (AUC {item.auc:.3f})" if item.auc is not None else item.label
        ax.plot(np.clip(item.fpr, 1e-5, 1), item.tpr, linestyle="--" if item.dashed else "-", label=label)
    ax.set_xscale("log")
    ax.set_xlim(1e-4, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=9)
    figure.tight_layout()
    return _save(figure, path, dpi)


def three_row_grid(path: Path, triplets: Sequence[Triplet], title: str, *, thumb: int = 128, dpi: int = 100) -> Path:
    """Row 1 angled, row 2 frontalized, row 3 GT; Angle↔GT and Frontal↔GT under each column."""
    rows = [[Cell(t.angle, f"A↔GT {t.sim_angle:.3f}") for t in triplets],
            [Cell(t.frontal, f"F↔GT {t.sim_frontal:.3f}") for t in triplets],
            [Cell(t.gt, t.title) for t in triplets]]
    return _mosaic(path, rows, title, row_labels=("angled", "frontalized", "GT"), thumb=thumb, dpi=dpi)


def input_output_pairs(path: Path, pairs: Sequence[tuple[str, str, str]], title: str, *, columns: int = 4,
                       thumb: int = 128, dpi: int = 100) -> Path:
    """Input → output pairs in a grid (``columns`` pairs per row, input left of its output)."""
    cells = [cell for source, output, caption in pairs for cell in (Cell(source, caption), Cell(output, "→ output"))]
    per_row = 2 * max(1, columns)
    rows = [cells[i : i + per_row] for i in range(0, len(cells), per_row)]
    return _mosaic(path, rows, title, thumb=thumb, dpi=dpi)
