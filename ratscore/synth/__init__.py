"""The synthetic world: planned seizure clips and recordings of a drawn rat, with exact labels.

Used by training and tests only; the inference modules never import it.

planning.py   the synth config and the video plans (what each video shows, without a pixel)
behaviours.py the rat's motions, one per action unit, and a video's timeline of them
body.py       the pose vector and the skeleton it bends into
scene.py      one video's camera, chamber, colours, light and painted background
rendering.py  drawing a frame: the rat, its shadow and reflection, the camera's effects
frames.py     a plan's frames: its scene and timeline, drawn in its style
writing.py    the videos, labels, boxes, annotations and contact sheet of a `ratscore synth` folder
styles.py     the named drawings (classic, varied, unseen) and the per-frame Look of the others
varied.py     the "varied" style, for the detector; unseen.py the "unseen" style, never trained on
arenas.py     their arenas; animals.py their animals; distractors.py things that are not animals;
camera.py     what their cameras add
"""

from .planning import SynthConfig, VideoPlan, load_synth_config, make_config, plan_clips, plan_long, plan_videos
from .writing import planned_motions, render_contact_sheet, synthesize, write_video

__all__ = ["SynthConfig", "VideoPlan", "load_synth_config", "make_config", "plan_clips", "plan_long", "plan_videos",
           "planned_motions", "render_contact_sheet", "synthesize", "write_video"]
