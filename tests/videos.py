"""Small H.264 test videos written with PyAV from frames the tests draw: shared by the tests that
only need frames in a file (test_motion.py, test_batch_parallel.py, training/test_detector_rig.py)."""

from fractions import Fraction
from pathlib import Path
from typing import Iterable, Optional

import numpy as np


def encode_video(path: Path, frames: Iterable[np.ndarray], fps: float = 30, options: Optional[dict] = None) -> Path:
    """(H, W, 3) uint8 RGB frames into an H.264 file at `fps`; `options`: the encoder's (x264) options."""
    import av

    frames = iter(frames)
    first = next(frames)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = first.shape[1], first.shape[0], "yuv420p"
        if options:
            stream.options = dict(options)
        for image in (first, *frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return Path(path)
