"""The animals of the named styles other than classic: rats and mice in the coats labs keep
(albino, hooded, black, agouti), with or without a head cap, a head-stage LED and a tether.

The skeleton and its primitives are body.py's; an animal here is another set of proportions
(a mouse's larger ears, thinner tail) and colours (a hood over the head and shoulders).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .body import _CAP_PRIMS, _PRIMS, FUR, PINK

HOOD, LED = 6, 7  # colour slots beyond body.py's six
COATS = ("albino", "hooded", "black", "agouti")
SPECIES = ("rat", "mouse")
_HOODED_POINTS = {5, 6, 7, 8, 9, 10, 13, 14}  # front of the back, neck, head, snout, ears


@dataclass
class Animal:
    species: str
    coat: str
    colours: np.ndarray   # (8, 3) RGB of the colour slots (body.py's six, hood, LED)
    prims: np.ndarray     # the primitives drawn, as rendering._draw_prims takes them
    cap: bool             # a head cap with a connector, and a tether to a commutator above
    led: bool             # a head-stage LED on the cap
    cable_colour: tuple
    length: float         # body length, world units (the walked circle has radius 1)


def draw_animal(rng: np.random.Generator, species: str = None, coat: str = None, cap: bool = None) -> Animal:
    species = species or str(rng.choice(SPECIES, p=[0.7, 0.3]))
    coat = coat or str(rng.choice(COATS, p=[0.45, 0.2, 0.15, 0.2]))
    cap = bool(rng.random() < (0.6 if species == "rat" else 0.3)) if cap is None else cap
    pink = np.array([rng.uniform(200, 235), rng.uniform(140, 175), rng.uniform(140, 170)])
    if coat == "albino":
        fur = np.array([rng.uniform(225, 252), rng.uniform(215, 242), rng.uniform(195, 230)])
        eye, hood = np.array([rng.uniform(110, 170), 25, 35]), fur
    elif coat == "hooded":
        fur = np.array([rng.uniform(220, 250), rng.uniform(215, 245), rng.uniform(205, 235)])
        hood = np.full(3, rng.uniform(15, 45)) if rng.random() < 0.7 else np.array([rng.uniform(90, 125), rng.uniform(60, 85), rng.uniform(40, 60)])
        eye = np.array([15.0, 12.0, 12.0])
    elif coat == "black":
        fur = np.full(3, rng.uniform(18, 55)) * rng.uniform(0.9, 1.1, 3)
        pink, eye, hood = pink * 0.5, np.array([10.0, 8.0, 8.0]), fur
    else:  # agouti: brown-grey
        fur = np.array([rng.uniform(115, 155), rng.uniform(95, 125), rng.uniform(70, 95)])
        pink, eye, hood = pink * 0.8, np.array([12.0, 10.0, 10.0]), fur
    cap_colour = rng.choice([[225, 225, 218], [205, 200, 195], [230, 190, 185], [120, 170, 120], [60, 60, 70]])
    led_colour = rng.choice([[255, 40, 40], [40, 255, 60], [60, 120, 255], [255, 255, 255]])
    colours = np.array([fur, pink, eye, cap_colour * rng.uniform(0.9, 1.05), rng.choice([[30, 30, 32], [60, 60, 60]]),
                        pink * 0.55, hood, led_colour], float)
    prims = [list(p) for p in _PRIMS]
    for p in prims:
        if coat == "hooded" and p[1] in _HOODED_POINTS and p[4] in (FUR, PINK):
            p[4] = HOOD
        if species == "mouse":
            if p[1] in (13, 14):  # ears: a mouse's are large and round
                p[3] *= 1.45
            elif p[0] == 1 and p[4] == PINK and p[1] >= 28:  # tail: thinner
                p[3] *= 0.7
            elif p[1] in (9, 10):  # a finer snout
                p[3] *= 0.85
    led = cap and bool(rng.random() < 0.5)
    if cap:
        prims += [list(p) for p in _CAP_PRIMS]
        if led:
            prims.append([0, 18, 18, 0.018, LED])
    length = rng.uniform(0.35, 0.85) if species == "rat" else rng.uniform(0.2, 0.55)
    cable = tuple(float(c) for c in rng.choice([[25, 25, 25], [50, 50, 60], [200, 200, 200], [40, 60, 120], [180, 60, 40]]))
    return Animal(species, coat, colours, np.array(prims, float), cap, led, cable, float(length))

