"""ratscore.synth.body: the skeleton's drawing primitives and what the label boxes bound."""

from __future__ import annotations

import numpy as np


def test_boxes_leave_the_tail_out():
    """The label boxes bound the body: every primitive but the tail's segments, which are drawn."""
    from ratscore.synth.body import _CAP_PRIMS, _PRIMS, TAIL_N, _without_tail

    prims = np.array(_PRIMS + _CAP_PRIMS, dtype=float)
    boxed = _without_tail(prims)
    left_out = {tuple(p) for p in prims} - {tuple(p) for p in boxed}
    assert len(boxed) == len(prims) - (TAIL_N - 1) and len(left_out) == TAIL_N - 1
    assert all(kind == 1 and a >= 28 and b == a + 1 for kind, a, b, _, _ in left_out)  # the tail's chain of lines
    assert not any(kind == 1 and a >= 28 for kind, a, *_ in boxed)
