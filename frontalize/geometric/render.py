"""Dense backward warp of the source crop into a target view of the reference surface.

Every output pixel is traced to the surface point it shows in the target view (:func:`cast_rays`), and that point to
the source-crop pixel that shows it (the fitted source view): a ``cv2.remap`` of the source crop. The maps are smooth,
so they are computed on a grid :attr:`RenderSettings.map_step` times coarser than the crop and upsampled.

The output is the composite of three remaps of the crop, blended with soft weights:

* the face's own texture, where the surface is visible in the source;
* the mirrored texture (the symmetric surface point, :mod:`frontalize.geometric.visibility`), where it is not;
* around the face, the background warp of :mod:`frontalize.geometric.background`, which moves hair, ears and
  background with the face outline and returns to the identity further out (the crop border is unchanged).

The face/background weight is the face domain seen in the target view, anti-aliased by the bilinear upsampling.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from frontalize.geometric.background import background_displacement, outline_radii, splat_mask
from frontalize.geometric.camera import ViewCamera, cast_rays
from frontalize.geometric.surface import FaceSurface
from frontalize.geometric.visibility import SourceSampling, mirror_weights

__all__ = ["RenderLayers", "RenderSettings", "render_layers", "render_view"]


@dataclass(frozen=True)
class RenderSettings:
    """Render constants (defaults are the engine's; changing them changes the outputs).

    Attributes:
        map_step: the warp maps are computed every ``map_step`` output pixels and upsampled.
        min_band: narrowest fade band of the background warp, inter-ocular distances.
        border_fade: fraction of the crop side over which the background warp fades to zero at the crop border.
    """

    map_step: int = 4
    min_band: float = 0.5
    border_fade: float = 0.06


def _pixel_grid(height: int, width: int, step: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Full-resolution positions of the centres of a coarse grid that ``cv2.resize`` maps back exactly."""
    low_h, low_w = math.ceil(height / step), math.ceil(width / step)
    ys = (np.arange(low_h) + 0.5) * (height / low_h) - 0.5
    xs = (np.arange(low_w) + 0.5) * (width / low_w) - 0.5
    grid_x, grid_y = np.meshgrid(xs, ys)
    return np.stack([grid_x, grid_y], axis=-1).astype(np.float32), (low_h, low_w)


def _remap_grid(field: np.ndarray, coords: np.ndarray) -> np.ndarray:
    return cv2.remap(field, coords[..., 0], coords[..., 1], interpolation=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def _upsample(field: np.ndarray, height: int, width: int) -> np.ndarray:
    return cv2.resize(field, (width, height), interpolation=cv2.INTER_LINEAR)


PositionLookup = Callable[[np.ndarray], np.ndarray]
"""``(k, 256, 2)`` output pixel positions → ``(k, 256, 2)`` source positions traced exactly, NaN where the ray misses
(see :func:`_exact_lookup`)."""
_LOOKUP_ROW = 256  # exact look-ups go through cv2.remap in rows of this many pixels (its maps are 2D, < 32767 wide)


def _upsample_map(positions: np.ndarray, height: int, width: int, cell: float, sharp: bool = True,
                  exact: PositionLookup | None = None) -> np.ndarray:
    """Upsample a coarse position map; with ``sharp``, across occlusion edges (neighbours more than 3 cells apart in
    the source) the pixels are traced exactly with ``exact`` (else nearest-neighbour), so no pixel samples the source
    half-way between an occluder and what it hides, and the edge follows the surface, not the coarse grid's cells."""
    smooth = _upsample(positions, height, width)
    if not sharp:
        return smooth
    jump = np.zeros(positions.shape[:2], dtype=bool)
    for axis in (0, 1):
        step = np.linalg.norm(np.diff(positions, axis=axis), axis=-1) > 3.0 * cell
        if axis == 0:
            jump[1:] |= step
            jump[:-1] |= step
        else:
            jump[:, 1:] |= step
            jump[:, :-1] |= step
    if not jump.any():
        return smooth
    # Nearest neighbour by indexing: OpenCV's INTER_NEAREST has no fast path for 2-channel float maps (≈10 ms).
    rows = np.minimum(np.arange(height) * positions.shape[0] // height, positions.shape[0] - 1)
    columns = np.minimum(np.arange(width) * positions.shape[1] // width, positions.shape[1] - 1)
    near_edge = jump[rows][:, columns]
    smooth[near_edge] = positions[rows][:, columns][near_edge]
    if exact is not None:
        edge_rows, edge_columns = np.nonzero(near_edge)
        count = len(edge_rows)
        padded = -(-count // _LOOKUP_ROW) * _LOOKUP_ROW
        pixels = np.zeros((padded, 2), dtype=np.float32)
        pixels[:count, 0], pixels[:count, 1] = edge_columns, edge_rows
        traced = exact(pixels.reshape(-1, _LOOKUP_ROW, 2)).reshape(-1, 2)[:count]
        hit = ~np.isnan(traced[:, 0])
        smooth[edge_rows[hit], edge_columns[hit]] = traced[hit]
    return smooth


def _exact_lookup(target: ViewCamera, surface: FaceSurface, field: np.ndarray) -> PositionLookup:
    """Per-pixel tracing of output pixels to ``field`` (a per-node source position map) in the ``target`` view.

    Pixels whose ray misses the surface get NaN (they keep the coarse map's value: outside the face, where the face
    weight is zero anyway)."""

    def lookup(pixels: np.ndarray) -> np.ndarray:
        coords, hit = cast_rays(target, surface, pixels)
        traced = _remap_grid(field, coords)
        traced[~hit] = np.nan
        return traced

    return lookup


def _remap(image: np.ndarray, positions: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    map_x = np.clip(positions[..., 0], 0, width - 1)
    map_y = np.clip(positions[..., 1], 0, height - 1)
    return cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def _background(pixels: np.ndarray, inside: np.ndarray, surface: FaceSurface, sampling: SourceSampling,
                target: ViewCamera, settings: RenderSettings) -> np.ndarray:
    """Background warp on the coarse grid: (h, w, 2) source − output displacement in full-resolution pixels."""
    low_h, low_w = inside.shape
    step = pixels[0, 1, 0] - pixels[0, 0, 0]
    origin = pixels[0, 0]
    centre = (target.centre - origin) / step  # pivot in coarse-grid pixels
    max_radius = float(math.hypot(low_h, low_w))
    source_cells = (sampling.positions[surface.domain > 0] - origin) / step
    r_src = outline_radii(splat_mask(source_cells, (low_h, low_w)), centre, max_radius) * step
    r_out = outline_radii((inside > 0.5).astype(np.float32), centre, max_radius) * step
    return background_displacement(pixels, target.centre, r_out, r_src, settings.min_band * target.scale,
                                   settings.border_fade * max(low_h, low_w))


@dataclass(frozen=True, eq=False)
class RenderLayers:
    """A rendering and the layers it was composed from (all H×W, crop pixels).

    Attributes:
        image: H×W×3 uint8 RGB result.
        face_alpha: float32 in [0, 1]: weight of the face surface (vs the background warp) at each pixel.
        mirror_share: float32 in [0, 1]: share of the face texture taken from the mirrored side (0 without symmetry).
        face_positions: (H, W, 2) float32 source-crop position the face's own texture is read from.
        background_positions: (H, W, 2) float32 source-crop position of the background warp.
    """

    image: np.ndarray
    face_alpha: np.ndarray
    mirror_share: np.ndarray
    face_positions: np.ndarray
    background_positions: np.ndarray


def _face_box(inside: np.ndarray, step: int, height: int, width: int) -> tuple[slice, slice]:
    """Full-resolution rows and columns covering the coarse cells where ``inside`` > 0, with 2 cells of margin."""
    rows, columns = np.nonzero(inside > 0)
    top, bottom = max(int(rows.min()) - 2, 0) * step, min((int(rows.max()) + 3) * step, height)
    left, right = max(int(columns.min()) - 2, 0) * step, min((int(columns.max()) + 3) * step, width)
    return slice(top, bottom), slice(left, right)


def render_layers(crop: np.ndarray, surface: FaceSurface, sampling: SourceSampling, target: ViewCamera, *,
                  symmetry: bool = True, settings: RenderSettings | None = None) -> RenderLayers:
    """Render ``crop`` seen in the ``target`` view (same size as the crop), with its layers.

    Args:
        crop: H×W×3 uint8 RGB source crop.
        surface: the reference surface (adapted to the face).
        sampling: the source view's per-node positions, visibility and mirror gain (:func:`sample_source`).
        target: the target view.
        symmetry: fill self-occluded regions from the symmetric side.
        settings: render constants.
    """
    settings = settings or RenderSettings()
    height, width = crop.shape[:2]
    pixels, _ = _pixel_grid(height, width, settings.map_step)
    coords, hit = cast_rays(target, surface, pixels)
    inside = np.clip(_remap_grid(surface.domain, coords) * hit, 0.0, 1.0)
    # The displacement is upsampled, not the positions: the coarse grid's clamped edges then add exactly nothing
    # at the crop border, where the displacement is zero.
    coarse_shift = _background(pixels, inside, surface, sampling, target, settings)
    shift = _upsample(coarse_shift, height, width)
    columns, rows = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    background_positions = np.stack([columns, rows], axis=-1) + shift
    image = crop.copy()
    moved = np.abs(coarse_shift).max(axis=-1) > 1e-3  # elsewhere the background warp is the identity
    if moved.any():
        box = _face_box(moved.astype(np.float32), settings.map_step, height, width)
        image[box] = _remap(crop, background_positions[box])
    # Rays along the model's z (no pitch or yaw) see no occlusion edge; other views may.
    sharp = abs(target.rotation[2, 0]) > 1e-9 or abs(target.rotation[2, 1]) > 1e-9
    cell = float(pixels[0, 1, 0] - pixels[0, 0, 0])
    face_positions = _upsample_map(_remap_grid(sampling.positions, coords), height, width, cell, sharp,
                                   _exact_lookup(target, surface, sampling.positions))
    # The coarse weight is blurred by one cell before upsampling: a bilinear ramp alone would leave the cell grid's
    # staircase along slanted outlines.
    alpha = np.clip(_upsample(cv2.GaussianBlur(inside.astype(np.float32), (0, 0), 0.7), height, width), 0.0, 1.0)
    share = np.zeros((height, width), dtype=np.float32)
    if not inside.any():
        return RenderLayers(image, alpha, share, face_positions, background_positions)
    box = _face_box(inside, settings.map_step, height, width)  # only there is the face remapped and blended
    face = _remap(crop, face_positions[box]).astype(np.float32)
    if symmetry:
        own_weight, mirror_weight = (_remap_grid(f, coords) for f in mirror_weights(surface, sampling.visibility))
        coarse_share = (mirror_weight / (own_weight + mirror_weight)).astype(np.float32)
        if float((coarse_share * inside).max()) >= 0.02:
            mirror_field = surface.mirrored(sampling.positions)
            mirrored_full = _upsample_map(_remap_grid(mirror_field, coords), height, width, cell, sharp,
                                          _exact_lookup(target, surface, mirror_field))
            mirrored = _remap(crop, mirrored_full[box]).astype(np.float32)
            gain = _upsample(_remap_grid(sampling.gain, coords), height, width)[box]
            share = _upsample(coarse_share, height, width) * (alpha > 0)
            face += share[box][..., None] * (mirrored * gain - face)
    background = image[box].astype(np.float32)
    blended = background + alpha[box][..., None] * (face - background)
    image[box] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return RenderLayers(image=image, face_alpha=alpha, mirror_share=share, face_positions=face_positions,
                        background_positions=background_positions)


def render_view(crop: np.ndarray, surface: FaceSurface, sampling: SourceSampling, target: ViewCamera, *,
                symmetry: bool = True, settings: RenderSettings | None = None) -> np.ndarray:
    """:func:`render_layers`' image only: H×W×3 uint8 RGB."""
    return render_layers(crop, surface, sampling, target, symmetry=symmetry, settings=settings).image
