"""3D mean shape of the 68-point (dlib / iBUG 300-W) landmark scheme, symmetrised, in the project's frame.

Provenance: insightface 2.1 ships ``insightface/data/objects/meanshape_68.pkl`` (974 bytes, sha256
``39ffecf84ba73f0d0d7e49380833ba88713c9fcdec51df4f7ac45a48b8f4cc51``; the same file LivePortrait vendors). It is a
pickled float32 (68, 3) array. It was read ONCE with a restricted unpickler (only numpy's array reconstruction
allowed) and its values are transcribed below verbatim (``repr`` of each float32), so nothing is unpickled at run
time. The sha256 of the transcribed array's float32 bytes is :data:`RAW_SHA256`; a test recomputes it and, when
insightface is installed, compares the transcription with the pickle through the same restricted reader.

insightface's axes: x towards image right, y DOWN, z TOWARDS the viewer, unitless (eye-centre distance 0.532).
The project's 3D frame is LivePortrait's keypoint frame (``frontalize.liveportrait.geometry``): x right, y down,
z INTO the screen, so :func:`reference_shape` negates z. It also symmetrises the shape about the midline (left and
right become exact mirrors through :data:`MIRROR_68`), moves the origin to the midpoint of the two eye centres (z = 0
at their depth) and scales it to an eye-centre distance of 1 ("IOD units").

The 68 points leave the sides of the head empty: contour points 0–4 (and their mirrors 16–12) sit by the ears, about
1.1 IOD behind the eye corners, and are the silhouette of a frontal view only. :func:`side_sections` models the
horizontal section of the head at the height of each of them as an ellipse centred on the midline whose widest point
is the contour point (where a frontal view's line of sight grazes the surface) and which passes through the lateral
front point at that height (interpolated between the outer brow end 17, the outer eye corner 36, the nose wing 31 and
the mouth corner 48). The head-pose fit uses it to follow the silhouette of a turned head (landmark marching), the
geometric engine's surface to fill the cheeks and temples.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["EYE_LEFT_68", "EYE_RIGHT_68", "JAW_68", "MIRROR_68", "RAW_MEANSHAPE_68", "RAW_SHA256", "SideSection",
           "raw_shape", "reference_shape", "side_sections", "silhouette_points"]

MIRROR_68: tuple[int, ...] = (
    16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0,  # jaw 0-16
    26, 25, 24, 23, 22, 21, 20, 19, 18, 17,  # brows 17-26
    27, 28, 29, 30,  # nose bridge 27-30
    35, 34, 33, 32, 31,  # lower nose 31-35
    45, 44, 43, 42, 47, 46,  # image-left eye 36-41
    39, 38, 37, 36, 41, 40,  # image-right eye 42-47
    54, 53, 52, 51, 50, 49, 48,  # outer lips 48-54
    59, 58, 57, 56, 55,  # outer lips 55-59
    64, 63, 62, 61, 60,  # inner lips 60-64
    67, 66, 65,  # inner lips 65-67
)
"""Index of each point after a horizontal flip (an involution; reference §2)."""

JAW_68 = tuple(range(17))
"""Jaw contour, image left (0) → chin (8) → image right (16)."""
EYE_LEFT_68 = tuple(range(36, 42))
"""The image-left eye (the subject's right eye)."""
EYE_RIGHT_68 = tuple(range(42, 48))
"""The image-right eye (the subject's left eye)."""

RAW_SHA256 = "f53c32128fac78473487d1ae320d76fe2739d19060c1841727b594aa528cb16d"
"""sha256 of ``RAW_MEANSHAPE_68`` as float32 bytes (C order)."""

RAW_MEANSHAPE_68: tuple[tuple[float, float, float], ...] = (
    (-0.6266950368881226, -0.2926996946334839, -0.3140018582344055),  # 0
    (-0.5996649265289307, -0.12250272184610367, -0.2924409508705139),  # 1
    (-0.571026086807251, 0.05118739977478981, -0.2549465000629425),  # 2
    (-0.5338566899299622, 0.21284838020801544, -0.1866333782672882),  # 3
    (-0.4797332286834717, 0.3506459593772888, -0.047699932008981705),  # 4
    (-0.3957556486129761, 0.4465116560459137, 0.07328663021326065),  # 5
    (-0.29880842566490173, 0.5106605887413025, 0.17977793514728546),  # 6
    (-0.18838681280612946, 0.554440438747406, 0.3166600465774536),  # 7
    (0.0014708322705700994, 0.584439218044281, 0.38841578364372253),  # 8
    (0.19099053740501404, 0.5517070889472961, 0.31433114409446716),  # 9
    (0.3269285559654236, 0.48957568407058716, 0.16839952766895294),  # 10
    (0.4400261342525482, 0.4023579955101013, 0.03596242889761925),  # 11
    (0.5068787336349487, 0.3116249442100525, -0.09476063400506973),  # 12
    (0.540894627571106, 0.20452618598937988, -0.20267142355442047),  # 13
    (0.574118435382843, 0.04570329561829567, -0.2841764986515045),  # 14
    (0.5991416573524475, -0.14585931599140167, -0.296495646238327),  # 15
    (0.6275436282157898, -0.30774804949760437, -0.30199483036994934),  # 16
    (-0.47466811537742615, -0.4376046359539032, 0.23648710548877716),  # 17
    (-0.4166599214076996, -0.4717560112476349, 0.3159925639629364),  # 18
    (-0.3475387990474701, -0.4840780198574066, 0.366113543510437),  # 19
    (-0.26063987612724304, -0.4763909876346588, 0.3992317318916321),  # 20
    (-0.16712301969528198, -0.45777544379234314, 0.4166091978549957),  # 21
    (0.1231740415096283, -0.45874011516571045, 0.4250619411468506),  # 22
    (0.2063615769147873, -0.4804193377494812, 0.41578391194343567),  # 23
    (0.28667303919792175, -0.4901494085788727, 0.3919537663459778),  # 24
    (0.3623969256877899, -0.4768601655960083, 0.3527863025665283),  # 25
    (0.425568163394928, -0.4500580430030823, 0.2953187823295593),  # 26
    (-0.007627937477082014, -0.3230886459350586, 0.46194377541542053),  # 27
    (-0.007876846939325333, -0.255738765001297, 0.5104694366455078),  # 28
    (-0.007687545381486416, -0.19917990267276764, 0.5525456666946411),  # 29
    (-0.007345120422542095, -0.14261691272258759, 0.5986667275428772),  # 30
    (-0.144961878657341, 0.033126939088106155, 0.4196909964084625),  # 31
    (-0.08434253931045532, 0.03127360716462135, 0.4731740951538086),  # 32
    (-0.005499685648828745, 0.03975145146250725, 0.5146695971488953),  # 33
    (0.06346292793750763, 0.04613516479730606, 0.4792240560054779),  # 34
    (0.13398391008377075, 0.02204025723040104, 0.41907867789268494),  # 35
    (-0.38675081729888916, -0.3133975565433502, 0.259631872177124),  # 36
    (-0.3166607916355133, -0.35007160902023315, 0.3285270035266876),  # 37
    (-0.2341379076242447, -0.35491427779197693, 0.3334933817386627),  # 38
    (-0.15516234934329987, -0.31524932384490967, 0.3143281042575836),  # 39
    (-0.23092176020145416, -0.28427040576934814, 0.3255828619003296),  # 40
    (-0.3175090253353119, -0.28516536951065063, 0.3098825216293335),  # 41
    (0.13895708322525024, -0.30982404947280884, 0.3182835876941681),  # 42
    (0.21945592761039734, -0.35319215059280396, 0.33802759647369385),  # 43
    (0.30174651741981506, -0.349665105342865, 0.333102285861969),  # 44
    (0.37665316462516785, -0.31351813673973083, 0.26322856545448303),  # 45
    (0.2966947853565216, -0.2871439754962921, 0.3220130503177643),  # 46
    (0.21462441980838776, -0.2905276417732239, 0.33124178647994995),  # 47
    (-0.20143844187259674, 0.23736143112182617, 0.37953662872314453),  # 48
    (-0.13732077181339264, 0.18578563630580902, 0.46525245904922485),  # 49
    (-0.07648587226867676, 0.15119342505931854, 0.5035716891288757),  # 50
    (-0.002535885199904442, 0.16872699558734894, 0.5164376497268677),  # 51
    (0.06442102789878845, 0.15088020265102386, 0.5045241117477417),  # 52
    (0.126465305685997, 0.17947596311569214, 0.4685916602611542),  # 53
    (0.21824784576892853, 0.23899227380752563, 0.37567368149757385),  # 54
    (0.13288259506225586, 0.28392839431762695, 0.4400508999824524),  # 55
    (0.06802233308553696, 0.2973543107509613, 0.4774041771888733),  # 56
    (-0.0004690653004217893, 0.30004069209098816, 0.4871094226837158),  # 57
    (-0.06934267282485962, 0.29696860909461975, 0.4805404841899872),  # 58
    (-0.14252015948295593, 0.2743033170700073, 0.43808019161224365),  # 59
    (-0.1781347393989563, 0.23059049248695374, 0.3963589668273926),  # 60
    (-0.07403063774108887, 0.2147187888622284, 0.4653262794017792),  # 61
    (-0.002636224264279008, 0.21414154767990112, 0.4832296073436737),  # 62
    (0.05981616675853729, 0.21076396107673645, 0.47224411368370056),  # 63
    (0.16690002381801605, 0.23127099871635437, 0.396789014339447),  # 64
    (0.059809282422065735, 0.22376428544521332, 0.46641337871551514),  # 65
    (-0.0014343614457175136, 0.2257590889930725, 0.4752439558506012),  # 66
    (-0.07522077113389969, 0.23065608739852905, 0.4671475291252136),  # 67
)
"""insightface's mean shape, verbatim (x right, y down, z towards the viewer)."""


def raw_shape() -> np.ndarray:
    """insightface's mean shape as a (68, 3) float32 array (its own axes, see the module docstring)."""
    return np.asarray(RAW_MEANSHAPE_68, dtype=np.float32)


def raw_sha256() -> str:
    """sha256 of :func:`raw_shape`'s bytes (equals :data:`RAW_SHA256` unless the table was edited)."""
    return hashlib.sha256(raw_shape().tobytes()).hexdigest()


@lru_cache(maxsize=1)
def _reference() -> np.ndarray:
    shape = raw_shape().astype(np.float64) * np.array([1.0, 1.0, -1.0])  # z towards the viewer → into the screen
    shape[:, 0] -= shape[:, 0].mean()  # the mirror map is a bijection, so the mean x is the midline
    mirrored = shape[list(MIRROR_68)] * np.array([-1.0, 1.0, 1.0])
    symmetric = (shape + mirrored) / 2.0
    eye_left = symmetric[list(EYE_LEFT_68)].mean(axis=0)
    eye_right = symmetric[list(EYE_RIGHT_68)].mean(axis=0)
    symmetric -= (eye_left + eye_right) / 2.0
    symmetric /= float(np.linalg.norm(eye_right - eye_left))
    symmetric.setflags(write=False)
    return symmetric


def reference_shape() -> np.ndarray:
    """The symmetrised mean shape in the project's frame, (68, 3) float64, read-only.

    x right, y down, z into the screen (LivePortrait's keypoint frame); origin at the midpoint of the eye centres
    (means of points 36–41 and 42–47), z = 0 at their depth; eye-centre distance 1. Mirror partners satisfy
    ``shape[MIRROR_68[i]] == shape[i] * (-1, 1, 1)`` exactly.
    """
    return _reference()


_SIDE_CONTOUR = (0, 1, 2, 3, 4)
_SIDE_FRONT = (17, 36, 31, 48)  # outer brow end, outer eye corner, nose wing, mouth corner (image left)


@dataclass(frozen=True)
class SideSection:
    """Horizontal head section at the height of an upper contour point (module docstring), image-left side.

    Points are ``(−half_width·cos φ, height, depth − depth_axis·sin φ)`` for φ in [0, front_angle]: φ = 0 is the
    contour point, φ = front_angle the lateral front point. The image-right side is the mirror (x → −x).

    Attributes:
        index: the contour point (0–4); its mirror is ``MIRROR_68[index]``.
        height: y of the section.
        half_width: the ellipse's half-width (|x| of the contour point).
        depth: z of the contour point (the ellipse's centre depth).
        depth_axis: the ellipse's semi-axis along z.
        front_angle: φ of the lateral front point, radians.
    """

    index: int
    height: float
    half_width: float
    depth: float
    depth_axis: float
    front_angle: float

    def point(self, phi: float, side: int = -1) -> np.ndarray:
        """(3,) point at angle φ on the image-left (side −1) or image-right (+1) half."""
        return np.array([side * self.half_width * math.cos(phi), self.height,
                         self.depth - self.depth_axis * math.sin(phi)])


@lru_cache(maxsize=1)
def side_sections() -> tuple[SideSection, ...]:
    """The head sections of contour points 0–4 (module docstring), from :func:`reference_shape`."""
    shape = reference_shape()
    front = shape[list(_SIDE_FRONT)]
    order = np.argsort(front[:, 1])
    sections = []
    for index in _SIDE_CONTOUR:
        contour = shape[index]
        half_width = abs(float(contour[0]))
        front_x = float(np.interp(contour[1], front[order, 1], np.abs(front[order, 0])))
        front_z = float(np.interp(contour[1], front[order, 1], front[order, 2]))
        front_angle = math.acos(min(front_x / half_width, 1.0))
        depth_axis = (float(contour[2]) - front_z) / math.sin(front_angle)
        sections.append(SideSection(index, float(contour[1]), half_width, float(contour[2]), depth_axis, front_angle))
    return tuple(sections)


def silhouette_points(rotation: np.ndarray) -> dict[int, np.ndarray]:
    """Where the upper contour points of a head turned by ``rotation`` lie on its silhouette (landmark marching).

    A 300-W landmarker puts the contour on the visible outline, which on the side the head turns away from is no
    longer the frontal contour point but the point of the head section whose surface the line of sight grazes:
    ``tan φ = (depth_axis · d_x) / (side · half_width · d_z)`` for the model-frame viewing direction d = R₃ (the third
    row of the column-vector rotation), clamped to [0, front_angle]. On the side turned towards the camera the
    contour points stay where they are.

    Args:
        rotation: (3, 3) model → camera rotation (column vectors).

    Returns:
        ``{contour index: (3,) model point}`` for the contour points of the turned-away side (empty when frontal).
    """
    view = np.asarray(rotation, dtype=np.float64)[2]
    moved: dict[int, np.ndarray] = {}
    for section in side_sections():
        for side, index in ((-1, section.index), (1, MIRROR_68[section.index])):
            tangent = section.depth_axis * view[0] / (side * section.half_width * max(view[2], 1e-6))
            if tangent <= 0.0:
                continue
            moved[index] = section.point(min(math.atan(tangent), section.front_angle), side)
    return moved
