"""`<stem>.report.html`: one self-contained page per video for a technician's browser.

Everything is inline (base64 data URIs: the timeline picture as PNG, the frames of the video as
JPEG, several times smaller than PNG on camera footage), so the file can be mailed or archived
alone.
The markup is in templates/report.html.j2; this module only prepares the values it shows
(formatted as text: the template escapes them).
"""

from __future__ import annotations

import base64
import functools
from typing import Mapping, Optional, Sequence

import numpy as np

TEMPLATE = "report.html.j2"


@functools.lru_cache(maxsize=1)
def _template():
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("ratscore", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "html.j2"]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    return env.get_template(TEMPLATE)


JPEG_QUALITY = 90  # the video's frames: the animal, the box and the rig stay sharp to the eye


def _png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _frame_data_uri(rgb: np.ndarray) -> str:
    """A frame of the video (RGB) as a JPEG data URI: camera noise makes PNG, which keeps every
    pixel, several times larger for no difference a reader sees."""
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("could not encode a frame as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _text(value) -> str:
    """A table cell's text; empty for a missing value (None, NaN, pandas' NA)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    try:
        import pandas as pd

        if pd.isna(value):
            return ""
    except (TypeError, ValueError):
        pass
    return str(value)


def _trust(trust: dict) -> Optional[dict]:
    if not trust:
        return None
    found = trust.get("rat_found_fraction")
    dist = trust.get("feature_distance")
    cuts = (trust.get("motion") or {}).get("scene_cuts_s") or []
    return {
        "unfamiliar": not trust.get("familiar", True),
        "reasons": "; ".join(trust.get("reasons", [])),
        "found": "n/a (whole frame)" if found is None else f"{100 * found:.1f}% of frames",
        "distance": None if dist is None else f"{dist:.2f}",
        "distance_limit": f"{trust.get('feature_distance_limit', float('nan')):.2f}",
        "cuts": ", ".join(f"{a:g}-{b:g}" for a, b in cuts),  # where the motion model saw the lights change
    }


STRIP_STILLS = 8  # frames in the report's strip, at evenly spaced moments
STRIP_WIDTH = 240  # pixels: each strip frame is shrunk to this width
FOUND_RGB = (0, 200, 0)  # the box where the animal was found
HELD_RGB = (255, 140, 0)  # the box where it was held or guessed (found = 0)


def strip_rows(n_frames: int, n: int = STRIP_STILLS) -> list[int]:
    """The track rows (frames of the model's grid) the strip shows: the middle of n equal parts."""
    return [min(n_frames - 1, int((k + 0.5) * n_frames / n)) for k in range(n)]


def strip_image(frame, width: int = STRIP_WIDTH) -> np.ndarray:
    """A whole frame (RGB; numpy, or a torch tensor from the torchcodec decoder) as the strip shows
    it: shrunk to `width` when wider. Small enough to keep from the main pass (crops.VideoCrops)."""
    import cv2

    from .video import to_numpy

    image = np.ascontiguousarray(to_numpy(frame))
    h, w = image.shape[:2]
    if w <= width:
        return image.copy()
    return cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


def track_strip(video, track, kept: Optional[Mapping[int, np.ndarray]] = None, n: int = STRIP_STILLS,
                width: int = STRIP_WIDTH) -> list[dict]:
    """Frames at n evenly spaced moments of the video (strip_rows) with the track's box drawn: dicts
    of t_s, found and image (RGB; None where the frame could not be read). `kept`: strip_image of
    track rows the main pass kept (crops.VideoCrops); a row it lacks is read back from the video."""
    from .video import crop_at

    if track is None or not len(track):
        return []
    found, boxes = track.found(), track.boxes
    strip = []
    for i in strip_rows(len(track), n):
        t = i / track.fps
        try:
            image = kept.get(i) if kept else None
            image = strip_image(crop_at(video, t), width) if image is None else image.copy()
            draw_box(image, boxes[i] * (image.shape[1] / (track.width or image.shape[1])), bool(found[i]))
        except Exception:  # noqa: BLE001 - a still that cannot be read is left out, not the report
            image = None
        strip.append({"t_s": t, "found": bool(found[i]), "image": image})
    return strip


def draw_box(image: np.ndarray, box, found: bool) -> None:
    """The box (in image pixels) drawn on the image, in place."""
    import cv2

    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    cv2.rectangle(image, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), FOUND_RGB if found else HELD_RGB, 2)


def render_report(scoring, stills: Sequence[Optional[np.ndarray]] = ()) -> str:
    """The page: summary, trust, the timeline picture, the episode table with a still per episode.

    `stills[i]` is the rat's crop (RGB) at the peak of episode i + 1, or None when it could not be
    read back from the video.
    """
    s = scoring.summary
    episodes = []
    for i, ep in enumerate(scoring.episodes.itertuples(index=False)):
        still = stills[i] if i < len(stills) else None
        episodes.append({
            "episode": ep.episode, "onset_s": f"{ep.onset_s:.2f}", "offset_s": f"{ep.offset_s:.2f}",
            "duration_s": f"{ep.duration_s:.2f}", "max_stage": _text(ep.max_stage), "aus": _text(ep.aus),
            "n_events": ep.n_events, "still": None if still is None else _frame_data_uri(still),
        })
    events = [{"event": ev.event, "start_s": f"{ev.start_s:.2f}", "end_s": f"{ev.end_s:.2f}", "au": _text(ev.au),
               "stage": _text(ev.racine_stage), "score": f"{ev.score:.2f}"}
              for ev in scoring.events.itertuples(index=False)]
    strip = [{"t_s": f"{f['t_s']:.1f}", "found": f["found"],
              "image": None if f["image"] is None else _frame_data_uri(f["image"])}
             for f in getattr(scoring, "strip", ())]
    return _template().render(
        video=str(scoring.video),
        model=str(s.get("model", "")),
        duration_s=f"{s['duration_s']:.1f}",
        fps=f"{s['fps']:g}",
        n_events=s["n_events"],
        n_episodes=s["n_episodes"],
        max_stage=s["max_stage"],
        wet_dog_shakes=s["wet_dog_shakes"],
        trust=_trust(s.get("trust") or {}),
        latency=[(k, f"{v:.1f}") for k, v in s.get("latency_s", {}).items() if v is not None],
        timeline_png=_png_data_uri(scoring.timeline_png),
        episodes=episodes,
        events=events,
        strip=strip,
    )
