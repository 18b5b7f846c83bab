"""The "classic" style is frozen: the recipe's test clips (seed 9100) and the held-out hour (seed
4244, 640x480, as benchmarks/bench_analyze.py makes it) render to exactly these bytes.

The digests were taken from the renderer before named styles existed. A change that moves one
of them changes every model's test set: make it a new style instead.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from ratscore.synth.planning import SynthConfig, plan_clips, plan_long
from ratscore.synth.frames import render_clip_frames
from ratscore.synth.writing import _yolo_line

HOUR = SynthConfig(resolutions=((640, 480),), boxes=False)

# sha256 over each frame's RGB bytes, its YOLO label lines (as write_video writes them) and label id
PINNED_CLIPS = {
    "clip_9100_0000": "257d94e13bb5e5205c287d3f522d7cc36dcd9845dbbed70f6116e8d972bbdc36",
    "clip_9100_0001": "3b32b065b79ff30ab4cb93f8ca6709a484e56a9b0f3e404023e52d0afb987e7d",
    "clip_9100_0002": "5f527ef4b327df526d15b6f83f7bb07097d972fa2ec68174db25e6635d25a7bd",
}
PINNED_HOUR_20S = "aae9614ae8fcdfbc4357852da88b5088c4b3d407d3d8676250319584beeb83e9"  # the first 20 s (600 frames) of long_4244_0
# sha256 over the segments of the recipe's 120 test clips and of the hour
PINNED_PLANS = "05f9b2196985fbd5ae70770e28dccf1a07f224666f52023995f418db6f0acbe8"


def _digest(plan, config, frames=None) -> str:
    h = hashlib.sha256()
    for n, f in enumerate(render_clip_frames(plan, config)):
        if frames is not None and n >= frames:
            break
        w, hh = f.image.shape[1], f.image.shape[0]
        lines = [_yolo_line(0, f.rat_box, w, hh)]
        if f.reflection_box is not None:
            lines.append(_yolo_line(1, f.reflection_box, w, hh))
        h.update(np.ascontiguousarray(f.image).tobytes())
        h.update(("\n".join(lines) + f"\n{f.label_id}\n").encode())
    return h.hexdigest()


@pytest.mark.parametrize("index", range(3))
def test_recipe_test_clips_render_as_pinned(index):
    plan = plan_clips(3, seed=9100)[index]
    assert _digest(plan, SynthConfig()) == PINNED_CLIPS[plan.video_id]


def test_heldout_hour_renders_as_pinned():
    plan = plan_long(60, 4244, 0, HOUR)
    assert _digest(plan, HOUR, frames=600) == PINNED_HOUR_20S


def test_recipe_plans_are_pinned():
    h = hashlib.sha256()
    for plan in plan_clips(120, seed=9100) + [plan_long(60, 4244, 0, HOUR)]:
        h.update(f"{plan.video_id} {plan.subset} {plan.duration} {plan.render_seed} {plan.kind}\n".encode())
        h.update(repr([(s.start_s, s.end_s, s.au_id) for s in plan.segments]).encode())
    assert h.hexdigest() == PINNED_PLANS


# sha256 of each file a tiny `ratscore synth` folder holds, but its video (x264's bytes are its own)
# and its contact sheet (a picture for a person, whose captions and PNG bytes are OpenCV's own: they
# changed between OpenCV 4.14 and 5.1 while every frame stayed as pinned above)
TINY = SynthConfig(resolutions=((160, 120),))
PINNED_FOLDER = "c2bc2b19fde13a076820b91e34fca9209df59cce0cf09ba6ff31945fdeacbc66"


def test_a_synth_folder_writes_as_pinned(tmp_path):
    import cv2

    from ratscore.synth.writing import synthesize

    synthesize(tmp_path, clips=1, seed=9100, config=TINY)
    h = hashlib.sha256()
    for path in sorted(p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".mp4"):
        if path.name == "contact_sheet.png":
            continue
        h.update(f"{path.relative_to(tmp_path)}\n".encode())
        h.update(path.read_bytes())
    assert h.hexdigest() == PINNED_FOLDER
    sheet = cv2.imread(str(tmp_path / "contact_sheet.png"))
    assert sheet.shape == (4 * (240 + 24), 4 * 320, 3) and sheet.std() > 10  # 4 x 4 captioned cells, drawn
