"""Figures of the identity-guard report section (matplotlib, Agg canvas — no pyplot, no global backend switch).

* :func:`tradeoff_plot` — identity vs frontality as the rotation fraction α varies: mean Frontal↔GT (left) and
  mean residual |yaw| (right) against α, one line per candidate kind, starting at α = 0 (the angled input);
* :func:`residual_ecdf_plot` — cumulative share of outputs below each residual |yaw|, one line per output tree,
  with the guard's limit marked.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

log = logging.getLogger(__name__)

__all__ = ["TradeoffSeries", "residual_ecdf_plot", "tradeoff_plot"]


@dataclass(frozen=True)
class TradeoffSeries:
    """One candidate kind's curve: α values with mean Frontal↔GT and mean residual |yaw| (None = unknown)."""

    label: str
    alphas: tuple[float, ...]
    similarities: tuple[float | None, ...]
    abs_yaws: tuple[float | None, ...]

    @classmethod
    def from_rows(cls, label: str, rows: Sequence[Mapping[str, Any]],
                  start: Mapping[str, Any] | None = None) -> TradeoffSeries:
        """Series from trade-off table rows (``alpha``, ``mean_frontal_gt``, ``mean_abs_residual_yaw``), with the
        α = 0 row of the angled input prepended when given."""
        ordered = sorted(rows, key=lambda row: float(row["alpha"]))
        if start is not None:
            ordered = [start, *ordered]
        return cls(label, tuple(float(r["alpha"]) for r in ordered),
                   tuple(r["mean_frontal_gt"] for r in ordered), tuple(r["mean_abs_residual_yaw"] for r in ordered))


def _values(items: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in items], dtype=float)


def _save(figure: Figure, path: Path, dpi: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=dpi, pil_kwargs={"compress_level": 1})
    return path


def tradeoff_plot(path: Path, series: Sequence[TradeoffSeries], title: str, *, limit: float | None = None,
                  dpi: int = 100) -> Path:
    """Two panels against α: mean Frontal↔GT and mean residual |yaw| (a missing mean leaves a gap); ``limit``
    draws the guard's |yaw| limit as a dashed line."""
    figure = Figure(figsize=(10, 4))
    left, right = figure.subplots(1, 2)
    for item in series:
        x = np.asarray(item.alphas)
        left.plot(x, _values(item.similarities), marker="o", label=item.label)
        right.plot(x, _values(item.abs_yaws), marker="o", label=item.label)
    if limit is not None:
        right.axhline(limit, color="grey", linestyle="--", linewidth=1, label=f"guard limit {limit:g}°")
    left.set_ylabel("mean Frontal↔GT (cosine)")
    right.set_ylabel("mean residual |yaw| (degrees)")
    for ax in (left, right):
        ax.set_xlabel("α (rotation fraction towards frontal; 0 = angled input)")
        ax.set_xlim(-0.05, 1.05)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if not series:
        left.text(0.5, 0.5, "no guarded images", ha="center", va="center", transform=left.transAxes)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return _save(figure, path, dpi)


def residual_ecdf_plot(path: Path, values: Mapping[str, Sequence[float]], limit: float, title: str, *,
                       dpi: int = 100) -> Path:
    """Empirical CDF of residual |yaw| per output tree; a dashed line marks the guard's |yaw| limit."""
    figure = Figure(figsize=(5.5, 4))
    ax = figure.subplots()
    for label, items in values.items():
        data = np.sort(np.asarray(items, dtype=float))
        if data.size:
            ax.step(np.concatenate([[0.0], data]), np.linspace(0, 1, data.size + 1), where="post",
                    label=f"{label} (n={data.size})")
    ax.axvline(limit, color="grey", linestyle="--", linewidth=1, label=f"guard limit {limit:g}°")
    ax.set_xlabel("residual |yaw| (degrees)")
    ax.set_ylabel("share of outputs ≤ x")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=9)
    figure.tight_layout()
    return _save(figure, path, dpi)
