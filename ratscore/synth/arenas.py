"""The arenas of the named styles other than classic: round bowls, clear cylinders, square boxes,
home cages with bedding and a wire lid, glass-fronted boxes and wire mesh; their floors, walls,
camera and light, painted into a Scene (scene.py) that the classic renderer's helpers can use.

World units as in scene.py: the animal walks inside a circle of radius 1 about the origin (x
right, y away from the camera, z up); a rectangular arena's shorter half side is 1, so its corners
are never walked on (styles put props there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .body import TAU
from .scene import Scene, _poly

ARENAS = ("bowl", "cylinder", "box", "home_cage", "glass_front", "mesh")
FLOORS = ("bedding", "plain", "grid", "paper", "sawdust")
UNSEEN_FLOORS = ("checker", "lino")  # the unseen style's alone
_BEDDINGS = ((205, 175, 125), (185, 145, 95), (228, 224, 214), (160, 125, 85), (215, 200, 160), (120, 95, 70))


@dataclass
class Arena:
    kind: str              # one of ARENAS
    round: bool            # circular floor, else a rectangle
    half: tuple            # (ax, ay) half extents, world units (ay = 1: the walked circle fits)
    wall_h: float          # wall height, world units
    near_wall: str         # "clear", "opaque" or "mesh": the walls between the camera and the animal
    far_wall: str          # the walls behind it
    wall_colour: np.ndarray
    floor: str             # one of FLOORS
    floor_colour: np.ndarray
    lid: bool              # a wire lid (home cage): bars drawn over the animal

    def outline(self, z: float, n: int = 96) -> np.ndarray:
        """(n, 3) points round the floor (z = 0) or the rim, counter-clockwise seen from above."""
        if self.round:
            a = np.linspace(0.0, TAU, n, endpoint=False)
            return np.stack([np.cos(a), np.sin(a), np.full(n, z)], axis=1)
        ax, ay = self.half
        corners = np.array([(ax, -ay), (ax, ay), (-ax, ay), (-ax, -ay)])
        per = n // 4
        pts = [corners[i] + (corners[(i + 1) % 4] - corners[i]) * f
               for i in range(4) for f in np.linspace(0.0, 1.0, per, endpoint=False)]
        pts = np.array(pts)
        return np.concatenate([pts, np.full((len(pts), 1), z)], axis=1)

    def contains(self, x, y, margin: float = 0.0):
        if self.round:
            return np.hypot(x, y) <= 1.0 - margin
        return (np.abs(x) <= self.half[0] - margin) & (np.abs(y) <= self.half[1] - margin)


def draw_arena(rng: np.random.Generator, kind: str) -> Arena:
    """One arena of this kind, its sizes and materials drawn."""
    rect_half = (float(rng.uniform(1.0, 1.6)), 1.0)
    grey = lambda lo, hi: np.full(3, rng.uniform(lo, hi)) * rng.uniform(0.93, 1.07, 3)  # noqa: E731
    bedding = np.array(_BEDDINGS[rng.integers(len(_BEDDINGS))], float) * rng.uniform(0.9, 1.08, 3)
    if kind == "bowl":
        wall = grey(20, 240)
        return Arena(kind, True, (1.0, 1.0), rng.uniform(0.35, 0.9), "opaque", "opaque", wall,
                     str(rng.choice(["plain", "bedding", "paper"])), wall * rng.uniform(0.85, 1.05), False)
    if kind == "cylinder":
        return Arena(kind, True, (1.0, 1.0), rng.uniform(0.7, 1.4), "clear", "clear", rng.uniform(200, 255, 3),
                     str(rng.choice(["bedding", "bedding", "plain", "sawdust"])), bedding, False)
    if kind == "box":
        wall = grey(15, 235) if rng.random() < 0.7 else rng.uniform(40, 200, 3)
        floor = str(rng.choice(["plain", "plain", "paper", "sawdust", "grid"]))
        return Arena(kind, False, rect_half, rng.uniform(0.5, 1.2), "opaque", "opaque", wall, floor,
                     wall * rng.uniform(0.8, 1.1) if floor == "plain" else bedding, False)
    if kind == "home_cage":
        return Arena(kind, False, (float(rng.uniform(1.3, 1.9)), 1.0), rng.uniform(0.7, 1.1), "clear", "clear",
                     rng.uniform(200, 255, 3), "bedding", bedding, True)
    if kind == "glass_front":
        wall = grey(20, 230)
        return Arena(kind, False, rect_half, rng.uniform(0.8, 1.4), "clear", "opaque", wall,
                     str(rng.choice(["bedding", "plain", "sawdust"])), bedding, False)
    if kind == "mesh":
        return Arena(kind, bool(rng.random() < 0.4), rect_half, rng.uniform(0.6, 1.3), "mesh", "mesh",
                     grey(110, 210), str(rng.choice(["grid", "plain", "bedding"])), bedding, False)
    raise ValueError(kind)


# ---- camera ------------------------------------------------------------------------------------

def share_for_fill(scene: Scene, arena: Arena, fill: float) -> float:
    """The body share (fit_camera) at which the arena spans `fill` of the frame (width or height)."""
    scene.scale, scene.cx, scene.cy = 1.0, 0.0, 0.0
    u, v, _, _ = scene.project(np.concatenate([arena.outline(0.0), arena.outline(arena.wall_h)]))
    s = fill * min(scene.width / (u.max() - u.min()), scene.height / (v.max() - v.min()))
    return 0.45 * (scene.rat_len * s) ** 2 / (scene.width * scene.height)


def fit_camera(scene: Scene, arena: Arena, rng, body_share: float) -> None:
    """Scale and place the view so the animal's body box covers about `body_share` of the frame
    (a body box is about 0.45 body lengths squared). A large share needs a camera close to the
    animal: the arena then overflows the frame and the animal walks out of view at times."""
    w, h = scene.width, scene.height
    length_px = math.sqrt(body_share * w * h / 0.45)
    pts = np.concatenate([arena.outline(0.0), arena.outline(arena.wall_h)])
    scene.scale, scene.cx, scene.cy = 1.0, 0.0, 0.0
    u, v, _, _ = scene.project(pts)
    span_u, span_v = u.max() - u.min(), v.max() - v.min()
    largest = 2.6 * min(w / span_u, h / span_v)  # not more than 2.6 frames across: the animal would seldom show
    if length_px / scene.rat_len > largest:
        scene.rat_len = float(min(0.95, length_px / largest))
    s = length_px / scene.rat_len
    scene.scale = s
    free_u, free_v = w - s * span_u, h - s * span_v
    if free_u >= 0 and free_v >= 0:  # the whole arena in view, somewhere in the frame
        scene.cx = -s * u.min() + free_u * rng.uniform(0.15, 0.85)
        scene.cy = -s * v.min() + free_v * rng.uniform(0.15, 0.85)
    else:  # closer: the view's centre near the arena's
        c_u, c_v, _, _ = scene.project(np.zeros((1, 3)))
        scene.cx = w / 2 - c_u[0] + rng.uniform(-0.12, 0.12) * w
        scene.cy = h / 2 - c_v[0] + rng.uniform(-0.12, 0.12) * h


# ---- painting ----------------------------------------------------------------------------------

def paint_bench(rng, w: int, h: int) -> np.ndarray:
    """What lies around the arena: a bench, a wall, shelves; float32 (H, W, 3)."""
    top, bottom = rng.uniform(30, 210, 3), rng.uniform(30, 210, 3)
    ramp = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    img = (top * (1 - ramp) + bottom * ramp).astype(np.float32) * np.ones((1, w, 1), np.float32)
    for _ in range(rng.integers(0, 5)):
        x0, y0 = rng.uniform(-0.1 * w, w), rng.uniform(-0.1 * h, h)
        cv2.rectangle(img, (int(x0), int(y0)), (int(x0 + rng.uniform(10, w / 2)), int(y0 + rng.uniform(10, h / 2))),
                      tuple(float(c) for c in rng.uniform(20, 200, 3)), -1)
    return img


def _face_polys(scene: Scene, arena: Arena):
    """Each wall face's image polygon (x16 fixed point) and whether it is near the camera."""
    floor, rim = arena.outline(0.0), arena.outline(arena.wall_h)
    n = len(floor)
    out = []
    for i in range(n):
        j = (i + 1) % n
        dx, dy = floor[j, 0] - floor[i, 0], floor[j, 1] - floor[i, 1]
        norm = math.hypot(dx, dy) or 1.0
        near = (-dx / norm) < -0.2  # outward normal (dy, -dx): its y < 0 faces the camera
        quad = np.array([floor[i], floor[j], rim[j], rim[i]])
        out.append((_poly(scene, quad), near, (dy / norm, -dx / norm)))
    return out


def _mesh(target, mask, colour, alpha_target, alpha, spacing: int) -> None:
    """Wire mesh over the mask's region: a grid of lines, `spacing` pixels apart."""
    h, w = mask.shape
    lines = np.zeros((h, w), np.uint8)
    for x in range(int(spacing / 2), w, spacing):
        cv2.line(lines, (x, 0), (x, h - 1), 255, 1)
    for y in range(int(spacing / 2), h, spacing):
        cv2.line(lines, (0, y), (w - 1, y), 255, 1)
    on = (lines > 0) & (mask > 0)
    target[on] = colour
    if alpha_target is not None:
        alpha_target[on] = alpha


def paint_floor(img, scene: Scene, arena: Arena, rng, floor_mask) -> None:
    colour = np.asarray(arena.floor_colour, float)
    base = np.clip(colour * (0.45 if arena.floor == "grid" else 1.0), 0, 255)
    img[floor_mask > 0] = base.astype(np.float32)
    if arena.floor in ("bedding", "sawdust"):
        n = int(min(6000, (0.25 if arena.floor == "bedding" else 0.6) * scene.scale ** 2))
        ax, ay = arena.half
        if arena.round:
            r, a = np.sqrt(rng.random(n)) * 0.98, rng.uniform(0, TAU, n)
            x, y = r * np.cos(a), r * np.sin(a)
        else:
            x, y = rng.uniform(-ax, ax, n), rng.uniform(-ay, ay, n)
        u, v, k, _ = scene.project(np.stack([x, y, np.zeros(n)], axis=1))
        big = 0.02 if arena.floor == "bedding" else 0.006
        sizes = rng.uniform(0.3 * big, big, n) * k
        tints = colour[None, :] * rng.uniform(0.7, 1.15, (n, 1))
        angles = rng.uniform(0, 180, n)
        for i in range(n):
            cv2.ellipse(img, (int(u[i] * 16), int(v[i] * 16)), (max(1, int(sizes[i] * 16)), max(1, int(sizes[i] * 8))),
                        float(angles[i]), 0, 360, tuple(float(c) for c in tints[i]), -1, cv2.LINE_AA, 4)
    elif arena.floor == "grid":  # wire floor over a darker pan
        spacing = max(3, int(scene.scale * rng.uniform(0.06, 0.14)))
        _mesh(img, floor_mask, np.clip(colour * 1.3 + 30, 0, 255).astype(np.float32), None, 1.0, spacing)
    elif arena.floor in UNSEEN_FLOORS:
        _paint_tiles(img, scene, arena, rng)
    elif arena.floor == "paper":  # an absorbent pad: bright, with fibres
        img[floor_mask > 0] = np.float32(rng.uniform(225, 250))
        fibres = rng.normal(0, 6, floor_mask.shape).astype(np.float32)
        img[floor_mask > 0] += cv2.GaussianBlur(fibres, (0, 0), 1.2)[floor_mask > 0, None]
    else:  # plain plastic: a soft sheen
        ys, xs = np.nonzero(floor_mask)
        if len(xs):
            cx, cy = rng.choice(xs), rng.choice(ys)
            sheen = np.exp(-((np.arange(img.shape[1])[None, :] - cx) ** 2 + (np.arange(img.shape[0])[:, None] - cy) ** 2)
                           / (2 * (0.2 * scene.scale) ** 2)).astype(np.float32)
            img[floor_mask > 0] += (rng.uniform(0, 40) * sheen)[floor_mask > 0, None]


def _paint_tiles(img, scene: Scene, arena: Arena, rng) -> None:
    """Floor tiles: a checkerboard of two colours, or lino squares that differ a little each."""
    ax, ay = arena.half
    n = int(rng.integers(4, 9))
    size = 2 * ay / n
    colour = np.asarray(arena.floor_colour, float)
    other = colour * rng.uniform(0.55, 0.8) if arena.floor == "checker" else colour
    for i in range(int(np.ceil(2 * ax / size))):
        for j in range(n):
            x0, y0 = -ax + i * size, -ay + j * size
            x1, y1 = min(ax, x0 + size), y0 + size
            c = (colour if (i + j) % 2 == 0 else other) * (rng.uniform(0.93, 1.07) if arena.floor == "lino" else 1.0)
            quad = _poly(scene, np.array([(x0, y0, 0.0), (x1, y0, 0.0), (x1, y1, 0.0), (x0, y1, 0.0)]))
            cv2.fillPoly(img, [quad], tuple(float(x) for x in c), cv2.LINE_AA, 4)
            if arena.floor == "lino":
                cv2.polylines(img, [quad], True, tuple(float(x) for x in colour * 0.7), 1, cv2.LINE_AA, 4)


def paint_arena(scene: Scene, arena: Arena, rng, bench: np.ndarray, props=None) -> None:
    """The arena over the bench; props.paint(img, floor_mask) adds the still things that are not
    animals before the near walls go on. Sets scene.bg, bg_plain, overlay(_a), band, illum, noise."""
    w, h = scene.width, scene.height
    img = bench.copy()
    faces = _face_polys(scene, arena)
    floor_poly = _poly(scene, arena.outline(0.0))
    floor_mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(floor_mask, [floor_poly], 255, cv2.LINE_8, 4)
    wall_colour = np.asarray(arena.wall_colour, float)
    mesh_px = max(3, int(scene.scale * rng.uniform(0.05, 0.12)))
    for poly, near, normal in faces:  # the walls behind the animal
        if near:
            continue
        shade = 0.75 + 0.25 * abs(normal[0])
        if arena.far_wall == "opaque":
            cv2.fillPoly(img, [poly], tuple(float(c) for c in wall_colour * shade), cv2.LINE_AA, 4)
        elif arena.far_wall == "clear":
            m = np.zeros((h, w), np.uint8)
            cv2.fillPoly(m, [poly], 255, cv2.LINE_8, 4)
            img[m > 0] = img[m > 0] * 0.9 + wall_colour.astype(np.float32) * 0.1
        else:
            m = np.zeros((h, w), np.uint8)
            cv2.fillPoly(m, [poly], 255, cv2.LINE_8, 4)
            _mesh(img, m, wall_colour.astype(np.float32), None, 1.0, mesh_px)
    paint_floor(img, scene, arena, rng, floor_mask)
    img = cv2.GaussianBlur(img, (0, 0), 0.6)
    rim = _poly(scene, arena.outline(arena.wall_h))
    edge = tuple(float(c) for c in np.asarray(arena.floor_colour) * 0.6)
    cv2.polylines(img, [floor_poly], True, edge, 1, cv2.LINE_AA, 4)
    if props is not None:
        props.paint(img, floor_mask)
    # the near walls, and the lid: drawn over the animal
    overlay = np.zeros((h, w, 3), np.float32)
    overlay_a = np.zeros((h, w), np.float32)
    for poly, near, _ in faces:
        if not near:
            continue
        m = np.zeros((h, w), np.uint8)
        cv2.fillPoly(m, [poly], 255, cv2.LINE_8, 4)
        if arena.near_wall == "opaque":
            overlay[m > 0], overlay_a[m > 0] = wall_colour.astype(np.float32) * 0.9, 1.0
        elif arena.near_wall == "clear":
            overlay[m > 0] = wall_colour.astype(np.float32)
            overlay_a[m > 0] = np.maximum(overlay_a[m > 0], 0.08)
        else:
            _mesh(overlay, m, wall_colour.astype(np.float32), overlay_a, 0.85, mesh_px)
    cv2.polylines(overlay, [rim], True, tuple(float(c) for c in wall_colour), 2, cv2.LINE_AA, 4)
    cv2.polylines(overlay_a, [rim], True, 0.6, 2, cv2.LINE_AA, 4)
    if arena.near_wall == "clear":  # glints and glare on the glass or plastic in front
        for _ in range(rng.integers(1, 5)):
            ang = rng.uniform(math.pi * 1.1, math.pi * 1.9)
            x, y = (math.cos(ang), math.sin(ang)) if arena.round else (rng.uniform(-1, 1) * arena.half[0], -arena.half[1])
            seg = _poly(scene, np.array([(x, y, 0.0), (x + rng.uniform(-0.2, 0.2), y, arena.wall_h)]))
            width = int(rng.uniform(2, 10) * scene.scale / 150) + 1
            cv2.line(overlay, tuple(seg[0]), tuple(seg[1]), (255, 255, 255), width, cv2.LINE_AA, 4)
            cv2.line(overlay_a, tuple(seg[0]), tuple(seg[1]), float(rng.uniform(0.06, 0.25)), width, cv2.LINE_AA, 4)
    if arena.lid:
        _paint_lid(overlay, overlay_a, scene, arena, rng)
    overlay_a = cv2.GaussianBlur(overlay_a, (0, 0), 0.7)
    _light(scene, rng, img, overlay, overlay_a)
    _reflection_band(scene, arena, floor_mask, faces)
    _noise_bank(scene, rng)


def _paint_lid(overlay, overlay_a, scene: Scene, arena: Arena, rng) -> None:
    """A home cage's wire lid: bars across the top, a food hopper and a bottle in it."""
    ax, ay = arena.half
    z = arena.wall_h
    metal = tuple(float(c) for c in np.full(3, rng.uniform(120, 200)))
    width = max(1, int(round(scene.scale * 0.012)))
    for x in np.linspace(-ax, ax, int(rng.integers(14, 30))):
        seg = _poly(scene, np.array([(x, -ay, z), (x, ay, z)]))
        cv2.line(overlay, tuple(seg[0]), tuple(seg[1]), metal, width, cv2.LINE_AA, 4)
        cv2.line(overlay_a, tuple(seg[0]), tuple(seg[1]), 0.9, width, cv2.LINE_AA, 4)
    # the hopper (pellets behind bars) over one end, the bottle beside it
    x0 = ax * rng.uniform(0.2, 0.5) * (1 if rng.random() < 0.5 else -1)
    x1 = x0 + math.copysign(ax * rng.uniform(0.3, 0.45), x0)
    hopper = _poly(scene, np.array([(x0, -0.5, z), (x1, -0.5, z), (x1, 0.6, z), (x0, 0.6, z)]))
    pellets = tuple(float(c) for c in rng.uniform([90, 60, 30], [150, 110, 70]))
    cv2.fillPoly(overlay, [hopper], pellets, cv2.LINE_AA, 4)
    cv2.fillPoly(overlay_a, [hopper], 1.0, cv2.LINE_AA, 4)
    bx = -x0 * rng.uniform(0.3, 0.9)
    bottle = _poly(scene, np.array([(bx - 0.12, -0.7, z + 0.05), (bx + 0.12, -0.7, z + 0.05),
                                    (bx + 0.12, 0.7, z + 0.05), (bx - 0.12, 0.7, z + 0.05)]))
    cv2.fillPoly(overlay, [bottle], tuple(float(c) for c in rng.uniform(200, 250, 3)), cv2.LINE_AA, 4)
    cv2.fillPoly(overlay_a, [bottle], float(rng.uniform(0.5, 0.8)), cv2.LINE_AA, 4)


def _light(scene: Scene, rng, img, overlay, overlay_a) -> None:
    w, h = scene.width, scene.height
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    xn, yn = xs / w - 0.5, ys / h - 0.5
    sx, sy = rng.uniform(-0.3, 0.3, 2)
    brightness = rng.uniform(0.55, 1.3)
    illum = brightness * (1.0 + rng.uniform(-0.35, 0.35) * xn + rng.uniform(-0.35, 0.35) * yn)
    illum = illum * (1.0 - rng.uniform(0.0, 0.8) * (xn ** 2 + yn ** 2)) + rng.uniform(0.0, 0.3) * np.exp(
        -((xn - sx) ** 2 + (yn - sy) ** 2) / rng.uniform(0.02, 0.1))
    scene.illum = illum.astype(np.float32)
    plain = img * scene.illum[..., None]
    lit = np.minimum(overlay * scene.illum[..., None], 255.0)
    scene.bg_plain = np.clip(plain, 0, 255).astype(np.uint8)
    scene.bg = np.clip(plain * (1 - overlay_a[..., None]) + lit * overlay_a[..., None], 0, 255).astype(np.uint8)
    scene.overlay, scene.overlay_a = lit, overlay_a


def _reflection_band(scene: Scene, arena: Arena, floor_mask, faces) -> None:
    """Reflections show on a clear round wall only (mirrored about its tangent, as in classic)."""
    h, w = floor_mask.shape
    scene.band = np.zeros((h, w), np.float32)
    scene.band_box = (0, 0, 0, 0)
    if not (arena.round and arena.far_wall == "clear"):
        scene.reflection = 0.0
        return
    wall = np.zeros((h, w), np.uint8)
    for poly, near, _ in faces:
        if not near:
            cv2.fillPoly(wall, [poly], 255, cv2.LINE_8, 4)
    wall = (wall > 0) & (floor_mask == 0)
    ys = np.mgrid[0:h, 0:w][0].astype(np.float32)
    first_floor_row = np.where(floor_mask.any(axis=0), floor_mask.argmax(axis=0), h).astype(np.float32)
    wall_px = max(2.0, scene.scale * arena.wall_h * scene.cos_el)
    fade = np.clip(1.0 - (first_floor_row[None, :] - ys) / wall_px, 0.0, 1.0)
    scene.band = cv2.GaussianBlur(np.where(wall, 0.25 + 0.75 * fade, 0.0).astype(np.float32), (0, 0), 1.0)
    rows, cols = np.nonzero(scene.band > 0.02)
    if len(rows):
        scene.band_box = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)


def _noise_bank(scene: Scene, rng) -> None:
    scene.noise_bank = None
    if scene.noise > 0.3:
        bank = []
        for _ in range(4):
            n = rng.standard_normal((scene.height, scene.width, 1 if scene.gray else 3), dtype=np.float32) * scene.noise
            bank.append((np.clip(n, 0, 255).astype(np.uint8), np.clip(-n, 0, 255).astype(np.uint8)))
        scene.noise_bank = bank
