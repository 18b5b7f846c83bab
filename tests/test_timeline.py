import math
import random

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratscore.errors import InputError
from ratscore.labels import RacineMap
from ratscore.timeline import (EPISODE_COLUMNS, EVENT_COLUMNS, RACINE_COLUMNS, Event, ScoringOptions,
                               score_events)

RACINE = RacineMap()


def _score(events, duration=60.0, **opts):
    return score_events(events, "v", duration, 30.0, "test-model", RACINE, ScoringOptions(**opts))


def test_hand_computed_example():
    events = [Event(1.0, 3.0, 1, 0.9),   # staring, stage 1
              Event(2.5, 4.0, 9, 0.8),   # rearing, stage 4
              Event(20.0, 22.0, 3, 0.7),  # wet dog shakes, not staged
              Event(5.0, 6.0, 0, 0.9),   # others: not a seizure event, left out by default
              Event(40.0, 41.0, 10, 0.2)]  # falling, below the threshold
    s = _score(events, duration=60.0, threshold=0.5, episode_gap_s=10.0)
    assert list(s.events.columns) == EVENT_COLUMNS
    assert list(s.events.au) == ["staring", "rearing", "wet dog shakes"]
    assert list(s.events.start_frame) == [30, 75, 600] and list(s.events.end_frame) == [89, 119, 659]
    assert list(s.racine.columns) == RACINE_COLUMNS and len(s.racine) == 60
    assert list(s.racine.racine_stage[:5]) == [0, 1, 4, 4, 0]
    assert list(s.racine.au[:5]) == ["", "staring", "rearing", "rearing", ""]
    assert list(s.episodes.columns) == EPISODE_COLUMNS
    # The wet dog shakes are not staged: counted, but no episode of their own.
    assert list(s.episodes.onset_s) == [1.0] and list(s.episodes.offset_s) == [4.0]
    assert s.episodes.max_stage[0] == 4 and s.episodes.aus[0] == "staring;rearing"
    summ = s.summary
    assert summ["n_episodes"] == 1 and summ["max_stage"] == 4 and summ["wet_dog_shakes"] == 1
    assert summ["latency_s"] == {"1": 1.0, "2": 2.5, "3": 2.5, "4": 2.5, "5": None, "6": None, "7": None}
    assert summ["per_au"]["staring"] == {"count": 1, "total_s": 2.0}
    assert summ["per_stage"]["4"] == {"count": 1, "total_s": 1.5}


def test_gap_joins_episodes_and_overlaps_count_once():
    events = [Event(0.0, 2.0, 4), Event(1.0, 3.0, 4), Event(9.0, 10.0, 5)]
    s = _score(events, duration=12.0, episode_gap_s=6.5)
    assert len(s.episodes) == 1 and s.episodes.n_events[0] == 3
    assert s.summary["per_au"]["head nodding"] == {"count": 2, "total_s": 3.0}
    assert len(_score(events, duration=12.0, episode_gap_s=5.0).episodes) == 2


def test_bins_and_include_normal():
    s = _score([Event(0.0, 1.0, 0, 0.5)], duration=2.5, bin_s=0.5, include_normal=True)
    assert len(s.racine) == 5 and list(s.racine.t_end_s)[-1] == 2.5
    assert list(s.racine.au[:2]) == ["others", "others"] and s.racine.racine_stage.max() == 0
    assert len(s.events) == 1 and s.episodes.empty


def test_custom_racine_map_changes_stages():
    racine = RacineMap.from_mapping({"wet dog shakes": 3})
    s = score_events([Event(0.0, 2.0, 3)], "v", 5.0, 30.0, "m", racine)
    assert s.summary["max_stage"] == 3 and s.racine.racine_stage[0] == 3
    assert list(s.episodes.max_stage) == [3]  # staged by the lab's map, the shakes are a seizure event


def test_unstaged_events_neither_start_nor_join_episodes():
    shake, staring, nodding = 3, 1, 4
    events = [Event(0.0, 2.0, shake), Event(5.0, 9.0, staring), Event(12.0, 15.0, nodding),
              Event(20.0, 22.0, shake), Event(30.0, 31.0, shake)]
    s = _score(events, duration=40.0, episode_gap_s=10.0)
    # The shake 3 s before staring does not move the onset; the one 5 s after nodding does not
    # extend the episode, and the one at 30 s (within the gap of it) does not make it longer either.
    assert list(s.episodes.onset_s) == [5.0] and list(s.episodes.offset_s) == [15.0]
    assert s.episodes.aus[0] == "staring;head nodding" and s.episodes.n_events[0] == 2
    assert s.summary["wet_dog_shakes"] == 3 and s.summary["n_events"] == 5
    zero = RacineMap.from_mapping({"staring": 0})  # a lab that does not stage staring
    s = score_events(events, "v", 40.0, 30.0, "m", zero, ScoringOptions(episode_gap_s=10.0))
    assert list(s.episodes.onset_s) == [12.0] and list(s.episodes.max_stage) == [2]


@pytest.mark.parametrize("opts", [{"bin_s": 0}, {"bin_s": -1}, {"episode_gap_s": -1}, {"threshold": 1.5},
                                  {"bin_s": math.nan}])
def test_bad_options(opts):
    with pytest.raises(InputError):
        ScoringOptions(**opts)


def test_bad_event():
    with pytest.raises(InputError, match="does not end after it starts"):
        _score([Event(3.0, 3.0, 4)])


DURATION = 40.0
events_strategy = st.lists(
    st.builds(lambda s, d, au, score: Event(round(s, 2), round(min(DURATION, s + d), 2), au, round(score, 3)),
              st.floats(0, DURATION - 0.2), st.floats(0.05, 8.0), st.integers(0, 13), st.floats(0, 1)),
    max_size=25)


def _supported(s, b_start, b_end, stage):
    return any(r.start_s < b_end and r.end_s > b_start and r.racine_stage == stage
               for r in s.events.itertuples() if not pd.isna(r.racine_stage))


@settings(max_examples=80, deadline=None)
@given(events=events_strategy, threshold=st.sampled_from([0.0, 0.3, 0.7]), gap=st.floats(0, 15),
       bin_s=st.sampled_from([0.5, 1.0, 2.5]))
def test_properties(events, threshold, gap, bin_s):
    events = [e for e in events if e.end_s > e.start_s]
    s = _score(events, duration=DURATION, threshold=threshold, episode_gap_s=gap, bin_s=bin_s)
    # Every event in the table passed the threshold and is not normal behaviour.
    assert (s.events.score >= threshold).all() and (s.events.au_id != 0).all()
    # The timeline never shows a stage that no event supports.
    for row in s.racine.itertuples():
        if row.racine_stage > 0:
            assert _supported(s, row.t_start_s, row.t_end_s, row.racine_stage)
            assert row.au != ""
    # Episodes never overlap and cover every staged event; an episode's max stage is its events'.
    eps = list(s.episodes.itertuples())
    for a, b in zip(eps, eps[1:]):
        assert a.offset_s < b.onset_s and b.onset_s - a.offset_s >= gap - 1e-9
    staged = s.events[s.events.racine_stage.fillna(0) > 0]
    for ev in staged.itertuples():
        assert sum(ep.onset_s <= ev.start_s and ev.end_s <= ep.offset_s for ep in eps) == 1
    assert s.episodes.n_events.sum() == len(staged)
    if eps:
        assert s.episodes.max_stage.max() == staged.racine_stage.max()
    # The order of the input events changes nothing.
    shuffled = list(events)
    random.Random(len(events)).shuffle(shuffled)
    t = _score(shuffled, duration=DURATION, threshold=threshold, episode_gap_s=gap, bin_s=bin_s)
    pd.testing.assert_frame_equal(s.events, t.events)
    pd.testing.assert_frame_equal(s.racine, t.racine)
    pd.testing.assert_frame_equal(s.episodes, t.episodes)
    assert s.summary == t.summary
