"""Things in labs' footage that are not animals and must never be boxed: white paper and tape on
walls and floors, blocks, bottles and feeders, cables, commutators and equipment LEDs, burnt-in
tracking overlays, text and timestamps, and gloved hands reaching in from an edge.

Light blobs above all: a detector trained on a white rat on a plain floor boxes any of them.
Still things are painted into a video's background once (`Props.paint`); moving and burnt-in
ones over each frame (`Props.foreground`), after the animal's box is taken, so none enters it.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .arenas import Arena
from .scene import Scene, _poly

STILL = ("paper", "tape", "blocks", "bottle", "feeder", "cables", "commutator", "equipment")
MOVING = ("hand", "text", "tracking")
KINDS = STILL + MOVING
GLOVES = {"flesh": (225, 185, 160), "blue": (70, 120, 225), "purple": (135, 95, 205), "latex": (235, 228, 205),
          "black": (35, 35, 40)}


def _col(c) -> tuple:
    return tuple(float(x) for x in c)


class Props:
    """One video's distractors. `kinds`: the set drawn (KINDS); `hand_at`: the time (s) a gloved
    hand is nearest the arena's centre (None: a random time, if "hand" is among kinds)."""

    def __init__(self, rng: np.random.Generator, scene: Scene, arena: Arena, kinds, duration: float,
                 tether_top=None, hand_at=None):
        self.rng, self.scene, self.arena, self.kinds = rng, scene, arena, set(kinds)
        self.tether_top = tether_top
        self.duration = duration
        w, h = scene.width, scene.height
        self.leds = []  # (x, y, radius, colour, period, phase)
        if "hand" in self.kinds:
            glove = str(rng.choice(list(GLOVES), p=[0.25, 0.3, 0.25, 0.1, 0.1]))
            self.hand_colour = np.array(GLOVES[glove], float) * rng.uniform(0.85, 1.1, 3)
            self.hand_edge = int(rng.integers(4))  # 0 top, 1 right, 2 bottom, 3 left
            self.hand_at = float(rng.uniform(0.2, 0.8) * duration) if hand_at is None else float(hand_at)
            self.hand_span = float(rng.uniform(0.8, 2.5))  # seconds in view
            self.hand_len = float(rng.uniform(0.5, 0.9) * scene.scale)  # pixels, wrist to fingertip
            self.hand_goal = np.array([w * rng.uniform(0.3, 0.7), h * rng.uniform(0.3, 0.7)])
            self.hand_spread = rng.uniform(0.0, 0.25)
        if "text" in self.kinds:
            self.font = int(rng.choice([cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX]))
            self.text_scale = h / 480 * rng.uniform(0.4, 0.9) * (1.6 if self.font == cv2.FONT_HERSHEY_PLAIN else 1.0)
            self.text_colour = _col(rng.choice([[255, 255, 255], [255, 255, 0], [0, 0, 0], [0, 255, 0]]))
            self.text_box = bool(rng.random() < 0.4)
            self.text_corner = int(rng.integers(4))
            self.start = (int(rng.integers(2015, 2026)), int(rng.integers(1, 13)), int(rng.integers(1, 29)),
                          float(rng.uniform(0, 86400)))
            self.label = str(rng.choice(["CAM 1", "CAM 2", "Ch03", "Rat 14 kindling d3", "Box B", "IR", "REC", ""]))
        if "tracking" in self.kinds:
            self.track_colour = _col(rng.choice([[0, 255, 0], [255, 0, 0], [255, 255, 0], [0, 255, 255], [255, 0, 255]]))
            self.track_shape = str(rng.choice(["rect", "ellipse", "dot"]))
            self.track_pad = rng.uniform(0.0, 0.3)
            self.trail, self.trail_len = [], int(rng.integers(0, 60))
            self.zones = int(rng.integers(0, 4))

    # ---- still things, painted once ---------------------------------------------------------

    def _spot(self, inside: bool):
        """A floor point (x, y) inside the arena (in a corner of a rectangular one, else anywhere on
        its floor) or outside it on the bench."""
        rng, a = self.rng, self.arena
        if inside:
            if not a.round and a.half[0] > 1.15:
                return (rng.uniform(1.0, a.half[0] - 0.1) * rng.choice([-1, 1]), rng.uniform(-0.8, 0.8))
            r, ang = 0.95 * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
            return (r * math.cos(ang), r * math.sin(ang))
        ang = rng.uniform(0, 2 * math.pi)
        r = rng.uniform(1.15, 2.2) * (1.0 if a.round else max(a.half))
        return (r * math.cos(ang), r * math.sin(ang))

    def paint(self, img: np.ndarray, floor_mask: np.ndarray) -> None:
        rng = self.rng
        for kind in sorted(self.kinds & set(STILL)):
            for _ in range(int(rng.integers(1, 4)) if kind in ("paper", "tape", "blocks", "cables") else 1):
                getattr(self, f"_{kind}")(img, floor_mask)

    def _paper(self, img, floor_mask):
        rng, s = self.rng, self.scene
        if rng.random() < 0.3:  # a sheet taped on a wall or the glass: upright, in the image
            w, h = s.width, s.height
            pw, ph = rng.uniform(0.06, 0.25) * w, rng.uniform(0.06, 0.3) * h
            x, y = rng.uniform(0, w - pw), rng.uniform(0, h - ph)
            box = cv2.boxPoints(((x + pw / 2, y + ph / 2), (pw, ph), float(rng.uniform(-15, 15))))
            poly = np.round(box * 16).astype(np.int32)
        else:  # lying on the floor or the bench
            x, y = self._spot(rng.random() < 0.5)
            a, sw, sh = rng.uniform(0, math.pi), rng.uniform(0.15, 0.5), rng.uniform(0.1, 0.4)
            c, sn = math.cos(a), math.sin(a)
            corners = [(x + c * dx - sn * dy, y + sn * dx + c * dy, 0.002)
                       for dx, dy in ((-sw, -sh), (sw, -sh), (sw, sh), (-sw, sh))]
            poly = _poly(s, np.array(corners))
        white = rng.uniform(225, 255) * rng.uniform(0.96, 1.0, 3)
        cv2.fillPoly(img, [poly], _col(white), cv2.LINE_AA, 4)
        if rng.random() < 0.5:  # printed or written on
            pts = poly.reshape(-1, 2) / 16.0
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            for yy in np.linspace(lo[1] + 0.2 * (hi[1] - lo[1]), hi[1] - 0.2 * (hi[1] - lo[1]), int(rng.integers(2, 6))):
                x0 = lo[0] + 0.15 * (hi[0] - lo[0])
                x1 = x0 + rng.uniform(0.3, 0.7) * (hi[0] - lo[0])
                cv2.line(img, (int(x0), int(yy)), (int(x1), int(yy)), _col(white * 0.45), 1, cv2.LINE_AA)

    def _tape(self, img, floor_mask):
        rng, s, a = self.rng, self.scene, self.arena
        colour = _col(np.array(rng.choice([[240, 240, 235], [245, 245, 245], [60, 110, 220], [240, 220, 60],
                                           [200, 50, 50], [30, 30, 30], [190, 190, 195]]), float) * rng.uniform(0.9, 1.05))
        width = max(1, int(rng.uniform(0.02, 0.06) * s.scale))
        if rng.random() < 0.4:  # along the rim or up a wall
            rim = a.outline(a.wall_h if rng.random() < 0.5 else rng.uniform(0.1, 0.6) * a.wall_h)
            i = int(rng.integers(len(rim)))
            seg = rim[[(i + j) % len(rim) for j in range(int(rng.integers(3, 12)))]]
            cv2.polylines(img, [_poly(s, seg)], False, colour, width, cv2.LINE_AA, 4)
        else:
            x, y = self._spot(rng.random() < 0.6)
            ang, length = rng.uniform(0, math.pi), rng.uniform(0.2, 0.9)
            seg = np.array([(x, y, 0.002), (x + length * math.cos(ang), y + length * math.sin(ang), 0.002)])
            p = _poly(s, seg)
            cv2.line(img, tuple(p[0]), tuple(p[1]), colour, width, cv2.LINE_AA, 4)

    def _cuboid(self, img, centre, size, height, colour, angle=0.0):
        """A box standing on the floor, its visible faces shaded (top brightest)."""
        s = self.scene
        x, y = centre
        c, sn = math.cos(angle), math.sin(angle)
        base = [(x + c * dx - sn * dy, y + sn * dx + c * dy) for dx, dy in
                ((-size[0], -size[1]), (size[0], -size[1]), (size[0], size[1]), (-size[0], size[1]))]
        bottom = np.array([(bx, by, 0.0) for bx, by in base])
        top = bottom + np.array([0.0, 0.0, height])
        colour = np.asarray(colour, float)
        cam = np.array([0.0, -s.cam_dist * s.cos_el, s.cam_dist * s.sin_el])
        faces = []
        for i in range(4):
            j = (i + 1) % 4
            quad = np.array([bottom[i], bottom[j], top[j], top[i]])
            mid = quad.mean(axis=0)
            normal = np.array([quad[1, 1] - quad[0, 1], -(quad[1, 0] - quad[0, 0]), 0.0])
            if np.dot(normal, cam - mid) > 0:
                faces.append((np.linalg.norm(cam - mid), quad, 0.55 + 0.3 * abs(normal[0]) / (np.linalg.norm(normal) + 1e-9)))
        for _, quad, shade in sorted(faces, key=lambda f: -f[0]):
            cv2.fillPoly(img, [_poly(s, quad)], _col(colour * shade), cv2.LINE_AA, 4)
        cv2.fillPoly(img, [_poly(s, top)], _col(np.minimum(colour * 1.05, 255)), cv2.LINE_AA, 4)
        return top

    def _blocks(self, img, floor_mask):
        rng = self.rng
        colour = np.array(rng.choice([[245, 245, 240], [235, 225, 200], [240, 220, 90], [200, 220, 240],
                                      [220, 200, 230], [200, 60, 50], [60, 160, 80]]), float) * rng.uniform(0.9, 1.05)
        self._cuboid(img, self._spot(rng.random() < 0.6), (rng.uniform(0.06, 0.2), rng.uniform(0.06, 0.2)),
                     rng.uniform(0.06, 0.3), colour, rng.uniform(0, math.pi))

    def _feeder(self, img, floor_mask):
        rng = self.rng
        top = self._cuboid(img, self._spot(rng.random() < 0.5), (rng.uniform(0.1, 0.2), rng.uniform(0.08, 0.15)),
                           rng.uniform(0.08, 0.2), np.full(3, rng.uniform(140, 200)), rng.uniform(0, math.pi))
        u, v, _, _ = self.scene.project(top)
        for _ in range(int(rng.integers(4, 12))):  # pellets in the tray
            f = rng.random(4)
            f /= f.sum()
            px, py = float(f @ u), float(f @ v)
            cv2.circle(img, (int(px * 16), int(py * 16)), max(16, int(0.02 * self.scene.scale * 16)),
                       _col(rng.uniform([100, 70, 35], [150, 110, 70])), -1, cv2.LINE_AA, 4)

    def _bottle(self, img, floor_mask):
        rng, s = self.rng, self.scene
        x, y = self._spot(False)
        height, radius = rng.uniform(0.3, 0.7), rng.uniform(0.06, 0.12)
        seg = _poly(s, np.array([(x, y, 0.0), (x, y, height)]))
        px = max(2, int(2 * radius * s.scale))
        body = np.array(rng.choice([[225, 235, 245], [240, 240, 240], [200, 225, 235]]), float) * rng.uniform(0.9, 1.05)
        cv2.line(img, tuple(seg[0]), tuple(seg[1]), _col(body), px, cv2.LINE_AA, 4)
        cv2.line(img, tuple(seg[0]), tuple((seg[0] + seg[1]) // 2), _col(body * 0.85), max(1, px - 2), cv2.LINE_AA, 4)  # water
        tip = _poly(s, np.array([(x, y, height), (x, y, height + 0.12)]))
        cv2.line(img, tuple(tip[0]), tuple(tip[1]), (150.0, 150.0, 155.0), max(1, px // 3), cv2.LINE_AA, 4)  # spout

    def _cables(self, img, floor_mask):
        rng, s = self.rng, self.scene
        colour = _col(rng.choice([[20, 20, 20], [60, 60, 70], [230, 230, 230], [200, 60, 40], [40, 70, 160]]))
        width = max(1, int(rng.uniform(0.008, 0.03) * s.scale))
        if rng.random() < 0.5:  # hanging into view from the top of the frame
            x0 = rng.uniform(0, s.width)
            pts = np.array([(x0, -5.0), (x0 + rng.uniform(-60, 60), rng.uniform(0.2, 0.7) * s.height),
                            (x0 + rng.uniform(-100, 100), rng.uniform(0.3, 1.0) * s.height)])
        else:  # lying on the floor or the bench
            x, y = self._spot(rng.random() < 0.5)
            pts = _poly(s, np.array([(x, y, 0.005), (x + rng.uniform(-0.6, 0.6), y + rng.uniform(-0.6, 0.6), 0.005),
                                     (x + rng.uniform(-1, 1), y + rng.uniform(-1, 1), 0.005)])) / 16.0
        tt = np.linspace(0.0, 1.0, 20)[:, None]
        curve = (1 - tt) ** 2 * pts[0] + 2 * (1 - tt) * tt * pts[1] + tt ** 2 * pts[2]
        cv2.polylines(img, [np.round(curve * 16).astype(np.int32)], False, colour, width, cv2.LINE_AA, 4)

    def _commutator(self, img, floor_mask):
        """The swivel the tether hangs from, and the wires above it."""
        rng, s = self.rng, self.scene
        if self.tether_top is None:
            return
        x, y = self.tether_top
        r = max(3, int(rng.uniform(0.04, 0.09) * s.scale))
        cv2.line(img, (int(x), int(y)), (int(x + rng.uniform(-30, 30)), -5), (40.0, 40.0, 45.0), max(1, r // 3), cv2.LINE_AA)
        body = _col(rng.choice([[60, 60, 65], [170, 170, 175], [30, 30, 30]]))
        cv2.rectangle(img, (int(x - r), int(y - 2.5 * r)), (int(x + r), int(y)), body, -1, cv2.LINE_AA)
        cv2.line(img, (int(x - r), int(y - 1.2 * r)), (int(x + r), int(y - 1.2 * r)), (220.0, 200.0, 120.0), max(1, r // 3))

    def _equipment(self, img, floor_mask):
        """An amplifier or a camera light on the bench: a dark box with LEDs that blink."""
        rng, s = self.rng, self.scene
        w, h = s.width, s.height
        bw, bh = rng.uniform(0.08, 0.25) * w, rng.uniform(0.04, 0.12) * h
        x0, y0 = rng.choice([rng.uniform(0, 0.15), rng.uniform(0.7, 0.9)]) * w, rng.uniform(0, 1) * (h - bh)
        cv2.rectangle(img, (int(x0), int(y0)), (int(x0 + bw), int(y0 + bh)), _col(np.full(3, rng.uniform(20, 70))), -1)
        for i in range(int(rng.integers(1, 6))):
            colour = rng.choice([[255, 40, 40], [40, 255, 60], [60, 120, 255], [255, 200, 40]])
            self.leds.append((x0 + bw * (i + 1) / 7, y0 + bh / 2, max(1.5, 0.012 * w), _col(colour),
                              float(rng.uniform(0.4, 2.0)), float(rng.uniform(0, 1)), bool(rng.random() < 0.6)))

    # ---- moving and burnt-in things, over each frame -----------------------------------------

    def foreground(self, img: np.ndarray, n: int, t: float, box) -> None:
        for x, y, r, colour, period, phase, blinks in self.leds:
            if not blinks or ((t / period + phase) % 1.0) < 0.5:
                cv2.circle(img, (int(x * 16), int(y * 16)), int(r * 16), colour, -1, cv2.LINE_AA, 4)
                cv2.circle(img, (int(x * 16), int(y * 16)), int(r * 2.2 * 16), colour, 1, cv2.LINE_AA, 4)
        if "tracking" in self.kinds:
            self._tracking(img, box)
        if "hand" in self.kinds:
            self._hand(img, t)
        if "text" in self.kinds:
            self._text(img, n, t)

    def _tracking(self, img, box):
        """What tracking software burns in: the animal's outline box or ellipse, centroid, trail, zones."""
        s, col = self.scene, self.track_colour
        for i in range(1, self.zones + 1):  # zone lines across the view
            x = int(s.width * i / (self.zones + 1))
            cv2.line(img, (x, 0), (x, s.height - 1), col, 1)
        if box is None:
            return
        x0, y0, x1, y1 = box
        pad = self.track_pad * max(x1 - x0, y1 - y0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        if self.track_shape == "rect":
            cv2.rectangle(img, (int(x0 - pad), int(y0 - pad)), (int(x1 + pad), int(y1 + pad)), col, 1)
        elif self.track_shape == "ellipse":
            cv2.ellipse(img, (int(cx), int(cy)), (int((x1 - x0) / 2 + pad), int((y1 - y0) / 2 + pad)), 0, 0, 360, col, 1)
        cv2.circle(img, (int(cx), int(cy)), 2, col, -1)
        if self.trail_len:
            self.trail = (self.trail + [(cx, cy)])[-self.trail_len:]
            if len(self.trail) > 1:
                cv2.polylines(img, [np.array(self.trail, np.int32)], False, col, 1)

    def _hand(self, img, t):
        """A gloved hand (palm, fingers, wrist and forearm to the frame's edge) reaching in and out."""
        reach = 1.0 - min(1.0, abs(t - self.hand_at) / (self.hand_span / 2))
        if reach <= 0:
            return
        reach = reach * reach * (3 - 2 * reach)
        s = self.scene
        w, h = s.width, s.height
        entry = [np.array([self.hand_goal[0], -0.1 * h]), np.array([w * 1.1, self.hand_goal[1]]),
                 np.array([self.hand_goal[0], h * 1.1]), np.array([-0.1 * w, self.hand_goal[1]])][self.hand_edge]
        direction = self.hand_goal - entry
        direction /= np.linalg.norm(direction) + 1e-9
        tip = entry + (self.hand_goal - entry) * reach
        palm = tip - direction * 0.55 * self.hand_len
        side = np.array([-direction[1], direction[0]])
        col = self.hand_colour
        width = 0.38 * self.hand_len
        arm_end = palm - direction * 3.0 * max(w, h)
        cv2.line(img, _pt(palm), _pt(arm_end), _col(col * 0.92), int(width * 1.1), cv2.LINE_AA)  # wrist and forearm
        cv2.ellipse(img, _pt(palm), (int(0.32 * self.hand_len), int(width / 2)),
                    math.degrees(math.atan2(direction[1], direction[0])), 0, 360, _col(col), -1, cv2.LINE_AA)
        for i, f in enumerate(np.linspace(-0.36, 0.36, 4)):  # four fingers, splayed a little
            base = palm + direction * 0.22 * self.hand_len + side * f * width * 1.6
            d = direction + side * f * self.hand_spread * 2
            d /= np.linalg.norm(d)
            length = self.hand_len * (0.38 if i in (1, 2) else 0.32)
            cv2.line(img, _pt(base), _pt(base + d * length), _col(col * (0.95 + 0.05 * (i % 2))),
                     max(2, int(0.085 * self.hand_len)), cv2.LINE_AA)
        thumb = palm + side * 0.5 * width
        cv2.line(img, _pt(thumb), _pt(thumb + (side * 0.8 + direction * 0.5) * 0.3 * self.hand_len), _col(col * 0.9),
                 max(2, int(0.09 * self.hand_len)), cv2.LINE_AA)

    def _text(self, img, n, t):
        """A burnt-in timestamp (and a camera or animal label) in a corner."""
        import datetime

        year, month, day, sec = self.start
        stamp = datetime.datetime(year, month, day) + datetime.timedelta(seconds=sec + t)
        lines = [stamp.strftime("%Y-%m-%d %H:%M:%S") + f".{int(stamp.microsecond / 1e4):02d}"]
        if self.label:
            lines.append(f"{self.label}  #{n:06d}")
        s = self.scene
        thick = max(1, int(round(self.text_scale * 1.5)))
        for i, line in enumerate(lines):
            (tw, th), base = cv2.getTextSize(line, self.font, self.text_scale, thick)
            x = 4 if self.text_corner in (0, 3) else s.width - tw - 4
            y = 4 + th + i * (th + base + 4) if self.text_corner in (0, 1) else s.height - 4 - base - (len(lines) - 1 - i) * (th + base + 4)
            if self.text_box:
                cv2.rectangle(img, (x - 2, y - th - 2), (x + tw + 2, y + base), (0, 0, 0), -1)
            cv2.putText(img, line, (x, y), self.font, self.text_scale, self.text_colour, thick, cv2.LINE_AA)


def _pt(p) -> tuple:
    return (int(round(float(p[0]))), int(round(float(p[1]))))
