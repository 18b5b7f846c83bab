"""mAP as ActionFormer's ANETdetection computes it, on hand-computed cases."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ratscore.cli import app
from ratscore.errors import InputError
from ratscore.metrics import Detection, GroundTruth, average_precision, evaluate, interpolated_ap, remove_duplicates


def gt(video, s, e, c=4):
    return GroundTruth(video, s, e, c)


def det(video, s, e, score, c=4):
    return Detection(video, s, e, c, score)


def test_interpolated_ap_by_hand():
    # precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> envelope 1 up to 1/2, 2/3 up to 1
    assert interpolated_ap(np.array([1, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0])) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_greedy_matching_in_score_order():
    truth = [gt("a", 0, 2), gt("a", 5, 7)]
    # 0.9 matches [0,2]; 0.8 hits [0,2] again (locked, and [5,7] does not overlap) -> FP; 0.7 matches [5,7]
    dets = [det("a", 5, 7, 0.7), det("a", 0, 2, 0.9), det("a", 0.1, 2, 0.8)]
    ap = average_precision(truth, dets, (0.5,))
    assert ap[0] == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_locked_ground_truth_passes_to_next_best_overlap():
    truth = [gt("a", 0, 4), gt("a", 1, 5)]
    # both detections overlap both GT; the second takes the remaining one -> AP 1
    dets = [det("a", 0, 4, 0.9), det("a", 0.5, 4.5, 0.8)]
    assert average_precision(truth, dets, (0.5,))[0] == pytest.approx(1.0)


def test_tiou_thresholds():
    truth = [gt("a", 0, 2)]
    dets = [det("a", 0, 1, 0.9)]  # tIoU exactly 0.5
    ap = average_precision(truth, dets, (0.3, 0.4, 0.5, 0.6, 0.7))
    assert ap.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]


def test_detection_in_video_without_ground_truth_is_false_positive():
    truth = [gt("a", 0, 2)]
    dets = [det("b", 0, 2, 0.9), det("a", 0, 2, 0.5)]
    assert average_precision(truth, dets, (0.5,))[0] == pytest.approx(0.5)


def test_duplicates_removed_with_tolerance():
    segs = [gt("a", 1.0, 2.0), gt("a", 1.0005, 2.0009), gt("a", 1.0, 2.0, c=5), gt("a", 3.0, 3.0005)]
    kept = remove_duplicates(segs)
    assert kept == [segs[0], segs[2]]
    # without removal the duplicate would halve the recall
    report = evaluate(segs[:2], [det("a", 1, 2, 0.9)])
    assert report.average_mAP == pytest.approx(1.0)


def test_classes_without_ground_truth_are_skipped():
    truth = [gt("a", 0, 2, c=4), gt("a", 3, 5, c=7)]
    dets = [det("a", 0, 2, 0.9, c=4), det("a", 6, 8, 0.95, c=9)]  # class 9 has no ground truth
    report = evaluate(truth, dets)
    assert set(report.ap_per_class) == {"head nodding", "bilateral forelimb clonus"}
    assert report.mAP == pytest.approx([0.5] * 5)  # class 4 perfect, class 7 missed
    assert report.average_mAP == pytest.approx(0.5)


def test_no_detections_scores_zero():
    assert evaluate([gt("a", 0, 2)], []).average_mAP == 0.0


def _write(tmp_path, dets):
    ann = {"database": {"v1": {"subset": "testing", "duration": 10.0, "annotations": [
        {"segment": [1.0, 3.0], "label": "head nodding", "label_id": 4},
        {"segment": [5.0, 8.0], "label": "rearing", "label_id": 9}]},
        "v2": {"subset": "training", "duration": 10.0, "annotations": []}}}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    lines = ["video,start_s,end_s,au_id,score"] + [",".join(map(str, d)) for d in dets]
    (tmp_path / "pred.csv").write_text("\n".join(lines) + "\n")


def test_benchmark_detections_cli(tmp_path):
    _write(tmp_path, [("v1", 1.0, 3.0, 4, 0.9), ("v1", 5.0, 6.0, 9, 0.8), ("v2", 0, 1, 4, 0.99)])
    result = CliRunner().invoke(app, ["benchmark", "--annotations", str(tmp_path / "ann.json"),
                                      "--detections", str(tmp_path / "pred.csv"), "-o", str(tmp_path / "rep.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "rep.json").read_text())
    # head nodding: AP 1 at every threshold; rearing: tIoU 1/3 -> AP 1 at 0.3 only
    assert report["mAP"]["0.3"] == pytest.approx(100.0)
    assert report["mAP"]["0.5"] == pytest.approx(50.0)
    assert report["ignored_detections"] == 1


@pytest.mark.parametrize("rows,needle", [
    ([("v1", "x", 3.0, 4, 0.9)], "must be numbers"),
    ([("v1", 1.0, 3.0, 20, 0.9)], "au_id must be 0..13"),
])
def test_benchmark_detections_bad_input(tmp_path, rows, needle):
    _write(tmp_path, rows)
    result = CliRunner().invoke(app, ["benchmark", "--annotations", str(tmp_path / "ann.json"),
                                      "--detections", str(tmp_path / "pred.csv")])
    assert result.exit_code == 2
    assert needle in result.output and len(result.output.strip().splitlines()) == 1


def test_benchmark_empty_split(tmp_path):
    _write(tmp_path, [])
    result = CliRunner().invoke(app, ["benchmark", "--annotations", str(tmp_path / "ann.json"),
                                      "--detections", str(tmp_path / "pred.csv"), "--split", "validation"])
    assert result.exit_code == 2 and "no videos in subset 'validation'" in result.output


def test_neighbour_confusion_counts_the_best_overlapping_member():
    from ratscore.benchmark import neighbour_confusion
    from ratscore.metrics import Detection, GroundTruth

    gt = [GroundTruth("v", 0.0, 4.0, 4), GroundTruth("v", 5.0, 9.0, 6), GroundTruth("w", 0.0, 2.0, 8)]
    dets = [Detection("v", 0.0, 4.0, 5, 0.9),   # neck jerk beats head nodding on the head-nodding segment
            Detection("v", 0.2, 4.0, 4, 0.5),
            Detection("v", 5.0, 9.0, 6, 0.7),   # unilateral, right
            Detection("v", 5.0, 9.0, 9, 0.99),  # rearing: outside the group, ignored
            Detection("w", 1.5, 6.0, 8, 0.9)]   # tIoU 0.5/6 < 0.5: the alternating segment is missed
    conf = neighbour_confusion(gt, dets)
    assert conf["head nodding"] == {"head nodding": 0, "neck jerk": 1, "missed": 0}
    assert conf["unilateral forelimb clonus"]["unilateral forelimb clonus"] == 1
    assert conf["alternating forelimb clonus"]["missed"] == 1


def _episodes(rows):
    import pandas as pd

    from ratscore.timeline import EPISODE_COLUMNS

    table = pd.DataFrame([["v", i + 1, on, off, off - on, stage, "", 1] for i, (on, off, stage) in enumerate(rows)],
                         columns=EPISODE_COLUMNS)
    return table.astype({"max_stage": "Int64"})


def test_episode_matching_takes_the_overlapping_episode_with_the_nearest_onset():
    from ratscore.metrics import match_episodes

    truth = _episodes([(100.0, 130.0, 5), (300.0, 303.0, 1), (500.0, 520.0, 2)])
    found = _episodes([(95.0, 112.0, 1),  # overlaps the first, onset 5 s early
                       (101.5, 128.0, 5),  # overlaps it too, onset 1.5 s late: this one is compared
                       (299.0, 302.0, 1),  # onset 1 s early, same stage
                       (700.0, 710.0, 3)])  # a false alarm; the third true episode is missed
    m = match_episodes(truth, found)
    assert (m["true_episodes"], m["found_episodes"], m["matched"]) == (3, 4, 2)
    assert m["onset_within_2s"] == m["same_max_stage"] == m["onset_and_stage"] == round(2 / 3, 3)


def test_paired_episodes_give_each_true_episode_its_match_or_none():
    from ratscore.metrics import paired_episodes

    truth = _episodes([(100.0, 130.0, 5), (500.0, 520.0, 2)])
    found = _episodes([(95.0, 112.0, 1), (101.5, 128.0, 4), (700.0, 710.0, 3)])
    (first, match, onset, stage), (second, none, *checks) = paired_episodes(truth, found)
    assert (first.onset_s, match.onset_s, onset, stage) == (100.0, 101.5, True, False)
    assert second.onset_s == 500.0 and none is None and checks == [False, False]


def test_episode_matching_needs_onset_and_stage_together():
    from ratscore.metrics import match_episodes

    truth = _episodes([(10.0, 20.0, 3), (60.0, 70.0, 4)])
    found = _episodes([(13.0, 20.0, 3), (60.5, 70.0, 2)])  # right stage but 3 s late; on time but wrong stage
    m = match_episodes(truth, found)
    assert m["matched"] == 2 and m["onset_within_2s"] == 0.5 and m["same_max_stage"] == 0.5
    assert m["onset_and_stage"] == 0.0
    assert match_episodes(truth, _episodes([]))["matched"] == 0


def test_true_episodes_group_the_annotation_like_analyze():
    from ratscore.annotations import Segment, VideoAnnotation
    from ratscore.labels import RacineMap
    from ratscore.metrics import true_episodes

    segments = [Segment(7.0, 9.0, 3), Segment(10.0, 15.0, 1), Segment(15.0, 20.0, 6), Segment(40.0, 42.0, 3),
                Segment(50.0, 52.0, 4)]
    episodes = true_episodes(VideoAnnotation("v", "testing", 60.0, segments, 30.0), RacineMap())
    # The wet dog shakes (id 3, not staged) start no episode and do not move an onset.
    assert episodes[["onset_s", "offset_s", "max_stage"]].values.tolist() == [[10.0, 20.0, 3], [50.0, 52.0, 2]]


def test_episode_counts_of_several_videos_add_up_before_the_shares():
    from ratscore.metrics import count_episode_matches, episode_shares

    first = count_episode_matches(_episodes([(10.0, 20.0, 3)]), _episodes([(10.5, 20.0, 3)]))  # right
    second = count_episode_matches(_episodes([(10.0, 20.0, 3), (50.0, 60.0, 2)]), _episodes([(13.0, 20.0, 3)]))
    total = {k: first[k] + second[k] for k in first}
    assert total == {"true_episodes": 3, "found_episodes": 2, "matched": 2, "onset_ok": 1, "stage_ok": 2, "both_ok": 1}
    assert episode_shares(total)["onset_and_stage"] == round(1 / 3, 3)


def test_event_threshold_is_the_one_with_the_best_f1():
    from ratscore.metrics import best_event_threshold, event_f1
    from ratscore.model import DEFAULT_THRESHOLD

    truth = [GroundTruth("v", 0.0, 2.0, 4), GroundTruth("v", 5.0, 8.0, 7)]
    detections = [Detection("v", 0.1, 2.0, 4, 0.9),  # right
                  Detection("v", 5.0, 7.5, 7, 0.35),  # right, low score
                  Detection("v", 5.0, 7.5, 7, 0.3),  # the same segment again: a false alarm
                  Detection("v", 3.0, 4.0, 4, 0.2)]  # nothing there
    assert event_f1(truth, detections, 0.5) == 2 * 1 / (1 + 2)
    assert event_f1(truth, detections, 0.35) == 2 * 2 / (2 + 2)
    assert event_f1(truth, detections, 0.05) == 2 * 2 / (4 + 2)
    assert event_f1(truth, [Detection("v", 0.0, 2.0, 7, 0.9)], 0.1) == 0.0  # the wrong action unit
    # 0.25 and 0.3 keep the two right events and one false alarm (F1 0.8); the lowest such wins
    assert best_event_threshold(truth, detections) == (0.25, 2 * 2 / (3 + 2))
    assert best_event_threshold(truth, detections, candidates=()) == (DEFAULT_THRESHOLD, -1.0)  # a model that states none
    # a model whose false alarms score up to 0.55: the best threshold lies above 0.5
    confident = [Detection("v", 0.1, 2.0, 4, 0.9), Detection("v", 5.0, 7.5, 7, 0.65),
                 Detection("v", 3.0, 4.0, 4, 0.55), Detection("v", 9.0, 9.5, 7, 0.45)]
    assert best_event_threshold(truth, confident) == (0.6, 1.0)


def test_a_false_alarm_is_a_seizure_event_whose_middle_lies_in_normal_behaviour():
    from ratscore.annotations import Segment, VideoAnnotation
    from ratscore.metrics import false_alarms
    from ratscore.timeline import Event

    truth = VideoAnnotation("v", "testing", 60.0, [Segment(0.0, 10.0, 0), Segment(10.0, 20.0, 7),
                                                   Segment(20.0, 60.0, 0)], 30.0)
    inside = Event(12.0, 18.0, 7)  # on the seizure
    across = Event(8.0, 14.0, 7)  # starts in normal behaviour, its middle (11 s) on the seizure
    astray = Event(30.0, 34.0, 10)  # where nothing happens
    edge = Event(16.0, 24.0, 7)  # its middle at 20 s, where normal behaviour starts again
    assert false_alarms(truth, [inside, across, astray, edge]) == [astray, edge]
    assert false_alarms(VideoAnnotation("w", "testing", 5.0, [Segment(0.0, 5.0, 7)], 30.0), [astray]) == []


@pytest.mark.parametrize("content,needle", [
    (None, "no such detections file"),
    (b"", "empty file, expected the columns video, start_s, end_s, au_id, score"),
    (b'a,"b\n1,2,3,"\xff\n', "not a readable CSV file"),
])
def test_a_detections_file_that_cannot_be_read_is_one_line(tmp_path, content, needle):
    from ratscore.benchmark import read_detections

    path = tmp_path / "pred.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=needle):
        read_detections(path)
