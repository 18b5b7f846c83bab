"""A copy of real recordings with the room lights switched halfway, for bench_real_roi.py.

    .venv/bin/python benchmarks/light_switch.py VIDEOS POSITIONS OUT [--gain 0.55] [--fade 0] [--gop 60]

Labs record overnight, and the room lights go off and on. For each recording with a
`<stem>.positions.csv` (and its `.about.txt`), writes OUT/videos/<stem>_lights.mp4 (H.264, a keyframe every `--gop`
frames): the same frames, their brightness times `--gain` from the middle of the recording on
(over `--fade` seconds; 0: at once), and the same positions beside it in OUT/positions, so that
bench_real_roi.py measures the box on both sides of the switch. Write a plain re-encoding with
`--gain 1` to compare with the same compression.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ratscore.video import probe_video, read_frames, write_h264  # noqa: E402


def gain_at(t_s: float, switch_s: float, gain: float, fade_s: float) -> float:
    """The brightness factor at `t_s`: 1 before the switch, `gain` after it, linear over the fade."""
    if fade_s <= 0:
        return 1.0 if t_s < switch_s else gain
    share = min(1.0, max(0.0, (t_s - switch_s) / fade_s))
    return 1.0 - share * (1.0 - gain)


def switched_copy(video: Path, out: Path, gain: float, fade_s: float, gop: int) -> None:
    info = probe_video(video)
    switch_s = (info.duration_s or 0.0) / 2
    fps = info.source_fps or 30.0

    def images():
        for frame in read_frames(video, fps=fps):  # every source frame, upright
            factor = gain_at(frame.t_s, switch_s, gain, fade_s)
            yield frame.image if factor == 1.0 else (frame.image.astype(np.float32) * factor).astype(np.uint8)

    # a copy is whole or absent: write_h264 renames it into place once written
    write_h264(out, images(), round(fps), {"g": gop, "crf": "20", "preset": "fast"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", type=Path)
    parser.add_argument("positions", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--gain", type=float, default=0.55, help="brightness after the switch (0.55: lights dimmed)")
    parser.add_argument("--fade", type=float, default=0.0, help="seconds the change takes (0: at once)")
    parser.add_argument("--gop", type=int, default=60, help="frames between keyframes in the copy")
    args = parser.parse_args()
    pairs = []  # (video, its positions file)
    for positions in sorted(args.positions.glob("*.positions.csv")):
        stem = positions.name[: -len(".positions.csv")]
        video = next(iter(sorted(args.videos.glob(stem + ".*"))), None)
        if video is not None:
            pairs.append((video, positions))
    if not pairs:
        print(f"light_switch: no video in {args.videos} has a <stem>.positions.csv in {args.positions}", file=sys.stderr)
        sys.exit(2)
    (args.out / "videos").mkdir(parents=True, exist_ok=True)
    (args.out / "positions").mkdir(parents=True, exist_ok=True)
    for video, positions in pairs:
        stem = positions.name[: -len(".positions.csv")]
        print(f"{video.name} ...", flush=True)
        switched_copy(video, args.out / "videos" / f"{stem}_lights.mp4", args.gain, args.fade, args.gop)
        shutil.copyfile(positions, args.out / "positions" / f"{stem}_lights.positions.csv")
        about = args.positions / f"{stem}.about.txt"  # what bench_real_roi's table says the recording shows
        if about.exists():
            shutil.copyfile(about, args.out / "positions" / f"{stem}_lights.about.txt")


if __name__ == "__main__":
    main()
