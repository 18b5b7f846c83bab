"""Rig profiles: where the arena is and where the rat's mirror images appear.

Many seizure rigs are glass or acrylic boxes; the walls reflect the rat, and a detector happily
boxes the reflection. A rig profile (YAML) names the arena and the reflection regions once per
camera set-up, and detections outside the arena or inside a reflection region are dropped:

    # rig.yaml
    units: relative          # or "pixels"; default: relative when every coordinate is <= 1
    arena: [[0.05, 0.05], [0.95, 0.05], [0.95, 0.95], [0.05, 0.95]]   # omit for the whole frame
    reflections:             # zero or more polygons
      - [[0.0, 0.0], [1.0, 0.0], [1.0, 0.05], [0.0, 0.05]]

A detection is judged by its box centre.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class RigProfile:
    arena: Optional[tuple[tuple[float, float], ...]]  # polygon vertices (x, y); None: the whole frame
    reflections: tuple[tuple[tuple[float, float], ...], ...]  # polygons where mirror images appear
    relative: bool  # coordinates are fractions of the frame width/height, not pixels

    def in_pixels(self, width: int, height: int) -> "RigMask":
        scale = np.array([width, height], float) if self.relative else np.ones(2)
        arena = None if self.arena is None else np.asarray(self.arena, float) * scale
        return RigMask(arena, [np.asarray(p, float) * scale for p in self.reflections])


class RigMask:
    """A rig profile in one video's pixels; tells which detections to keep."""

    def __init__(self, arena: Optional[np.ndarray], reflections: list[np.ndarray]):
        self.arena = arena  # (V, 2) or None
        self.reflections = reflections  # [(V, 2), ...]

    def keeps(self, box) -> bool:
        """True for a box (x0, y0, x1, y1) whose centre is in the arena and in no reflection region."""
        x = (box[0] + box[2]) / 2
        y = (box[1] + box[3]) / 2
        if self.arena is not None and not point_in_polygon(x, y, self.arena):
            return False
        return not any(point_in_polygon(x, y, poly) for poly in self.reflections)


def point_in_polygon(x: float, y: float, polygon: np.ndarray) -> bool:
    """Even-odd rule (ray cast to +x); points on an edge may fall either way."""
    xs, ys = polygon[:, 0], polygon[:, 1]
    xs2, ys2 = np.roll(xs, -1), np.roll(ys, -1)
    crosses = (ys > y) != (ys2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = xs + (y - ys) * (xs2 - xs) / (ys2 - ys)
    return bool(np.count_nonzero(crosses & (x < x_at)) % 2)


def _polygon(value, where: str) -> tuple[tuple[float, float], ...]:
    if not isinstance(value, (list, tuple)) or len(value) < 3:
        raise InputError(f"{where}: a polygon needs a list of at least 3 [x, y] points")
    points = []
    for point in value:
        if not isinstance(point, (list, tuple)) or len(point) != 2:
            raise InputError(f"{where}: each point must be [x, y], got {point!r}")
        try:
            x, y = float(point[0]), float(point[1])
        except (TypeError, ValueError):
            raise InputError(f"{where}: coordinates must be numbers, got {point!r}") from None
        if not (np.isfinite(x) and np.isfinite(y)) or x < 0 or y < 0:
            raise InputError(f"{where}: coordinates must be finite and not negative, got {point!r}")
        points.append((x, y))
    return tuple(points)


def load_rig_profile(path: str | Path) -> RigProfile:
    """Read a rig profile YAML (see the module doc); InputError naming the file and the problem."""
    from .config import read_yaml_mapping

    path = Path(path)
    doc = read_yaml_mapping(path, "rig profile")
    if not doc:
        raise InputError(f"{path}: a rig profile must be a mapping with 'arena' and/or 'reflections'")
    unknown = set(doc) - {"units", "arena", "reflections", "name"}
    if unknown:
        raise InputError(f"{path}: unknown rig profile key(s) {', '.join(sorted(map(str, unknown)))} "
                         f"(expected units, arena, reflections)")
    arena = None if doc.get("arena") is None else _polygon(doc["arena"], f"{path}: arena")
    reflections_doc = doc.get("reflections") or []
    if not isinstance(reflections_doc, list):
        raise InputError(f"{path}: 'reflections' must be a list of polygons")
    reflections = tuple(_polygon(p, f"{path}: reflections[{i}]") for i, p in enumerate(reflections_doc))
    units = doc.get("units")
    every = [c for poly in ([arena] if arena else []) + list(reflections) for pt in poly for c in pt]
    if units is None:
        relative = all(c <= 1.0 for c in every)
    elif units in ("relative", "pixels"):
        relative = units == "relative"
    else:
        raise InputError(f"{path}: units must be 'relative' or 'pixels', got {units!r}")
    if relative and any(c > 1.0 for c in every):
        raise InputError(f"{path}: relative coordinates must lie in [0, 1]")
    return RigProfile(arena, reflections, relative)
