"""ratscore.synth.behaviours: the motions drawn for the action units."""

from __future__ import annotations

import numpy as np

from ratscore.labels import LABEL_IDS


def test_forelimb_clonus_patterns_differ():
    from ratscore.synth.behaviours import build_timeline
    from ratscore.synth.body import F

    def limbs(au):
        rng = np.random.default_rng(5)
        timeline = build_timeline([(0.0, 3.0, au)], rng, (0.3, 0.3))
        poses = np.array([timeline.pose(t) for t in np.arange(0.0, 3.0, 1 / 30)])
        return poses[:, F["fl_l"]], poses[:, F["fl_r"]]

    left, right = limbs(LABEL_IDS["unilateral forelimb clonus"])
    assert min(np.std(left), np.std(right)) < 0.02 < max(np.std(left), np.std(right))
    left, right = limbs(LABEL_IDS["bilateral forelimb clonus"])
    assert np.corrcoef(left, right)[0, 1] > 0.8
    left, right = limbs(LABEL_IDS["alternating forelimb clonus"])
    assert np.corrcoef(left, right)[0, 1] < -0.8
