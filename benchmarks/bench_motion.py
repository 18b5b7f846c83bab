"""The motion model's first pass: what it costs beside decoding and `ratscore analyze`.

    .venv/bin/python benchmarks/bench_motion.py VIDEO... [--model models/] [--repeats 2] [-o report.json]

For each video, in paired runs (each in a fresh process, in one sitting, the order of the two
analyses swapped from one repeat to the next): the time merely to decode it (PyAV to RGB, one
process: the floor of the 4x target), the first pass alone (`motion.build_motion_model`), and
`ratscore analyze --no-motion` and `--motion`. Reports the medians, each analysis as a multiple
of the decode time, and the extra time the motion model adds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

DECODE_CHILD = """
import sys, av
with av.open(sys.argv[1]) as container:
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    for frame in container.decode(stream):
        frame.to_ndarray(format="rgb24")
"""

PASS_CHILD = """
import json, sys, time
from ratscore.motion import build_motion_model
start = time.perf_counter()
model = build_motion_model(sys.argv[1])
print(json.dumps({"inner_s": time.perf_counter() - start, "mode": model.mode, "samples": model.n_samples,
                  "informative": bool(model.informative)}))
"""


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"bench_motion: {' '.join(cmd[:4])} failed: {done.stderr.strip()[-800:]}")
    return wall, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", type=Path, nargs="+")
    parser.add_argument("--model", type=Path, default=ROOT / "models")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    python = sys.executable
    report = []
    with tempfile.TemporaryDirectory(prefix="bench_motion_") as work:
        for video in args.videos:
            runs: dict[str, list[float]] = {"decode": [], "pass": [], "no_motion": [], "motion": []}
            info = {}
            for r in range(args.repeats):
                runs["decode"].append(timed([python, "-c", DECODE_CHILD, str(video)])[0])
                wall, out = timed([python, "-c", PASS_CHILD, str(video)])
                info = json.loads(out.strip().splitlines()[-1])
                runs["pass"].append(info["inner_s"])
                order = ("no_motion", "motion") if r % 2 == 0 else ("motion", "no_motion")
                for kind in order:
                    flag = "--motion" if kind == "motion" else "--no-motion"
                    runs[kind].append(timed([python, "-m", "ratscore.cli", "analyze", str(video), "-o",
                                             str(Path(work) / kind), "--model", str(args.model), "--device", "cpu",
                                             flag])[0])
            med = {k: statistics.median(v) for k, v in runs.items()}
            row = {"video": str(video), "mode": info.get("mode"), "samples": info.get("samples"),
                   "runs": runs, "median_s": med,
                   "no_motion_over_decode": med["no_motion"] / med["decode"],
                   "motion_over_decode": med["motion"] / med["decode"],
                   "pass_over_decode": med["pass"] / med["decode"],
                   "extra_s": med["motion"] - med["no_motion"]}
            report.append(row)
            print(f"{video.name}: first pass {info.get('mode')} ({info.get('samples')} samples) "
                  f"{med['pass']:.2f} s = {row['pass_over_decode']:.2f}x decode ({med['decode']:.2f} s); analyze "
                  f"--no-motion {med['no_motion']:.1f} s ({row['no_motion_over_decode']:.2f}x), --motion "
                  f"{med['motion']:.1f} s ({row['motion_over_decode']:.2f}x), extra {row['extra_s']:+.1f} s; "
                  f"runs {json.dumps({k: [round(x, 2) for x in v] for k, v in runs.items()})}", flush=True)
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
