"""The "varied" style: what labs' footage varies, drawn for the ROI detector to learn what an
animal is and what it is not.

Per video, from the style's own generator: an arena (arenas.py), an animal (animals.py: rats and
mice, albino, hooded, black, agouti; head caps and tethers), the animal's size (its body box from
about 1% to 60% of the frame), the view (side, oblique or top, as the arena's walls allow), the
light and the camera (camera.py: infrared grey or colour, noise, defocus, compression), the
things that are not animals (distractors.py), and whether the animal shows at all: some videos
are of an empty arena, some lose it for a stretch (put in or taken out by a gloved hand). A
quarter of the videos are the RatSeizure rig itself: a white rat with a head cap and cable over
bedding in a clear round arena, seen obliquely, among the same distractors. Half draw the animal
as one smooth furred body (fur.py) instead of classic's primitives; that choice has a generator
of its own, so the other half render exactly as they did before fur.py.
"""

from __future__ import annotations

import math

from .animals import draw_animal
from .arenas import ARENAS, draw_arena, fit_camera, paint_arena, paint_bench
from .body import TAU
from .camera import varied_camera
from .distractors import KINDS, Props
from .fur import FurBody
from .planning import SynthConfig, VideoPlan
from .scene import Scene
from .styles import Look, absent_frames, n_frames_of, style_rng, tether_point

RIG_SHARE = 0.25  # share of videos that are the RatSeizure rig (with distractors)
EMPTY_SHARE = 0.12  # share of videos of an empty arena
PARTLY_EMPTY_SHARE = 0.18  # share where the animal is put in or taken out
FUR_SHARE = 0.5  # share of videos whose animal is drawn as one furred body (fur.py)
# how likely each distractor is in a video
_PROP_ODDS = {"paper": 0.45, "tape": 0.45, "blocks": 0.35, "bottle": 0.25, "feeder": 0.2, "cables": 0.45,
              "commutator": 0.0, "equipment": 0.3, "hand": 0.25, "text": 0.45, "tracking": 0.2}


def varied_scene(plan: VideoPlan, config: SynthConfig) -> Scene:
    rng = style_rng(plan, "varied")
    w, h = config.resolutions[rng.integers(len(config.resolutions))]
    rig = bool(rng.random() < RIG_SHARE)
    arena = draw_arena(rng, "cylinder" if rig else str(rng.choice(ARENAS)))
    animal = draw_animal(rng, "rat", "albino", True) if rig else draw_animal(rng)
    if rig:
        elevation = rng.uniform(35, 65)
    elif arena.near_wall == "opaque":  # looking over the wall, or it hides the animal
        elevation = rng.uniform(55, 90)
    else:
        elevation = float(rng.choice([rng.uniform(10, 28), rng.uniform(28, 70), rng.uniform(70, 90)]))
    share = rng.uniform(0.03, 0.12) if rig else math.exp(rng.uniform(math.log(0.01), math.log(0.6)))
    gray = bool(rng.random() < config.grayscale_fraction)
    scene = Scene(
        width=int(w), height=int(h), gray=gray, sin_el=math.sin(math.radians(elevation)),
        cos_el=math.cos(math.radians(elevation)), cam_dist=rng.uniform(2.5, 7.0), scale=1.0, cx=0.0, cy=0.0,
        wall_h=arena.wall_h, rat_len=animal.length, colours=animal.colours, cable_colour=animal.cable_colour,
        cable_px=2.0, cap=animal.cap, reflection=rng.uniform(0.2, 0.6), shadow=rng.uniform(0.08, 0.35),
        blur=rng.uniform(0.0, 2.2) if rng.random() < 0.5 else 0.0,
        noise=rng.uniform(0.0, 12.0) if rng.random() < 0.6 else 0.0,
        flicker=rng.uniform(0.0, 0.05), flicker_hz=rng.uniform(0.05, 0.6), flicker_phase=rng.uniform(0, TAU))
    fit_camera(scene, arena, rng, share)
    n_frames = n_frames_of(plan, config)
    u = rng.random()
    empty = "all" if u < EMPTY_SHARE else (str(rng.choice(["start", "end"])) if u < EMPTY_SHARE + PARTLY_EMPTY_SHARE else "none")
    absent = absent_frames(empty, n_frames, rng)
    kinds = {k for k in KINDS if rng.random() < _PROP_ODDS[k] * (1.3 if rig else 1.0)}
    tether_top = tether_point(scene, rng) if animal.cap or rng.random() < 0.2 else None
    if tether_top is not None:
        kinds.add("commutator")  # a tether hangs from it, or it hangs there unused
    hand_at = None
    if empty in ("start", "end"):  # the hand that puts the animal in or takes it out
        kinds.add("hand")
        cut = next((i for i in range(n_frames) if absent(i) != absent(0)), n_frames)
        hand_at = cut / config.fps
    props = Props(style_rng(plan, "varied", 1), scene, arena, kinds, plan.duration, tether_top, hand_at)
    paint_arena(scene, arena, style_rng(plan, "varied", 2), paint_bench(rng, scene.width, scene.height), props)
    fur_rng = style_rng(plan, "varied", 3)
    drawer = FurBody(fur_rng, animal.prims) if fur_rng.random() < FUR_SHARE else None
    scene.look = Look(scene, rng, animal.prims, animal.colours, absent, props, varied_camera(rng), animal.cap,
                      animal.cable_colour, tether_top if animal.cap else None, drawer,
                      margin=4.0 if drawer is None else 4.0 + 0.1 * scene.rat_len * scene.scale)  # room for fatter fur
    scene.look.summary = {"arena": arena.kind, "floor": arena.floor, "species": animal.species, "coat": animal.coat,
                          "cap": animal.cap, "rig": rig, "elevation_deg": round(float(elevation), 1),
                          "body_share": round(float(share), 4), "animal": empty, "distractors": sorted(kinds),
                          "drawing": "fur" if drawer is not None else "primitives"}
    return scene
