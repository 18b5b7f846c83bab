import json
from pathlib import Path

import pytest

from ratscore.annotations import (Segment, VideoAnnotation, parse_annotations, read_annotations, split,
                                  write_annotations)
from ratscore.errors import InputError

RELEASE_JSON = Path("/tmp/ratseizure.json")  # the RatSeizure release's file, where a developer has it locally


def _doc(annotations, duration=10.0, subset="training"):
    return {"database": {"vid1": {"subset": subset, "duration": duration, "annotations": annotations}}}


def test_round_trip(tmp_path):
    videos = [VideoAnnotation("a", "training", 10.0, [Segment(0.0, 2.5, 0), Segment(2.5, 10.0, 4)]),
              VideoAnnotation("b", "testing", 10.0, [Segment(1.0, 3.0, 13)], fps=30.0)]
    path = write_annotations(tmp_path / "ann.json", videos)
    back = read_annotations(path)
    assert list(back) == ["a", "b"]
    assert back["a"].segments == videos[0].segments and back["b"].fps == 30.0
    raw = json.loads(path.read_text())["database"]["a"]["annotations"][1]
    assert raw == {"segment": [2.5, 10.0], "label": "head nodding", "label_id": 4}
    assert split(back, "testing").keys() == {"b"}


@pytest.mark.parametrize("annotations, message", [
    ([{"segment": [3.0, 2.0], "label": "staring", "label_id": 1}], "does not end after it starts"),
    ([{"segment": [3.0, 3.0], "label": "staring", "label_id": 1}], "does not end after it starts"),
    ([{"segment": [3.0, 12.0], "label": "staring", "label_id": 1}], "outside the clip"),
    ([{"segment": [-1.0, 2.0], "label": "staring", "label_id": 1}], "outside the clip"),
    ([{"segment": [1.0, 2.0], "label": "grooming", "label_id": 1}], "unknown label 'grooming'"),
    ([{"segment": [1.0, 2.0], "label": "staring", "label_id": 4}], "has id 1, but label_id says 4"),
    ([{"segment": [1.0, 2.0], "label_id": 14}], "unknown label_id 14"),
    ([{"segment": [1.0], "label": "staring"}], "must be \\[start_s, end_s\\]"),
    ([{"segment": [1.0, "x"], "label": "staring"}], "finite number"),
    ([{"segment": [1.0, 2.0]}], "neither 'label' nor 'label_id'"),
])
def test_bad_annotations_name_the_video(annotations, message):
    with pytest.raises(InputError, match=message) as info:
        parse_annotations(_doc(annotations), "ann.json")
    assert "video 'vid1'" in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match="no such annotation file"):
        read_annotations(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"database": {"a": ')
    with pytest.raises(InputError, match="not valid JSON"):
        read_annotations(bad)
    bad.write_text('{"videos": []}')
    with pytest.raises(InputError, match="'database'"):
        read_annotations(bad)
    bad.write_text(json.dumps({"database": {"a": {"subset": "training", "annotations": []}}}))
    with pytest.raises(InputError, match="missing 'duration'"):
        read_annotations(bad)


def test_empty_split_is_an_error():
    videos = parse_annotations(_doc([]))
    with pytest.raises(InputError, match="no videos in subset 'testing'"):
        split(videos, "testing")


@pytest.mark.skipif(not RELEASE_JSON.exists(), reason="the RatSeizure release JSON is not on this machine")
def test_reads_the_release_file_as_it_is():
    videos = read_annotations(RELEASE_JSON)
    assert len(videos) == 794
    assert sum(v.subset == "training" for v in videos.values()) == 513
    assert sum(v.subset == "testing" for v in videos.values()) == 281
    assert sum(len(v.segments) for v in videos.values()) == 1287
