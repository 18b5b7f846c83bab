"""Real recordings: does the ROI box hold the animal, or does trust flag the recording?

    .venv/bin/python benchmarks/bench_real_roi.py VIDEOS POSITIONS [--model DIR] [--out DIR]
        [--device cpu] [--reuse]

For each video in the folder VIDEOS that has a `<stem>.positions.csv` in POSITIONS (columns
time_s,x,y[,w,h]: the animal's centre, and its extent when known, in source-video pixels, at a
few labelled moments), runs `ratscore analyze VIDEO -o OUT/<stem>` in a fresh process (this
interpreter, this environment, so PYTHONPATH applies) and reads `<stem>.track.csv` and
`<stem>.summary.json`. It reports, per recording:

- hold: the share of labelled moments whose box holds the animal. The box at the track row
  nearest in time holds it when it contains the labelled centre and is not much larger than the
  animal: area <= 4x the animal's w*h when the positions give w,h, else <= 25% of the frame.
  A box covering (nearly) the whole frame holds nothing.
- found: the share of track rows the detector (or the motion model) marked found.
- trust: familiar, or UNFAMILIAR with the reasons summary.json gives.
- max stage: the highest Racine stage reported.
- target: issue 23's targets for real footage: "the animal boxed in at least 90% of labelled
  moments, or the recording flagged", and "no recording of normal behaviour at stage 3 or higher
  without the flag" (recordings named in --seizures hold a real seizure and are exempt from the
  second): ok, or MISSED with which.

It prints a table and writes OUT/real_roi.csv and OUT/real_roi.md. With `--record SET`, the rows
also go into the model folder's manifest (`benchmark.real_footage`, replacing that set's earlier
rows), which the model card shows; a `<stem>.about.txt` in POSITIONS says in a few words what
the recording shows. The recordings are public
clips under their own licences: keep them, and their positions, out of the repository.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from ratscore.video import VIDEO_SUFFIXES, probe_video

MAX_AREA_VS_ANIMAL = 4.0  # box area / animal w*h, when the positions give the animal's extent
MAX_AREA_VS_FRAME = 0.25  # box area / frame area, when they do not
WHOLE_FRAME = 0.9  # a box covering this much of the frame is no box at all
TARGET = 0.9


def read_positions(path: Path) -> list[dict]:
    """A <stem>.positions.csv: {"t", "x", "y"[, "w", "h"]} per labelled moment."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        p = {"t": float(r["time_s"]), "x": float(r["x"]), "y": float(r["y"])}
        if r.get("w") and r.get("h"):
            p["w"], p["h"] = float(r["w"]), float(r["h"])
        out.append(p)
    return out


def write_positions(path: Path, points: list[dict]) -> None:
    """`points` as read_positions gives them, as a <stem>.positions.csv (w, h where every one has them)."""
    sized = bool(points) and all("w" in p for p in points)
    columns = ["time_s", "x", "y"] + (["w", "h"] if sized else [])
    lines = [",".join(columns)]
    lines += [",".join([f"{p['t']:.3f}"] + [f"{p[c]:g}" for c in columns[1:]]) for p in points]
    path.write_text("\n".join(lines) + "\n")


def read_track(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{"t": float(r["time_s"]), "found": r["found"] == "1",
                 "box": tuple(float(r[k]) for k in ("x1", "y1", "x2", "y2"))} for r in csv.DictReader(f)]


def holds(box, p: dict, frame_area: float) -> bool:
    x1, y1, x2, y2 = box
    area = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    if area >= WHOLE_FRAME * frame_area:
        return False
    if not (x1 <= p["x"] <= x2 and y1 <= p["y"] <= y2):
        return False
    if "w" in p:
        return area <= MAX_AREA_VS_ANIMAL * p["w"] * p["h"]
    return area <= MAX_AREA_VS_FRAME * frame_area


def nearest(track: list[dict], t: float) -> dict:
    # rows in time order, on the model's grid (whatever its frame rate): the two around t
    i = bisect.bisect_left([r["t"] for r in track], t)
    return min(track[max(i - 1, 0):i + 1], key=lambda r: abs(r["t"] - t))


def analyze(video: Path, out: Path, args) -> str | None:
    """Runs ratscore analyze; returns None, or the error it printed."""
    cmd = [sys.executable, "-m", "ratscore.cli", "analyze", str(video), "-o", str(out), "--device", args.device]
    if args.model:
        cmd += ["--model", args.model]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return lines[-1] if lines else f"exit code {proc.returncode}"
    return None


def measure(video: Path, positions: Path, args) -> dict:
    stem = video.stem
    out = Path(args.out) / stem
    row = {"recording": stem, "moments": "", "held": "", "hold": "", "found": "", "trust": "", "reasons": "",
           "max_stage": "", "target": "", "note": ""}
    summary_path, track_path = out / f"{stem}.summary.json", out / f"{stem}.track.csv"
    if not (args.reuse and summary_path.is_file()):
        error = analyze(video, out, args)
        if error:
            row["note"] = f"analyze failed: {error}"
            return row
    summary = json.loads(summary_path.read_text())
    trust = summary.get("trust", {})
    familiar = bool(trust.get("familiar", True))
    row["trust"] = "familiar" if familiar else "UNFAMILIAR"
    row["reasons"] = "; ".join(trust.get("reasons", []))
    row["max_stage"] = summary.get("max_stage", "")
    if not track_path.is_file():
        row["note"] = f"no {track_path.name}: this ratscore does not write track.csv, so the box cannot be checked"
        return row
    track = read_track(track_path)
    points = read_positions(positions)
    info = probe_video(video)  # upright, as track.csv's boxes
    width, height = info.width, info.height
    held = sum(holds(nearest(track, p["t"])["box"], p, width * height) for p in points)
    share = held / len(points) if points else 0.0
    row["_record"] = {"recording": stem, "moments": len(points), "hold": round(share, 3), "familiar": familiar,
                      "reasons": trust.get("reasons", []), "max_stage": row["max_stage"]}
    row.update(moments=len(points), held=held, hold=f"{share:.0%}",
               found=f"{sum(r['found'] for r in track) / len(track):.0%}",
               target=target(share, familiar, row["max_stage"], stem in args.seizures))
    return row


def target(share: float, familiar: bool, max_stage, seizure: bool) -> str:
    missed = []
    if familiar and share < TARGET:
        missed.append(f"held under {TARGET:.0%} and familiar")
    if familiar and not seizure and isinstance(max_stage, (int, float)) and max_stage >= 3:
        missed.append("normal behaviour at stage >= 3 and familiar")
    return "MISSED: " + "; ".join(missed) if missed else "ok"


def record(rows: list[dict], pairs, args) -> None:
    """The rows into the model's manifest, benchmark.real_footage (one writer: model.update_model)."""
    from ratscore.model import BUNDLED_MODEL_DIR, read_manifest, update_model

    model_dir = Path(args.model) if args.model else BUNDLED_MODEL_DIR
    about = {v.stem: p.with_name(f"{v.stem}.about.txt") for v, p in pairs}
    new = [{"set": args.record, **r["_record"],
            "shows": about[r["recording"]].read_text().strip() if about[r["recording"]].is_file() else ""}
           for r in rows if "_record" in r]
    benchmark = dict(read_manifest(model_dir).get("benchmark") or {})
    kept = [r for r in benchmark.get("real_footage") or [] if r.get("set") != args.record]
    benchmark["real_footage"] = kept + new
    update_model(model_dir, {"benchmark": benchmark})
    print(f"recorded {len(new)} rows as set {args.record!r} in {model_dir / 'manifest.json'}")


def recordings(videos: Path, positions: Path) -> list[tuple[Path, Path]]:
    """(video, its <stem>.positions.csv) for each video in `videos` that has one in `positions`."""
    if not videos.is_dir():
        return []
    pairs = [(v, positions / f"{v.stem}.positions.csv") for v in sorted(videos.iterdir())
             if v.suffix.lower() in VIDEO_SUFFIXES]
    return [(v, p) for v, p in pairs if p.is_file()]


def write_tables(rows: list[dict], columns: list[str], out: Path, name: str) -> list[str]:
    """OUT/<name>.csv and OUT/<name>.md of `rows` in `columns`; the markdown table's lines."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", help="folder of recordings")
    parser.add_argument("positions", help="folder of <stem>.positions.csv files")
    parser.add_argument("--model", help="a model folder (default: the bundled model)")
    parser.add_argument("--out", default="bench_real_roi_out", help="folder for analyze's outputs and the table")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reuse", action="store_true", help="read earlier outputs in --out instead of analysing again")
    parser.add_argument("--record", metavar="SET", help="also write the rows into the model's manifest as this set")
    parser.add_argument("--seizures", default="", help="comma-separated stems of recordings that hold a real seizure")
    args = parser.parse_args()
    args.seizures = {s for s in args.seizures.split(",") if s}
    pairs = recordings(Path(args.videos), Path(args.positions))
    if not pairs:
        sys.exit(f"no video in {args.videos} has a <stem>.positions.csv in {args.positions}")
    rows = []
    for video, positions in pairs:
        print(f"{video.name} ...", flush=True)
        rows.append(measure(video, positions, args))
    if args.record:
        record(rows, pairs, args)
    lines = write_tables(rows, [c for c in rows[0] if not c.startswith("_")], Path(args.out), "real_roi")
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
