"""report.html: what the page shows, the timeline inline as PNG and the video's frames as JPEG, and
every value escaped."""

from __future__ import annotations

import base64
import re

import numpy as np

from ratscore.labels import RacineMap
from ratscore.report import render_report
from ratscore.timeline import Event, ScoringOptions, score_events

EVENTS = [
    Event(1.0, 3.5, 7, 0.91),  # bilateral forelimb clonus: stage 4
    Event(2.0, 2.6, 3, 0.55),  # wet dog shakes: counted, no stage
    Event(30.0, 34.25, 10, 0.777),  # falling: stage 5, a second episode
]


def scoring(video="rat01", model="test-model", events=EVENTS):
    return score_events(events, video, 120.0, 29.97, model, RacineMap(), ScoringOptions())


def data_uris(page, kind="png"):
    return re.findall(rf"src='data:image/{kind};base64,([A-Za-z0-9+/=]+)'", page)


def test_report_shows_summary_episodes_events_and_stills():
    still = np.zeros((24, 30, 3), np.uint8)
    still[..., 0] = 200
    page = render_report(scoring(), [still, None])
    assert page.startswith("<!DOCTYPE html>") and page.endswith("</html>\n")
    assert "<title>ratscore: rat01</title>" in page and "<h1>rat01</h1>" in page
    assert ("<p>Model <b>test-model</b>; duration 120.0 s at 29.97 fps; 3 events, 2 seizure episodes, "
            "max Racine stage <b>5</b>, wet dog shakes: 1.</p>") in page
    assert "stage &ge; 4: 1.0 s, stage &ge; 5: 30.0 s." in page  # the entity is markup, not escaped text
    assert ("<tr><td>1</td><td>1.00</td><td>3.50</td><td>2.50</td><td>4</td>"
            "<td>bilateral forelimb clonus</td><td>1</td><td><img class='still' alt='episode 1' src='data:") in page
    assert "<tr><td>2</td><td>30.00</td><td>34.25</td><td>4.25</td><td>5</td><td>falling</td><td>1</td><td></td></tr>" in page
    # the wet dog shake has no stage: an empty cell, not "nan" or "None"
    assert "<tr><td>2</td><td>2.00</td><td>2.60</td><td>wet dog shakes</td><td></td><td>0.55</td></tr>" in page
    assert "<tr><td>3</td><td>30.00</td><td>34.25</td><td>falling</td><td>5</td><td>0.78</td></tr>" in page
    assert "Trust:" not in page  # no trust block without trust figures
    (timeline,) = data_uris(page)
    (episode_still,) = data_uris(page, "jpeg")  # the second episode has no still
    assert base64.b64decode(timeline).startswith(b"\x89PNG\r\n\x1a\n")
    assert base64.b64decode(episode_still).startswith(b"\xff\xd8\xff")
    import cv2

    decoded = cv2.imdecode(np.frombuffer(base64.b64decode(episode_still), np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (24, 30, 3)
    assert abs(int(decoded[0, 0, 2]) - 200) <= 3 and decoded[0, 0, :2].max() <= 3  # BGR: red, as it was


def test_a_noisy_camera_frame_is_a_fraction_of_its_png_size_in_the_report():
    """The point of JPEG for the video's frames: a page of real footage stays small enough to mail."""
    import cv2

    from ratscore.report import _frame_data_uri

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:180, 0:240]
    frame = np.clip(np.stack([x / 2, y, (x + y) / 3], -1) + rng.normal(0, 6, (180, 240, 3)), 0, 255).astype(np.uint8)
    png = cv2.imencode(".png", frame)[1].tobytes()
    jpeg = base64.b64decode(_frame_data_uri(frame).split(",", 1)[1])
    assert len(jpeg) * 3 < len(png)
    back = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert np.abs(back.astype(int) - frame).mean() < 6  # within the camera's own noise


def test_report_trust_and_nothing_found():
    s = scoring(events=[])
    s.summary["trust"] = {"familiar": False, "reasons": ["too dark", "camera angle"], "rat_found_fraction": 0.4567,
                          "feature_distance": 3.14159, "feature_distance_limit": 2.0}
    page = render_report(s)
    assert "<div class='warn'><b>Unfamiliar footage: check this scoring by hand.</b> too dark; camera angle</div>" in page
    assert ("<p>Trust: rat found in 45.7% of frames; feature distance to the training set 3.14 "
            "(typical up to 2.00).</p>") in page
    assert "<p>None found.</p>" in page and "Latency to the first event: no seizure events.</p>" in page
    assert len(data_uris(page)) == 1  # the timeline only
    assert "The whole picture changed" not in page  # no cut, no sentence
    s.summary["trust"]["motion"] = {"scene_cuts_s": [[1834.0, 1836.0], [7200.5, 7201.0]]}
    assert ("<p>The whole picture changed (lights switched or faded) between 1834-1836, 7200.5-7201 s: the motion "
            "model learned a background for each stretch.</p>") in render_report(s)
    s.summary["trust"] = {"familiar": True, "rat_found_fraction": None, "feature_distance": None}
    page = render_report(s)
    assert "<p>Trust: rat found in n/a (whole frame).</p>" in page and "warn" not in page.split("</style>")[1]


def test_report_escapes_every_value():
    s = scoring(video="<script>alert(1)</script>&", model="m<script>")
    s.summary["trust"] = {"familiar": False, "reasons": ["<script>bad()</script>"], "rat_found_fraction": 1.0}
    page = render_report(s)
    assert "<script" not in page
    assert "<h1>&lt;script&gt;alert(1)&lt;/script&gt;&amp;</h1>" in page
    assert "<b>m&lt;script&gt;</b>" in page
    assert "&lt;script&gt;bad()&lt;/script&gt;</div>" in page


def test_report_and_timeline_png_show_one_picture_drawn_once(tmp_path, monkeypatch):
    from ratscore import plots
    from ratscore.writers import write_scoring

    drawn = []
    figure = plots.timeline_figure
    monkeypatch.setattr(plots, "timeline_figure", lambda s: drawn.append(s) or figure(s))
    write_scoring(scoring(), tmp_path, "rat01", formats=("timeline", "report"))
    png = (tmp_path / "rat01.timeline.png").read_bytes()
    timeline = data_uris((tmp_path / "rat01.report.html").read_text())[0]
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and base64.b64decode(timeline) == png
    assert len(drawn) == 1


def test_the_timeline_picture_is_drawn_again_when_what_it_shows_changes(monkeypatch):
    from ratscore import plots

    drawn = []
    figure = plots.timeline_figure
    monkeypatch.setattr(plots, "timeline_figure", lambda s: drawn.append(s) or figure(s))
    s = scoring()
    first = s.timeline_png
    assert s.timeline_png is first and len(drawn) == 1  # kept while nothing changes
    s.summary["trust"] = {"familiar": False, "reasons": ["the rat was found in only 12% of frames"]}
    flagged = s.timeline_png  # the pipeline adds the trust after the tables: the flag must show
    assert len(drawn) == 2 and flagged != first
    s.events.loc[0, "score"] = 0.1
    assert s.timeline_png != flagged and len(drawn) == 3
