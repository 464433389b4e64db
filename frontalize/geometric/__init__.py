"""Geometric (3D-model) frontalization engine: Hassner et al., CVPR 2015, with a dense surface and soft symmetry.

Public contract::

    from frontalize.geometric import GeometricFrontalizer, MeshTarget, target_angles

    engine = GeometricFrontalizer(landmarker)            # e.g. frontalize.faces.registry.build_landmarker68()
    fit = engine.fit(crop, face, roll_offset=offset)     # 68 landmarks, camera, surface, visibility (once per face)
    images = engine.render(fit, [MeshTarget(), MeshTarget("partial", alpha=0.5, symmetry=False)])

Arrays in, arrays out (H×W×3 uint8 RGB crops, faces in crop pixels); no files, no torch. One file per concern:
:mod:`~frontalize.geometric.surface` (the reference surface), :mod:`~frontalize.geometric.adapt` (its fit to a face),
:mod:`~frontalize.geometric.camera` (views and ray casting), :mod:`~frontalize.geometric.visibility` (occlusion and
symmetric fill), :mod:`~frontalize.geometric.background` (the warp around the face), :mod:`~frontalize.geometric.render`
(the dense backward warp), :mod:`~frontalize.geometric.target`, :mod:`~frontalize.geometric.frontalizer`.
"""

from __future__ import annotations

from frontalize.geometric.frontalizer import DEFAULT_LIMITS, FaceFit, GeometricFrontalizer, transform_face
from frontalize.geometric.render import RenderLayers, RenderSettings
from frontalize.geometric.surface import FaceSurface, face_surface
from frontalize.geometric.target import MeshTarget, target_angles

__all__ = ["DEFAULT_LIMITS", "FaceFit", "FaceSurface", "GeometricFrontalizer", "MeshTarget", "RenderLayers",
           "RenderSettings", "face_surface", "target_angles", "transform_face"]
