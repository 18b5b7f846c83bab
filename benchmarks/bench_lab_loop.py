"""The lab's loop on real recordings: does `train detector --videos` on the first part of a
recording make the box hold the animal in the rest, which it never trained on?

    .venv/bin/python benchmarks/bench_lab_loop.py REAL [--model DIR] [--work DIR] [--split 0.5]
        [--only STEM,...] [--epochs 15]

REAL is a folder that `real_set.py` wrote (REAL/<set>/videos and REAL/<set>/positions), or any
folder of such set folders. For each recording it:

1. cuts the recording at `--split` of its length: the first part (every frame, as decoded) is the
   lab's own footage, the second is measured, with the labelled moments that fall in it (times
   moved to the part's start);
2. runs `ratscore train detector --videos FIRST_PART -o ADAPTED --model BASE` (the motion model
   labels the frames; nobody draws a box), in a fresh process; a refusal (too few clear frames
   in a short first part) is a row with its one line;
3. runs bench_real_roi.py on the second part with the base model and with the adapted one.

It prints one table (box holds, trust and highest stage, base against adapted, and the adapted
detector's validation mAP50) and writes WORK/lab_loop.md and WORK/lab_loop.csv. A recording's
parts, training and analyses already in WORK are reused (the training resumes as the command
does). Issue 23's item 4 asks for exactly this judgement: against true positions on recordings the
detector did not learn from, not against the motion model that labelled its frames.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_real_roi import read_positions, recordings as recordings_in, write_positions, write_tables  # noqa: E402
from ratscore.training.detector import map50  # noqa: E402
from ratscore.video import probe_video, read_frames, write_h264  # noqa: E402

COLUMNS = ["recording", "moments", "base_hold", "base_trust", "base_stage", "adapted_hold", "adapted_trust",
           "adapted_stage", "validation_map50", "note"]


class MeasureError(Exception):
    """bench_real_roi.py failed on a part: its last line."""


def recordings(real: Path) -> list[tuple[Path, Path]]:
    """(video, positions file) of every recording under REAL: in REAL/videos or REAL/*/videos."""
    folders = [real, *sorted(p for p in real.iterdir() if p.is_dir())]
    return [pair for folder in folders for pair in recordings_in(folder / "videos", folder / "positions")]


def last_line(run: subprocess.CompletedProcess, what: str) -> str:
    """A failed command's last line on stderr (its one-line error), or its exit status."""
    lines = [line for line in run.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"{what} exit {run.returncode}"


def link_into(folder: Path, source: Path) -> None:
    """`source` in `folder` under its own name, as a link (the commands read whole folders)."""
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / source.name
    if not link.exists():
        link.symlink_to(source.resolve())


def cut(video: Path, positions: Path, split: float, work: Path) -> tuple[Path, Path, Path]:
    """The recording's two parts (first/<stem>.mp4, last/<stem>.mp4: every source frame before and
    from `split` of its length) and the second's positions (last_positions/<stem>.positions.csv,
    times from its first frame). Streams: a recording is decoded once per part. Parts made before
    for the same split are reused (cut.json holds where they were cut)."""
    stem = video.stem
    first, last = work / "first" / f"{stem}.mp4", work / "last" / f"{stem}.mp4"
    last_positions = work / "last_positions" / f"{stem}.positions.csv"
    record = work / "cut.json"
    info = probe_video(video)
    fps = info.source_fps or 30.0
    made = json.loads(record.read_text()) if record.is_file() else {}
    if made.get("split") != split or not first.is_file() or not last.is_file():
        duration = info.duration_s or sum(1 for _ in read_frames(video, fps=fps)) / fps
        at_s = split * duration
        start = []

        def part(second: bool):
            for frame in read_frames(video, fps=fps):  # every source frame, upright
                if (frame.t_s >= at_s) == second:
                    if second and not start:
                        start.append(frame.t_s)
                    yield frame.image
                elif not second:
                    return

        work.mkdir(parents=True, exist_ok=True)
        for path, second in ((first, False), (last, True)):
            path.parent.mkdir(parents=True, exist_ok=True)
            write_h264(path, part(second), fps, {"crf": "18", "preset": "medium"})  # whole or absent
        made = {"split": split, "cut_s": start[0] if start else duration}
        record.write_text(json.dumps(made) + "\n")
    cut_s = float(made["cut_s"])
    last_positions.parent.mkdir(parents=True, exist_ok=True)
    write_positions(last_positions, [{**p, "t": p["t"] - cut_s} for p in read_positions(positions) if p["t"] >= cut_s])
    return first, last, last_positions


def adapt(first: Path, base: Path | None, adapted: Path, epochs: int) -> str:
    """Run `train detector --videos` on the folder holding the first part; '' or its error line."""
    videos = first.parent / first.stem  # a folder of its own: the command reads every video in it
    link_into(videos, first)
    command = [sys.executable, "-m", "ratscore", "train", "detector", "--videos", str(videos), "-o", str(adapted),
               "--epochs", str(epochs), "--device", "cpu"] + (["--model", str(base)] if base else [])
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    return last_line(run, "ratscore") if run.returncode != 0 else ""


def measure(last: Path, last_positions: Path, model: Path | None, out: Path, seizures: list[str]) -> dict:
    """bench_real_roi.py's row for the second part with `model` (None: the bundled one)."""
    videos = out / "videos"
    positions = out / "positions"
    link_into(videos, last)
    link_into(positions, last_positions)
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_real_roi.py"), str(videos), str(positions),
               "--out", str(out / "analyses")] + (["--model", str(model)] if model else [])
    if seizures:
        command += ["--seizures", ",".join(seizures)]
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if run.returncode != 0:  # one recording's failure is its row's note, not the end of the run
        raise MeasureError(last_line(run, "bench_real_roi.py"))
    with open(out / "analyses" / "real_roi.csv", newline="") as f:
        return next(csv.DictReader(f))


def validation_map50(adapted: Path) -> str:
    try:
        manifest = json.loads((adapted / "manifest.json").read_text())
    except (OSError, ValueError):
        return ""
    value = map50((manifest.get("benchmark") or {}).get("detector_fine_tune") or {})
    return "" if value is None else f"{value:.2f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("real", type=Path, help="a folder real_set.py wrote")
    parser.add_argument("--model", type=Path, default=None, help="the base model (default: the bundled one)")
    parser.add_argument("--work", type=Path, default=Path("bench_lab_loop_work"))
    parser.add_argument("--split", type=float, default=0.5, help="the share of each recording adapted on")
    parser.add_argument("--only", default="", help="comma-separated stems")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seizures", default="kt27_homecage_seizure",
                        help="comma-separated stems of recordings that hold a real seizure")
    args = parser.parse_args(argv)
    if not 0.0 < args.split < 1.0:
        print("bench_lab_loop: --split is a share of each recording, between 0 and 1", file=sys.stderr)
        return 2
    wanted = {s.strip() for s in args.only.split(",") if s.strip()}
    pairs = [(v, p) for v, p in (recordings(args.real) if args.real.is_dir() else [])
             if not wanted or v.stem in wanted]
    if not pairs:
        print(f"bench_lab_loop: no recording with its positions under {args.real}", file=sys.stderr)
        return 2
    seizures = [s for s in args.seizures.split(",") if s]
    rows = []
    for video, positions in pairs:
        stem = video.stem
        work = args.work / stem
        print(f"{stem} ...", flush=True)
        first, last, last_positions = cut(video, positions, args.split, work)
        moments = sum(1 for _ in open(last_positions)) - 1
        row = {"recording": stem, "moments": moments}
        rows.append(row)
        its_seizure = [s for s in seizures if s == stem]
        try:
            base = measure(last, last_positions, args.model, work / "base", its_seizure)
            row.update(base_hold=base["hold"], base_trust=base["trust"], base_stage=base["max_stage"])
            adapted = work / "adapted"
            error = adapt(first, args.model, adapted, args.epochs)
            if error:
                row["note"] = error
                continue
            mine = measure(last, last_positions, adapted, work / "adapted_run", its_seizure)
            row.update(adapted_hold=mine["hold"], adapted_trust=mine["trust"], adapted_stage=mine["max_stage"],
                       validation_map50=validation_map50(adapted), note=mine.get("reasons", ""))
        except MeasureError as e:
            row["note"] = f"not measured: {e}"
    print("\n".join(write_tables(rows, COLUMNS, args.work, "lab_loop")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
