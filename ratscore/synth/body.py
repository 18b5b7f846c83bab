"""The synthetic rat's body: the pose vector the behaviours write, and the small 3-D skeleton it
bends (points, the primitives that draw them, the tail the label boxes leave out).
"""

from __future__ import annotations

import math

import numpy as np

TAU = 2.0 * math.pi

# ---------------------------------------------------------------------------------------------
# Pose vector. Lengths are in rat body lengths (nose to tail base), angles in radians.
FIELDS = (
    "speed",       # forward speed, body lengths / s
    "turn",        # turning rate, rad / s
    "wall",        # follow the chamber wall: sign = direction (+ counter-clockwise), size = weight
    "gait_amp",    # leg swing amplitude, 0..1 (also paddling while lying)
    "gait_freq",   # stride frequency, Hz
    "bend",        # lateral body curvature
    "twist",       # roll about the body axis (wet dog shakes)
    "head_yaw",
    "head_pitch",  # + = snout up
    "neck_ext",    # head pushed forward
    "jaw",         # mouth opening, 0..1
    "nose",        # snout tip offset (sniffing)
    "fl_l",        # left forelimb lift, 0 = on the floor, 1 = at the chin
    "fl_r",
    "fl_ext",      # forelimbs stretched rigidly forward, 0..1
    "hl_ext",      # hind limbs stretched rigidly backward, 0..1
    "rear",        # upright on the hind limbs, 0..1
    "roll",        # lying on the side, -1..1 (sign = side)
    "z",           # whole body lifted off the floor (jumps), body lengths
    "crouch",      # body lowered, 0..1
    "tail",        # tail curl
)
F = {name: i for i, name in enumerate(FIELDS)}
NF = len(FIELDS)


def _pose(**values) -> np.ndarray:
    p = np.zeros(NF)
    for k, v in values.items():
        p[F[k]] = v
    return p


# ---------------------------------------------------------------------------------------------
# The skeleton, in body coordinates (x forward, y left, z up; unit = body length).

_SPINE_X = np.array([-0.40, -0.30, -0.19, -0.08, 0.03, 0.13, 0.22])
_SPINE_R = np.array([0.10, 0.135, 0.15, 0.148, 0.138, 0.122, 0.10])
_BASE = np.zeros((37, 3))
_BASE[0:7, 0], _BASE[0:7, 2] = _SPINE_X, _SPINE_R * 0.95 + 0.01
_BASE[7] = (0.29, 0, 0.12)     # neck
_BASE[8] = (0.38, 0, 0.13)     # head
_BASE[9] = (0.46, 0, 0.115)    # snout
_BASE[10] = (0.53, 0, 0.10)    # snout tip
_BASE[11] = (0.565, 0, 0.095)  # nose
_BASE[12] = (0.47, 0, 0.075)   # lower jaw
_BASE[13], _BASE[14] = (0.35, 0.055, 0.19), (0.35, -0.055, 0.19)  # ears
_BASE[15], _BASE[16] = (0.43, 0.045, 0.15), (0.43, -0.045, 0.15)  # eyes
_BASE[17] = (0.36, 0, 0.21)    # head cap (dental cement)
_BASE[18] = (0.36, 0, 0.25)    # connector
_BASE[19] = (0.36, 0, 0.27)    # cable anchor
_BASE[20], _BASE[21] = (0.17, 0.07, 0.07), (0.17, -0.07, 0.07)    # shoulders
_BASE[24], _BASE[25] = (-0.28, 0.09, 0.07), (-0.28, -0.09, 0.07)  # hips
HEAD = slice(8, 20)
NECK_PIVOT = np.array([0.27, 0.0, 0.12])
HIP_PIVOT = np.array([-0.32, 0.0, 0.05])
TAIL_N = 9
TAIL_START = 28  # body point index of the tail's root; the tail's TAIL_N points follow it

# colour slots
FUR, PINK, EYE, CAP, PLUG, MOUTH = range(6)

# primitives: (kind 0 circle / 1 line, point a, point b, radius or thickness, colour)
_PRIMS = [(0, i, i, r, FUR) for i, r in enumerate(_SPINE_R)] + [
    (0, 7, 7, 0.085, FUR), (0, 8, 8, 0.078, FUR), (0, 9, 9, 0.058, FUR), (0, 10, 10, 0.035, FUR),
    (0, 11, 11, 0.016, PINK), (0, 12, 12, 0.03, MOUTH), (0, 13, 13, 0.032, PINK), (0, 14, 14, 0.032, PINK),
    (0, 15, 15, 0.013, EYE), (0, 16, 16, 0.013, EYE),
    (1, 20, 22, 0.045, FUR), (1, 21, 23, 0.045, FUR), (0, 22, 22, 0.022, PINK), (0, 23, 23, 0.022, PINK),
    (1, 24, 26, 0.055, FUR), (1, 25, 27, 0.055, FUR), (0, 26, 26, 0.025, PINK), (0, 27, 27, 0.025, PINK),
] + [(1, TAIL_START + i, TAIL_START + 1 + i, 0.035 - 0.0025 * i, PINK) for i in range(TAIL_N - 1)]
_CAP_PRIMS = [(0, 17, 17, 0.055, CAP), (0, 18, 18, 0.03, PLUG)]


def _without_tail(prims: np.ndarray) -> np.ndarray:
    """The primitives a label box bounds. The tail is drawn, but left out of the boxes, as the cable
    is: a line 1-2 px wide that the camera often cannot resolve (pink on a grey floor turns to the
    floor's grey in monochrome video), 0.85 body lengths long, so that a box that held it was
    stretched by a part no detector can see, and a crop around it made the body small."""
    is_tail = (prims[:, 0] == 1) & (prims[:, 1] >= TAIL_START)
    return prims[~is_tail]


def _rot_z(p, a, pivot):
    c, s = np.cos(a), np.sin(a)
    x, y = p[..., 0] - pivot[0], p[..., 1] - pivot[1]
    p[..., 0], p[..., 1] = pivot[0] + c * x - s * y, pivot[1] + s * x + c * y


def _rot_y(p, a, pivot):
    """Pitch: positive raises points ahead of the pivot."""
    c, s = np.cos(a), np.sin(a)
    x, z = p[..., 0] - pivot[0], p[..., 2] - pivot[2]
    p[..., 0], p[..., 2] = pivot[0] + c * x - s * z, pivot[2] + s * x + c * z


def _rot_x(p, a, pivot):
    c, s = np.cos(a), np.sin(a)
    y, z = p[..., 1] - pivot[1], p[..., 2] - pivot[2]
    p[..., 1], p[..., 2] = pivot[1] + c * y - s * z, pivot[2] + s * y + c * z


def body_points(p: np.ndarray, gait_phase: float) -> np.ndarray:
    """(37, 3) skeleton points in body coordinates for pose p."""
    pts = _BASE.copy()
    # head: opened jaw, sniffing nose, then pitch / yaw about the neck
    pts[12, 2] -= 0.05 * p[F["jaw"]]
    pts[12, 0] -= 0.01 * p[F["jaw"]]
    pts[10:12, 0] += p[F["nose"]]
    pts[HEAD, 0] += p[F["neck_ext"]]
    _rot_y(pts[HEAD], p[F["head_pitch"]], NECK_PIVOT)
    _rot_z(pts[HEAD], p[F["head_yaw"]], NECK_PIVOT)
    # limbs: gait swing, lift toward the chin, rigid extension
    amp = p[F["gait_amp"]]
    for k, (side, lift) in enumerate(((1, p[F["fl_l"]]), (-1, p[F["fl_r"]]))):
        ph = gait_phase + (0.0 if side > 0 else math.pi)
        paw = np.array([0.22 + 0.07 * amp * math.sin(ph), 0.075 * side, 0.015 + 0.03 * amp * max(0.0, math.cos(ph))])
        paw += lift * (np.array([0.30, 0.045 * side, 0.17]) - paw)
        paw += p[F["fl_ext"]] * (np.array([0.48, 0.14 * side, 0.03]) - paw)
        pts[22 + k] = paw
        ph_h = ph + math.pi
        hind = np.array([-0.22 + 0.07 * amp * math.sin(ph_h), 0.10 * side, 0.015 + 0.03 * amp * max(0.0, math.cos(ph_h))])
        hind += p[F["hl_ext"]] * (np.array([-0.62, 0.10 * side, 0.03]) - hind)
        pts[26 + k] = hind
    # tail: from its base backwards, curling, following the body's bend
    curl = p[F["tail"]] + 0.3 * math.sin(gait_phase * 0.5) * amp - 0.8 * p[F["bend"]]
    ang = math.pi + np.cumsum(np.full(TAIL_N, curl / TAIL_N))
    seg = 0.85 / (TAIL_N - 1)
    tail = slice(TAIL_START + 1, TAIL_START + TAIL_N)
    pts[TAIL_START, :] = (-0.43, 0.0, 0.05)
    pts[tail, 0] = -0.43 + np.cumsum(seg * np.cos(ang[1:]))
    pts[tail, 1] = np.cumsum(seg * np.sin(ang[1:]))
    pts[tail, 2] = 0.015
    # body: lateral bend (front and back in opposite senses), twist about the long axis
    body = slice(0, TAIL_START)
    x = pts[body, 0]
    a = p[F["bend"]] * np.clip(x / 0.35, -1.0, 1.0)
    c, s = np.cos(a), np.sin(a)
    pts[body, 0], pts[body, 1] = c * x - s * pts[body, 1], s * x + c * pts[body, 1]
    tw = p[F["twist"]]
    if tw:
        tw_a = tw * np.clip(0.5 + x, 0.2, 1.5)
        c, s = np.cos(tw_a), np.sin(tw_a)
        y, z = pts[body, 1], pts[body, 2] - 0.12
        pts[body, 1], pts[body, 2] = c * y - s * z, 0.12 + s * y + c * z
    # crouch lowers the body, rearing pitches everything but the hind paws and tail up about the hips
    pts[:26, 2] -= 0.04 * p[F["crouch"]] * (pts[:26, 2] > 0.03)
    _rot_y(pts[:26], 1.25 * p[F["rear"]], HIP_PIVOT)
    # lying on the side: roll about the floor line under the flank
    roll = p[F["roll"]]
    if roll:
        side = math.copysign(1.0, roll)
        _rot_x(pts, side * abs(roll) * math.pi / 2, np.array([0.0, side * 0.1, 0.0]))
    pts[:, 2] = np.maximum(pts[:, 2], 0.005) + p[F["z"]]
    return pts
