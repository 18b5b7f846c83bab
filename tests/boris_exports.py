"""BORIS 8's tabular and aggregated event exports, written by the tests themselves (modelled on
what BORIS writes; no file of BORIS's is copied): shared by test_boris.py and test_lab_loop.py."""

import csv

import pandas as pd

TABULAR_HEADER = ["Observation id", "Observation date", "Description", "Observation duration",
                  "Observation type", "Source", "Time offset (s)", "Media duration (s)", "FPS", "Subject",
                  "Behavior", "Behavioral category", "Modifier #1", "Behavior type", "Time",
                  "Media file name", "Image index", "Image file path", "Comment"]
AGGREGATED_HEADER = ["Observation id", "Observation date", "Description", "Observation type", "Source",
                     "Time offset (s)", "Coding duration", "Media duration (s)", "FPS (frame/s)", "Subject",
                     "Observation duration by subject by observation", "Behavior", "Behavioral category",
                     "Modifier #1", "Behavior type", "Start (s)", "Stop (s)", "Duration (s)", "Media file name",
                     "Image index start", "Image index stop", "Image file path start", "Image file path stop",
                     "Comment start", "Comment stop"]

# (observation, media files of player #1, their lengths, time offset, [(code, modifier, start, stop)]):
# times on the media, which BORIS writes with the offset added; stop None: a point event. rat2
# plays two files, one after the other; its last state runs across their join.
LAB_EVENTS = [
    ("rat1 kindling", ["D:/study/rat1.mp4"], [600.0], 0.0,
     [("HN", "", 10.0, 12.5), ("WDS", "", 15.0, None), ("FLC", "left", 20.0, 24.0), ("groom", "", 30.0, 40.0)]),
    ("rat2 kindling", ["/study/rat2_a.mp4", "/study/rat2_b.mp4"], [100.0, 100.0], 5.0,
     [("HN", "", 7.0, 9.0), ("FLC", "", 98.0, 106.0)]),
]
EXPECTED = {
    "rat1": [(10.0, 12.5, "head nodding"), (15.0, 15.5, "wet dog shakes"),
             (20.0, 24.0, "unilateral forelimb clonus")],
    "rat2_a": [(7.0, 9.0, "head nodding"), (98.0, 100.0, "unilateral forelimb clonus")],
    "rat2_b": [(0.0, 6.0, "unilateral forelimb clonus")],
}


def source_columns(files, lengths):
    return ("player #1:" + ";".join(files), ";".join(f"{x:.3f}" for x in lengths), ";".join("25.000" for _ in files))


def media_at(files, lengths, t):
    edge = 0.0
    for f, x in zip(files, lengths):
        edge += x
        if t < edge:
            return f
    return files[-1]


def tabular_rows(lab_events):
    rows = [TABULAR_HEADER]
    for obs, files, lengths, offset, events in lab_events:
        source, durations, fps = source_columns(files, lengths)
        flat = []
        for code, modifier, start, stop in events:
            if stop is None:
                flat.append((start + offset, code, modifier, "POINT"))
            else:
                flat += [(start + offset, code, modifier, "START"), (stop + offset, code, modifier, "STOP")]
        for t, code, modifier, kind in sorted(flat):
            rows.append([obs, "2024-03-01 09:00:00.000", "", "600.000", "Media file(s)", source, str(offset),
                         durations, fps, "", code, "", modifier, kind, f"{t:.3f}",
                         media_at(files, lengths, t - offset), "NA", "NA", ""])
    return rows


def aggregated_rows(lab_events):
    rows = [AGGREGATED_HEADER]
    for obs, files, lengths, offset, events in lab_events:
        source, durations, fps = source_columns(files, lengths)
        for code, modifier, start, stop in sorted(events, key=lambda e: e[2]):
            point = stop is None
            stop = start if point else stop
            rows.append([obs, "2024-03-01 09:00:00.000", "", "Media file", source, str(offset), "600.000",
                         durations, fps, "No focal subject", "123.000", code, "Not defined", modifier,
                         "POINT" if point else "STATE", f"{start + offset:.3f}", f"{stop + offset:.3f}",
                         "NA" if point else f"{stop - start:.3f}", media_at(files, lengths, start),
                         "NA", "NA", "NA", "NA", "", ""])
    return rows


def write_table(path, rows, sheet="Aggregated events"):
    if path.suffix == ".xlsx":
        pd.DataFrame(rows[1:], columns=rows[0]).to_excel(path, index=False, sheet_name=sheet)
    else:
        with open(path, "w", newline="", encoding="utf-8") as f:
            csv.writer(f, delimiter="\t" if path.suffix == ".tsv" else ",").writerows(rows)
    return path
