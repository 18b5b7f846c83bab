"""Speed and memory of `ratscore synth` (figures quoted in README).

    .venv/bin/python benchmarks/bench_synth.py [--clips 5] [--long 1 5]

1. Render + encode time of 10 s 320x240 clips, pinned to one CPU core (target: < 2 s per clip).
2. Peak RSS of a child process making one long recording of each length (target: flat in length,
   since frames stream to the encoder).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time


def clip_speed(n_clips: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds per clip (CPU time is what counts on a shared machine)."""
    from ratscore.synth import make_config, plan_clips, write_video

    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    config = make_config({"resolutions": [[320, 240]]})
    times, cpu = [], []
    with tempfile.TemporaryDirectory() as out:
        for plan in plan_clips(n_clips, seed=123, config=config):
            t0, c0 = time.perf_counter(), time.process_time()
            write_video(plan, out, config)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return times, cpu


def long_peak_rss_mb(minutes: float) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of a fresh process making one long 320x240 recording."""
    code = (
        "import sys, tempfile; from ratscore.synth import make_config, plan_long, write_video\n"
        "c = make_config({'resolutions': [[320, 240]]})\n"
        "with tempfile.TemporaryDirectory() as d: write_video(plan_long(float(sys.argv[1]), 1, 0, c), d, c)\n"
        "from ratscore.runtime import peak_rss_mb; print(peak_rss_mb())\n"
    )
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, str(minutes)], check=True, capture_output=True, text=True)
    return float(out.stdout.split()[-1]), time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=5)
    parser.add_argument("--long", type=float, nargs="*", default=[1.0, 5.0])
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    times, cpu = clip_speed(args.clips)
    print(f"10 s 320x240 clip, one core: wall mean {sum(times) / len(times):.2f} s, max {max(times):.2f} s; "
          f"CPU mean {sum(cpu) / len(cpu):.2f} s, max {max(cpu):.2f} s over {len(times)} clips")
    for minutes in args.long:
        rss, wall = long_peak_rss_mb(minutes)
        print(f"long recording {minutes:g} min 320x240: peak RSS {rss:.0f} MB, {wall:.1f} s wall")


if __name__ == "__main__":
    main()
