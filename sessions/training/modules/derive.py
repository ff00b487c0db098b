"""Derive the shipped modules' reference geometry from the real meshes, and write the modules and
their scripted trainees.

    .venv/bin/python sessions/training/modules/derive.py        # rewrites modules/*.json and scripts/*.json

Every number in the shipped modules comes from here, computed on the bundled twins ``brain-aal`` and
``skull`` (``assets.library``), so a reviewer can re-derive them and ``tests/sessions/training/
test_modules.py`` checks the shipped numbers against the meshes. How each reference is found:

- **gyrus landmark** (brain-aal): the structure's centroid is pushed 80 mm outwards from the centre of
  the brain; the reference is the structure's vertex nearest that outside point, i.e. the point of its
  outer (cortical) face straight out from its middle.
- **basal-ganglia section** (brain-aal): the axial plane (normal +z) through the mean of the centroids of
  Caudate_L/R and Thalamus_L/R, the level at which an axial CT or MR shows the caudate heads, the
  thalami and between them the bodies of the lateral ventricles (AAL has no ventricles).
- **craniometric landmarks** (skull), on the bone's vertices; the midsagittal plane is x = the middle of
  the skull's bounding box. The anterior profile is the most anterior vertex in each 1 mm level of the
  4 mm-wide midline band. *Rhinion*: the most anterior point of the profile above the nasal aperture
  (the tip of the nasal bones). *Glabella*: the most anterior point of the profile 15-55 mm above the
  rhinion. *Nasion*: the most posterior point of the profile between rhinion and glabella (the
  frontonasal concavity); both on the profile's 3-level running median. *Orbitale* (left): in a depth map of the face seen
  from the front (the most anterior vertex per 1 mm x-z cell), the left orbit is the cells more than
  15 mm deeper than the nasion around the deepest cell lateral of the nasion; for each column of the
  orbit the rim below it is the first shallow cell under it, and orbitale is the rim's lowest point.
  *Zygion* (left): the most lateral vertex between 25 mm below and 5 mm above orbitale, in front of the
  skull's middle (the zygomatic arch). The scan ends at the upper teeth, so menton and gonion (on the
  body and angle of the mandible) are not in it; the module says so.
- **inferior alveolar nerve block** (skull): ``assets.skull.ramus_geometry`` (foramen, nerve line,
  target on the medial face of the left ramus, needle entry 25 mm antero-medial); the nerve structure
  of the twin is a tube along that line.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SCRIPTS = HERE.parent / "scripts"
if __name__ == "__main__":  # run as a file: the repository root on the path
    sys.path.insert(0, str(HERE.parents[2]))

from assets.twin import Twin  # noqa: E402 - after the path set-up above

log = logging.getLogger(__name__)

#: Gyri with a landmark in the brain-landmarks module (all on the lateral convexity of the left hemisphere).
GYRI = ("Precentral_L", "Postcentral_L", "Frontal_Mid_L", "Temporal_Sup_L")
SECTION_SHOWS = ("Caudate_L", "Caudate_R", "Thalamus_L", "Thalamus_R")
NEEDLE_MM = 40.0


def _mm(vertices: np.ndarray) -> np.ndarray:
    return np.asarray(vertices, dtype=np.float64) * 1000.0


def _r(p: Any, digits: int = 2) -> list[float]:
    return [round(float(c), digits) for c in np.asarray(p).reshape(-1)]


# --- brain-aal --------------------------------------------------------------------------------------


def gyrus_point(twin: Twin, name: str) -> np.ndarray:
    """The vertex of ``name``'s outer face straight out from its centroid (see the module docstring)."""
    centre = twin.bounds().mean(axis=0) * 1000.0
    v = _mm(twin.structure(name).vertices)
    centroid = v.mean(axis=0)
    out = centroid - centre
    outside = centroid + 80.0 * out / np.linalg.norm(out)
    point: np.ndarray = v[np.argmin(np.linalg.norm(v - outside, axis=1))]
    return point


def basal_section(twin: Twin) -> tuple[np.ndarray, np.ndarray]:
    """(point, normal) of the axial plane through the caudate nuclei and thalami."""
    centroids = np.array([_mm(twin.structure(n).vertices).mean(axis=0) for n in SECTION_SHOWS])
    return centroids.mean(axis=0), np.array([0.0, 0.0, 1.0])


# --- skull ------------------------------------------------------------------------------------------


def _profile(v: np.ndarray, mid_x: float) -> dict[int, np.ndarray]:
    """Most anterior vertex per 1 mm level of the midline band (4 mm wide); a level whose front lies
    more than 5 mm behind both neighbours' (a gap between the simplified mesh's vertices) is left out."""
    band = v[np.abs(v[:, 0] - mid_x) < 2.0]
    levels: dict[int, np.ndarray] = {}
    for z in range(int(np.floor(band[:, 2].min())), int(np.ceil(band[:, 2].max()))):
        b = band[(band[:, 2] >= z) & (band[:, 2] < z + 1)]
        if len(b):
            levels[z] = b[np.argmax(b[:, 1])]
    return {z: p for z, p in levels.items()
            if not (z - 1 in levels and z + 1 in levels
                    and p[1] < min(levels[z - 1][1], levels[z + 1][1]) - 5.0)}


def skull_landmarks(twin: Twin) -> dict[str, np.ndarray]:
    """Rhinion, nasion, glabella, orbitale (left) and zygion (left) on the skull (twin mm)."""
    v = _mm(twin.structure("skull").vertices)
    lo, hi = v.min(axis=0), v.max(axis=0)
    mid = (lo + hi) / 2.0
    profile = _profile(v, float(mid[0]))
    zs = np.array(sorted(profile))
    ys = np.array([profile[z][1] for z in zs])
    # The nasal aperture: the deepest dip of the profile in the lower half of the face.
    lower = (zs > lo[2] + 15) & (zs < mid[2])
    aperture = zs[lower][np.argmin(ys[lower])]
    above = zs > aperture
    rhinion_z = zs[above & (zs < aperture + 35)][np.argmax(ys[above & (zs < aperture + 35)])]
    # A 3-level running median: one level whose front vertex fell in a gap of the mesh does not count.
    smooth = np.array([np.median(ys[max(i - 1, 0):i + 2]) for i in range(len(ys))])
    # Glabella: the forehead's most anterior point 15-55 mm above the rhinion; nasion: the deepest
    # point of the concavity between them.
    window = (zs > rhinion_z + 15) & (zs < rhinion_z + 55)
    glabella_z = zs[window][np.argmax(smooth[window])]
    window = (zs > rhinion_z + 5) & (zs < glabella_z)
    nasion_z = zs[window][np.argmin(smooth[window])]
    nasion = profile[int(nasion_z)]

    # Depth map of the face from the front: most anterior y per 1 mm (x, z) cell.
    face = v[(v[:, 2] > nasion[2] - 45) & (v[:, 2] < nasion[2] + 15) & (v[:, 1] > mid[1])]
    xi = np.floor(face[:, 0]).astype(int)
    zi = np.floor(face[:, 2]).astype(int)
    depth: dict[tuple[int, int], int] = {}
    for k in np.argsort(face[:, 1]):  # ascending y: the last written is the most anterior
        depth[(xi[k], zi[k])] = int(k)
    deep_limit = nasion[1] - 15.0
    cells = {c: face[k] for c, k in depth.items()}
    # Left orbit: cells left of the nasion, within 45 mm, in the band of the nasion level, deeper than the limit.
    orbit = [c for c, p in cells.items() if -45 < c[0] - nasion[0] < -12 and -30 < c[1] - nasion[2] < 12
             and p[1] < deep_limit]
    if not orbit:
        raise ValueError("no left orbit found in the skull's face")
    orbit_set = set(orbit)
    rims = []
    for x in sorted({c[0] for c in orbit}):
        column = sorted(c[1] for c in orbit if c[0] == x)
        bottom = column[0]
        below = cells.get((x, bottom - 1))
        if below is not None and below[1] >= deep_limit and (x, bottom - 1) not in orbit_set:
            rims.append(below)
    # the orbit's lateral and medial ends are walls, not the floor: keep the middle 60 % of its width
    xs = sorted(p[0] for p in rims)
    lo_x, hi_x = xs[int(0.2 * len(xs))], xs[int(0.8 * len(xs)) - 1]
    floor = [p for p in rims if lo_x <= p[0] <= hi_x]
    orbitale = min(floor, key=lambda p: p[2])

    arch = v[(v[:, 2] > orbitale[2] - 25) & (v[:, 2] < orbitale[2] + 5) & (v[:, 1] > mid[1])]
    zygion = arch[np.argmin(arch[:, 0])]  # the patient's left is -x
    return {
        "rhinion": profile[int(rhinion_z)],
        "nasion": nasion,
        "glabella": profile[int(glabella_z)],
        "orbitale": orbitale,
        "zygion": zygion,
    }


# --- writing ----------------------------------------------------------------------------------------

HEAD_FRONT = {"position": [0.0, 0.1, 0.5], "look_at": [0.0, 0.0, 0.0]}


def _script(description: str, keyframes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version": 1, "description": description, "keyframes": keyframes}


def _press(t: float, aim: dict[str, Any], name: str | None = None, tool: str | None = None,
           head: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Aim, pull the trigger and let go: three keyframes 0.2 s, 0.1 s apart."""
    first: dict[str, Any] = {"t": round(t, 3), "aim": aim}
    if tool:
        first["tool"] = {"right": tool}
    if head:
        first["head"] = head
    last: dict[str, Any] = {"t": round(t + 0.3, 3), "aim": aim, "right": {"trigger": 0.0}}
    if name:
        last["name"] = name
    return [first, {"t": round(t + 0.2, 3), "aim": aim, "right": {"trigger": 1.0}}, last]


def _nearby_vertex(v: np.ndarray, point: np.ndarray, distance: float, direction: np.ndarray) -> np.ndarray:
    """A vertex about ``distance`` mm from ``point``, towards ``direction`` (a trainee's miss), on the
    same outer face as ``point`` (not sunk behind it, seen from outside the twin's centre)."""
    outward = point - (v.min(axis=0) + v.max(axis=0)) / 2.0
    outward /= np.linalg.norm(outward)
    d = np.linalg.norm(v - point, axis=1)
    outer = (v - point) @ outward > -0.3 * distance
    width = 0.6
    ring = v[outer & (np.abs(d - distance) < width)]
    while len(ring) == 0:
        width *= 1.5
        ring = v[outer & (np.abs(d - distance) < width)]
    pick: np.ndarray = ring[np.argmax((ring - point) @ direction)]
    return pick


def write_brain_modules(twin: Twin) -> list[Path]:
    written = []
    head_left = {"position_mm": [-380.0, 40.0, 260.0], "look_at_mm": [-40.0, -10.0, 40.0]}
    # a) identify the central gyri
    module = {
        "schema": "medverse.module/1", "id": "brain-central-gyri", "title": "Identify the central gyri",
        "twin": "brain-aal",
        "description": ("The precentral gyrus (primary motor cortex) lies in front of the central sulcus, the "
                        "postcentral gyrus (primary somatosensory cortex) behind it. Regions from the AAL atlas "
                        "in MNI space."),
        "script": "brain-central-gyri-pass.json",
        "steps": [
            {"id": "precentral-left", "title": "Left precentral gyrus",
             "instructions": "Select the left precentral gyrus (primary motor cortex).",
             "hints": ["It lies just in front of the central sulcus.",
                       "Follow the superior frontal gyrus back until it meets a gyrus running across it."],
             "time_limit_s": 60, "watch": ["wrong_structure", "out_of_order", "timeout"],
             "target": {"kind": "select", "structure": "Precentral_L"}},
            {"id": "postcentral-left", "title": "Left postcentral gyrus",
             "instructions": "Select the left postcentral gyrus (primary somatosensory cortex).",
             "hints": ["It lies just behind the central sulcus, parallel to the precentral gyrus."],
             "time_limit_s": 60, "watch": ["wrong_structure", "out_of_order", "timeout"],
             "target": {"kind": "select", "structure": "Postcentral_L"}},
            {"id": "precentral-right", "title": "Right precentral gyrus",
             "instructions": "Now the right precentral gyrus: the motor cortex of the left side of the body.",
             "hints": ["The same gyrus on the other hemisphere (x > 0 in MNI space)."],
             "time_limit_s": 60, "watch": ["wrong_structure", "timeout"],
             "target": {"kind": "select", "structure": "Precentral_R"}},
        ],
    }
    head_top = {"position_mm": [0.0, -20.0, 420.0], "look_at_mm": [0.0, -15.0, 40.0]}
    pass_kf = (_press(0.0, {"hand": "right", "at": "Precentral_L"}, "precentral", "select", head_top)
               + _press(0.6, {"hand": "right", "at": "Postcentral_L"}, "postcentral")
               + _press(1.2, {"hand": "right", "at": "Precentral_R"}, "precentral-right"))
    fail_kf = (_press(0.0, {"hand": "right", "at": "Postcentral_L"}, "wrong-1", "select", head_top)
               + _press(0.6, {"hand": "right", "at": "Frontal_Sup_L"}, "wrong-2")
               + _press(1.2, {"hand": "right", "at": "Parietal_Sup_L"}, "wrong-3"))
    written += _write(module, {
        "brain-central-gyri-pass.json": _script("Selects the left precentral, left postcentral and right precentral "
                                                "gyri in order.", pass_kf),
        "brain-central-gyri-fail.json": _script("Confuses the central gyri: postcentral for precentral, then the "
                                                "superior frontal and superior parietal gyri.", fail_kf),
    })

    # b) landmarks on named gyri
    points = {name: gyrus_point(twin, name) for name in GYRI}
    steps = []
    for name in GYRI:
        label = {"Precentral_L": "precentral gyrus", "Postcentral_L": "postcentral gyrus",
                 "Frontal_Mid_L": "middle frontal gyrus", "Temporal_Sup_L": "superior temporal gyrus"}[name]
        steps.append({"id": name.lower().replace("_", "-"), "title": f"Left {label}",
                      "instructions": f"Place a landmark on the crown of the left {label}, in the middle of its length.",
                      "hints": [f"The {label} is coloured; aim at the middle of its outer surface."],
                      "time_limit_s": 60,
                      "target": {"kind": "landmark", "point_mm": _r(points[name]), "tolerance_mm": 8.0,
                                 "tolerance_floor_mm": 4.0, "structure": name, "label": label}})
    module = {"schema": "medverse.module/1", "id": "brain-gyri-landmarks", "title": "Landmarks on named gyri",
              "twin": "brain-aal",
              "description": ("Mark four gyri of the left hemisphere's lateral surface. Each reference point is the "
                              "point of the gyrus's outer surface straight out from its middle (derived from the AAL "
                              "mesh by sessions/training/modules/derive.py)."),
              "script": "brain-gyri-landmarks-pass.json", "steps": steps}
    v_all = np.concatenate([_mm(s.vertices) for s in twin.structures])
    pass_kf, fail_kf = [], []
    for i, name in enumerate(GYRI):
        head = head_left if i == 0 else None
        pass_kf += _press(0.6 * i, {"hand": "right", "at_point": _r(points[name])}, name, "landmark" if i == 0 else None,
                          head)
        miss = _nearby_vertex(v_all, points[name], 18.0, np.array([0.0, 0.0, 1.0]))
        fail_kf += _press(0.6 * i, {"hand": "right", "at_point": _r(miss)}, name, "landmark" if i == 0 else None, head)
    written += _write(module, {
        "brain-gyri-landmarks-pass.json": _script("Places each landmark on its reference point.", pass_kf),
        "brain-gyri-landmarks-fail.json": _script("Places each landmark about 18 mm above its reference point.",
                                                  fail_kf),
    })

    # c) the basal-ganglia section
    point, normal = basal_section(twin)
    module = {"schema": "medverse.module/1", "id": "brain-basal-ganglia-section",
              "title": "Axial section at the level of the lateral ventricles",
              "twin": "brain-aal",
              "description": ("Cut the axial plane that a CT or MR of the head uses to show the bodies of the lateral "
                              "ventricles with the caudate heads in their walls and the thalami behind. The AAL atlas "
                              "has no ventricles, so the plane is checked by what it cuts: both caudate nuclei and "
                              "both thalami."),
              "script": "brain-basal-ganglia-section-pass.json",
              "steps": [{"id": "axial-ventricles", "title": "Axial cut through the basal ganglia",
                         "instructions": ("Cut an axial (horizontal) section that passes through both caudate nuclei "
                                          "and both thalami: the level of the lateral ventricles' bodies."),
                         "hints": ["Hold the cutting plane level, about 1 cm above the line from the front to the "
                                   "back of the temporal lobes."],
                         "time_limit_s": 90,
                         "target": {"kind": "section", "point_mm": _r(point), "normal": _r(normal, 3),
                                    "angle_tolerance_deg": 12.0, "offset_tolerance_mm": 6.0,
                                    "angle_tolerance_floor_deg": 6.0, "offset_tolerance_floor_mm": 3.0,
                                    "shows": list(SECTION_SHOWS)}}]}
    written += _write(module, {
        "brain-basal-ganglia-section-pass.json": _section_script(point, normal, "Cuts the axial plane through the "
                                                                 "caudate nuclei and thalami."),
        "brain-basal-ganglia-section-fail.json": _section_script(point + np.array([0.0, 0.0, 30.0]),
                                                                 np.array([0.0, 0.5, 0.866]),
                                                                 "Cuts 30 mm too high and tilted 30 degrees: above "
                                                                 "the thalami."),
    })
    return written


def _section_script(point: np.ndarray, normal: np.ndarray, description: str) -> dict[str, Any]:
    n = normal / np.linalg.norm(normal)
    hand = {"position_mm": _r(point), "look_at_mm": _r(point + 60.0 * n)}
    return _script(description, [
        {"t": 0.0, "name": "start", "head": {"position_mm": [-300.0, 60.0, 200.0], "look_at_mm": _r(point)},
         "tool": {"right": "section"}, "right": dict(hand)},
        {"t": 0.2, "right": dict(hand, trigger=1.0)},
        {"t": 0.5, "right": dict(hand, trigger=1.0)},
        {"t": 0.6, "name": "cut", "right": dict(hand, trigger=0.0)},
    ])


def write_skull_modules(twin: Twin) -> list[Path]:
    from assets.skull import NERVE_NAME, ramus_geometry  # noqa: PLC0415 - the skull's own derivation

    written = []
    marks = skull_landmarks(twin)
    names = {"nasion": "Nasion", "orbitale": "Orbitale (left)", "glabella": "Glabella", "rhinion": "Rhinion",
             "zygion": "Zygion (left)"}
    what = {"nasion": "the deepest point of the frontonasal concavity in the midline",
            "orbitale": "the lowest point of the left infraorbital margin",
            "glabella": "the most prominent point of the forehead between the brows, in the midline",
            "rhinion": "the lower end of the nasal bones in the midline",
            "zygion": "the most lateral point of the left zygomatic arch"}
    order = ("nasion", "orbitale", "glabella", "rhinion", "zygion")
    steps = [{"id": key, "title": names[key], "instructions": f"Place {names[key]}: {what[key]}.",
              "hints": [f"{names[key]} is {what[key]}."], "time_limit_s": 60,
              "target": {"kind": "landmark", "point_mm": _r(marks[key]), "tolerance_mm": 4.0,
                         "tolerance_floor_mm": 2.0, "structure": "skull", "label": names[key]}}
             for key in order]
    module = {"schema": "medverse.module/1", "id": "skull-craniometric-landmarks",
              "title": "Craniometric landmarks on a CT skull",
              "twin": "skull",
              "description": ("Place five craniometric landmarks used in cephalometric analysis on the bony skull of a "
                              "CT head. The scan ends at the upper teeth, so menton and gonion (on the mandible's body "
                              "and angle) are not in it; nasion and orbitale (the Frankfort plane's anterior point) "
                              "are, with glabella, rhinion and zygion. Tolerance 4 mm, as a teacher marks by hand."),
              "script": "skull-craniometric-landmarks-pass.json", "steps": steps}
    v = _mm(twin.structure("skull").vertices)
    head = {"position_mm": [-120.0, 420.0, 60.0], "look_at_mm": [-10.0, 60.0, -10.0]}

    def attempt(miss_mm: float, description: str, retry_mm: float | None = None) -> dict[str, Any]:
        """Each landmark placed ``miss_mm`` off; with ``retry_mm``, placed again that far off after the
        miss (a beginner who is told "outside tolerance" and tries again)."""
        kf: list[dict[str, Any]] = []
        t = 0.0
        for i, key in enumerate(order):
            tries = [miss_mm] if retry_mm is None else [miss_mm, retry_mm]
            for k, miss in enumerate(tries):
                target = marks[key] if miss == 0 else _nearby_vertex(v, marks[key], miss, np.array([0.3, 0.0, 1.0]))
                name = key if k == len(tries) - 1 else f"{key}-missed"
                first = i == 0 and k == 0
                kf += _press(t, {"hand": "right", "at_point": _r(target)}, name, "landmark" if first else None,
                             head if first else None)
                t += 0.6
        return _script(description, kf)

    written += _write(module, {
        "skull-craniometric-landmarks-pass.json": attempt(0.0, "Places every landmark on its reference point."),
        "skull-craniometric-landmarks-fail.json": attempt(9.0, "Places every landmark about 9 mm off."),
        # the demo's three attempts, getting better
        "skull-craniometric-landmarks-attempt1.json": attempt(6.0, "First attempt: each landmark about 6 mm off, "
                                                              "then again about 3.5 mm off (fails the pass mark).",
                                                              retry_mm=3.5),
        "skull-craniometric-landmarks-attempt2.json": attempt(2.0, "Second attempt: about 2 mm off (passes)."),
        "skull-craniometric-landmarks-attempt3.json": attempt(0.8, "Third attempt: within about a millimetre."),
    })

    # e) inferior alveolar nerve block
    ramus = ramus_geometry(v, twin.structure("skull").faces)
    target, entry = ramus.target_mm, ramus.entry_mm
    module = {"schema": "medverse.module/1", "id": "skull-ianb", "title": "Inferior alveolar nerve block (left)",
              "twin": "skull",
              "description": ("Ordered steps of a direct inferior alveolar nerve block on the left: identify the nerve, "
                              "mark the mandibular foramen region on the medial face of the ramus, then bring the "
                              "needle from over the opposite premolars to bone just anterior and above the foramen "
                              "without touching the nerve. The nerve is a TEACHING APPROXIMATION derived from the bone's "
                              "geometry (assets/skull.py, ramus_geometry), not imaged."),
              "script": "skull-ianb-pass.json",
              "steps": [
                  {"id": "nerve", "title": "Identify the nerve",
                   "instructions": "Select the inferior alveolar nerve where it enters the left ramus.",
                   "hints": ["The yellow tube on the inner face of the left ramus."], "time_limit_s": 60,
                   "target": {"kind": "select", "structure": NERVE_NAME}},
                  {"id": "foramen", "title": "Mandibular foramen",
                   "instructions": "Mark the mandibular foramen region on the inner (medial) face of the left ramus.",
                   "hints": ["Where the nerve meets the bone, about halfway across the ramus."], "time_limit_s": 60,
                   "target": {"kind": "landmark", "point_mm": _r(ramus.foramen_mm), "tolerance_mm": 5.0,
                              "tolerance_floor_mm": 3.0, "structure": "skull", "label": "mandibular foramen"}},
                  {"id": "needle", "title": "Needle to bone",
                   "instructions": ("Advance the needle from over the right premolars to bone on the inner face of the "
                                    "left ramus, just in front of and above the foramen. Do not touch the nerve."),
                   "hints": ["Keep the barrel over the opposite premolars; stop when you touch bone."],
                   "time_limit_s": 120, "watch": ["no_go_contact", "off_path", "timeout"],
                   "target": {"kind": "instrument",
                              "instrument": {"name": "needle", "length_mm": NEEDLE_MM, "hand": "right"},
                              "target_mm": _r(target), "tolerance_mm": 4.0, "tolerance_floor_mm": 2.0,
                              "path_mm": [_r(entry), _r(target)], "path_tolerance_mm": 8.0,
                              "no_go": [NERVE_NAME], "no_go_margin_mm": 2.0}},
              ]}
    low_head = {"position_mm": [120.0, 260.0, -160.0], "look_at_mm": _r(target)}
    nerve_mid = ramus.nerve_mm[len(ramus.nerve_mm) // 3]

    def ianb(needle_to: np.ndarray, foramen: np.ndarray, select: str, description: str) -> dict[str, Any]:
        foramen_hand = {"position_mm": _r(foramen + np.array([90.0, 90.0, -130.0])), "look_at_mm": _r(foramen)}
        kf: list[dict[str, Any]] = [
            {"t": 0.0, "name": "start", "head": low_head, "tool": {"right": "select"},
             "aim": {"hand": "right", "at": select}},
            {"t": 0.2, "aim": {"hand": "right", "at": select}, "right": {"trigger": 1.0}},
            {"t": 0.3, "aim": {"hand": "right", "at": select}, "right": {"trigger": 0.0}},
            {"t": 0.5, "tool": {"right": "landmark"}, "right": dict(foramen_hand)},
            {"t": 0.7, "right": dict(foramen_hand, trigger=1.0)},
            {"t": 0.8, "name": "foramen", "right": dict(foramen_hand, trigger=0.0)},
        ]
        u = (needle_to - entry) / np.linalg.norm(needle_to - entry)
        for i, s in enumerate(np.linspace(-0.2, 1.0, 7)):
            tip = entry + s * (needle_to - entry)
            kf.append({"t": round(1.1 + 0.25 * i, 3), "right": {"position_mm": _r(tip - NEEDLE_MM * u),
                                                                "look_at_mm": _r(tip)}})
        kf[-1]["name"] = "needle"
        kf.append({"t": round(kf[-1]["t"] + 0.3, 3), "right": dict(kf[-1]["right"])})
        return _script(description, kf)

    written += _write(module, {
        "skull-ianb-pass.json": ianb(target, ramus.foramen_mm, NERVE_NAME,
                                     "Selects the nerve, marks the foramen, advances the needle along the path to bone."),
        "skull-ianb-fail.json": ianb(nerve_mid, ramus.foramen_mm, NERVE_NAME,
                                     "Selects the nerve and marks the foramen, then aims too far back and drives the "
                                     "needle into the nerve, never reaching the bone in front of it."),
    })
    return written


def _write(module: dict[str, Any], scripts: dict[str, dict[str, Any]]) -> list[Path]:
    SCRIPTS.mkdir(exist_ok=True)
    paths = [HERE / f"{module['id']}.json"]
    paths[0].write_text(json.dumps(module, indent=1) + "\n", encoding="utf-8")
    for name, doc in scripts.items():
        path = SCRIPTS / name
        path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def main() -> int:
    from assets.library import build  # noqa: PLC0415 - builds (or maps) the bundled twins

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    written = write_brain_modules(build("brain-aal")) + write_skull_modules(build("skull"))
    for path in written:
        log.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
