"""`ratscore analyze` on held-out synthetic long recordings: speed, peak memory, episode accuracy.

    .venv/bin/python benchmarks/bench_analyze.py --work /tmp/bench_analyze [--model models/]
        [--minutes 1 5] [--seed 4242] [--resolution 640x480] [--threshold S] [-o report.json]

For each length it makes one long recording (`ratscore synth --long-minutes`, a seed the bundled
model never saw), runs `ratscore analyze` on it in a fresh process, and reports the wall time per
minute of video, the real-time factor and the process's peak RSS. Then it compares the detected
seizure episodes with the true ones (the ground truth scored by the same timeline code): an episode
is matched when a detected one overlaps it; the figures are the share of true episodes matched with
an onset within 2 s, with the same max stage, and with both. It also gives the recording's reported
and true highest stage, and what the trust check said of it (summary.json's `familiar` and
`reasons`; on a drawn rat, boxed well, a flag is most likely the claims reason: a highest stage
with nothing leading up to it, `trust.unclimbed_peak`).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from ratscore.metrics import match_episodes, true_episodes  # noqa: E402


def run_analyze(video: Path, out: Path, model: Path, device: str, extra: list[str] = ()) -> tuple[float, float]:
    """`ratscore analyze VIDEO` in a fresh process: (wall seconds, the process's peak RSS in MB)."""
    script = ("import sys; from ratscore.cli import main; from ratscore.runtime import peak_rss_mb\n"
              "sys.argv = sys.argv[1:]\n"
              "try:\n    main()\nfinally:\n"
              "    print('PEAK_RSS_MB', peak_rss_mb(), file=sys.stderr)")
    cmd = [sys.executable, "-c", script, "ratscore", "analyze", str(video), "-o", str(out), "--model", str(model),
           "--device", device, *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"analyze failed: {proc.stderr.strip()[-500:]}")
    return wall, float(next(line.split()[1] for line in proc.stderr.splitlines() if line.startswith("PEAK_RSS_MB")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=ROOT / "models")
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 5.0])
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--resolution", default="640x480")
    parser.add_argument("--threshold", type=float, default=None,
                        help="event threshold (default: the model's own, as analyze uses it)")
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()

    from ratscore.annotations import read_annotations
    from ratscore.labels import RacineMap
    from ratscore.synth import SynthConfig, synthesize

    width, height = (int(v) for v in args.resolution.split("x"))
    config = SynthConfig(resolutions=((width, height),), boxes=False)
    rows = []
    for i, minutes in enumerate(args.minutes):
        folder = args.work / f"long_{minutes:g}min"
        if not (folder / "annotations.json").exists():
            synthesize(folder, clips=0, seed=args.seed + i, config=config, long_minutes=minutes)
        annotation = next(iter(read_annotations(folder / "annotations.json").values()))
        video = folder / f"{annotation.video_id}.mp4"
        out = args.work / f"out_{minutes:g}min"
        extra = ["--threshold", str(args.threshold)] if args.threshold is not None else []
        wall, rss_mb = run_analyze(video, out, args.model, "cpu", extra)
        found = pd.read_csv(out / f"{annotation.video_id}.episodes.csv")
        truth = true_episodes(annotation, RacineMap())
        row = {"minutes": minutes, "resolution": args.resolution, "wall_s": round(wall, 1),
               "wall_s_per_video_minute": round(wall / minutes, 1),
               "real_time_factor": round(minutes * 60 / wall, 2), "peak_rss_mb": round(rss_mb),
               **match_episodes(truth, found)}
        trust = json.loads((out / f"{annotation.video_id}.summary.json").read_text())["trust"]
        row.update(max_stage=int(found.max_stage.max()) if len(found) else 0,
                   true_max_stage=int(truth.max_stage.max()) if len(truth) else 0,
                   familiar=trust["familiar"], trust_reasons=trust["reasons"])
        rows.append(row)
        print(json.dumps(row))
    report = {"machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, no GPU",
              "model": str(args.model), "threshold": args.threshold if args.threshold is not None else "the model's",
              "runs": rows}
    if len(rows) >= 2:
        report["peak_rss_ratio_longest_to_shortest"] = round(rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"], 3)
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
