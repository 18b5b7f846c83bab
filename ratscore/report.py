"""`<stem>.report.html`: one self-contained page per video for a technician's browser.

Everything is inline (the pictures as base64 PNG), so the file can be mailed or archived alone.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Optional, Sequence

import numpy as np


def _png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _rgb_to_png(rgb: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("could not encode a still as PNG")
    return buf.tobytes()


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    try:
        import pandas as pd

        if pd.isna(value):
            return ""
    except (TypeError, ValueError):
        pass
    return html.escape(str(value))


def render_report(scoring, stills: Sequence[Optional[np.ndarray]] = ()) -> str:
    """The page: summary, trust, the timeline picture, the episode table with a still per episode.

    `stills[i]` is the rat's crop (RGB) at the peak of episode i + 1, or None when it could not be
    read back from the video.
    """
    from .plots import plot_timeline

    buf = io.BytesIO()
    plot_timeline(scoring, buf)
    s = scoring.summary
    trust = s.get("trust") or {}
    esc = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>ratscore: {esc(scoring.video)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1250px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        "th{background:#f3f3f3}.warn{background:#fff3cd;border:1px solid #e0b000;padding:0.8em;margin:1em 0}"
        "img.still{height:140px}</style></head><body>",
        f"<h1>{esc(scoring.video)}</h1>",
        f"<p>Model <b>{esc(str(s.get('model', '')))}</b>; duration {s['duration_s']:.1f} s at "
        f"{s['fps']:g} fps; {s['n_events']} events, {s['n_episodes']} seizure episodes, "
        f"max Racine stage <b>{s['max_stage']}</b>, wet dog shakes: {s['wet_dog_shakes']}.</p>",
    ]
    if trust:
        if not trust.get("familiar", True):
            parts.append("<div class='warn'><b>Unfamiliar footage: check this scoring by hand.</b> "
                         + esc("; ".join(trust.get("reasons", []))) + "</div>")
        found = trust.get("rat_found_fraction")
        dist = trust.get("feature_distance")
        parts.append("<p>Trust: rat found in "
                     + ("n/a (whole frame)" if found is None else f"{100 * found:.1f}% of frames")
                     + ("" if dist is None else f"; feature distance to the training set {dist:.2f} "
                        f"(typical up to {trust.get('feature_distance_limit', float('nan')):.2f})")
                     + ".</p>")
    latency = s.get("latency_s", {})
    lat = ", ".join(f"stage &ge; {k}: {v:.1f} s" for k, v in latency.items() if v is not None)
    parts.append(f"<p>Latency to the first event: {lat or 'no seizure events'}.</p>")
    parts.append(f"<img alt='Racine timeline' src='{_png_data_uri(buf.getvalue())}' style='width:100%'>")
    parts.append("<h2>Seizure episodes</h2>")
    if scoring.episodes.empty:
        parts.append("<p>None found.</p>")
    else:
        parts.append("<table><tr><th>episode</th><th>onset (s)</th><th>offset (s)</th><th>duration (s)</th>"
                     "<th>max stage</th><th>action units</th><th>events</th><th>at the peak</th></tr>")
        for i, ep in enumerate(scoring.episodes.itertuples(index=False)):
            still = stills[i] if i < len(stills) else None
            img = ("" if still is None else
                   f"<img class='still' alt='episode {ep.episode}' src='{_png_data_uri(_rgb_to_png(still))}'>")
            parts.append(f"<tr><td>{ep.episode}</td><td>{ep.onset_s:.2f}</td><td>{ep.offset_s:.2f}</td>"
                         f"<td>{ep.duration_s:.2f}</td><td>{_fmt(ep.max_stage)}</td><td>{_fmt(ep.aus)}</td>"
                         f"<td>{ep.n_events}</td><td>{img}</td></tr>")
        parts.append("</table>")
    parts.append("<h2>Events</h2><table><tr><th>#</th><th>start (s)</th><th>end (s)</th><th>action unit</th>"
                 "<th>stage</th><th>score</th></tr>")
    for ev in scoring.events.itertuples(index=False):
        parts.append(f"<tr><td>{ev.event}</td><td>{ev.start_s:.2f}</td><td>{ev.end_s:.2f}</td><td>{_fmt(ev.au)}</td>"
                     f"<td>{_fmt(ev.racine_stage)}</td><td>{ev.score:.2f}</td></tr>")
    parts.append("</table></body></html>\n")
    return "\n".join(parts)


def episode_peaks(scoring) -> list[float]:
    """For each episode, the time (s) at the middle of its highest-stage event (best score wins ties)."""
    peaks = []
    events = scoring.events
    for ep in scoring.episodes.itertuples(index=False):
        inside = events[(events.start_s >= ep.onset_s) & (events.end_s <= ep.offset_s)]
        if inside.empty:
            peaks.append((ep.onset_s + ep.offset_s) / 2)
            continue
        stage = inside.racine_stage.fillna(-1).astype(int)
        best = inside.assign(_stage=stage).sort_values(["_stage", "score"], ascending=False).iloc[0]
        peaks.append(float(best.start_s + best.end_s) / 2)
    return peaks
