"""The I3D classifier's training pieces: augmentation, and windows labelled on the time grid."""

import numpy as np

from ratscore.training.i3d_classifier import _clip_centre_s, _window_label, augment_clip


def test_classifier_augmentation_keeps_shape_range_and_motion():
    clip = np.zeros((16, 40, 40, 3), np.uint8)
    for t in range(16):  # a bright square moving right: the motion must survive the augmentation
        clip[t, 15:25, 2 * t:2 * t + 10] = 220
    outs = [augment_clip(clip, np.random.default_rng(seed)) for seed in range(8)]
    for x in outs:
        assert x.shape == clip.shape and x.dtype == np.float32
        assert x.min() >= -1.0 and x.max() <= 1.0
        centre = [np.argmax(x[t].mean(axis=(0, 2))) for t in (0, 15)]  # brightest column, first and last frame
        assert abs(centre[1] - centre[0]) >= 15  # moved by ~30 px (less when zoomed out a little)
    assert not all(np.array_equal(outs[0], x) for x in outs[1:])  # random, yet seeded
    assert np.array_equal(augment_clip(clip, np.random.default_rng(3)), outs[3])


def test_windows_are_labelled_at_their_clip_centre_on_the_grid():
    from ratscore.annotations import Segment
    from ratscore.grid import DEFAULT_GRID

    # the clip starting at frame 0 is feature 0: its centre is feature 0's time
    assert _clip_centre_s(0) == DEFAULT_GRID.feature_time(0) == 8 / 30
    assert _clip_centre_s(52) == (52 + 8) / 30.0  # any first frame, not only a feature's
    segments = [Segment(0.0, 1.0, 4), Segment(1.0, 2.0, 7)]
    assert _window_label(segments, _clip_centre_s(21)) == 4  # centre 29/30 s
    assert _window_label(segments, _clip_centre_s(22)) == 7  # centre 1 s: a segment's end is not in it
    assert _window_label(segments, _clip_centre_s(60)) is None
