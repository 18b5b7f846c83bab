"""Post-processing: grid to seconds, decoding, Gaussian soft-NMS, chunking of long sequences."""

import math

import numpy as np
import pytest

from ratscore.grid import FeatureGrid
from ratscore.postprocess import (ChunkedDetection, PostprocessConfig, batched_soft_nms, chunk_starts,
                                  decode_candidates, detect_segments, soft_nms)

STRIDES = (1, 2, 4, 8, 16, 32)


def test_grid_to_seconds_and_clamp():
    grid = FeatureGrid()
    out = grid.to_seconds(np.array([[0.0, 1.0], [-5.0, 80.0]]), duration=10.0)
    assert out[0].tolist() == pytest.approx([8 / 30, 12 / 30])
    assert out[1].tolist() == [0.0, 10.0]
    assert grid.to_grid(grid.to_seconds(np.array([3.0]), 100.0)) == pytest.approx([3.0])


def test_soft_nms_by_hand():
    segs = np.array([[0, 10], [0, 10], [20, 30], [0, 5]], np.float32)
    scores = np.array([0.9, 0.8, 0.5, 0.7], np.float32)
    idx, sc = soft_nms(segs, scores, sigma=0.5, min_score=0.001)
    by_index = dict(zip(idx.tolist(), sc.tolist()))
    assert by_index[0] == pytest.approx(0.9)
    assert by_index[2] == pytest.approx(0.5)  # no overlap: untouched
    assert by_index[3] == pytest.approx(0.7 * math.exp(-0.25 / 0.5), rel=1e-4)  # iou 1/2 with the best
    # the duplicate: iou 1 with the best, then iou 1/2 with [0, 5]
    assert by_index[1] == pytest.approx(0.8 * math.exp(-2) * math.exp(-0.25 / 0.5), rel=1e-4)
    assert sc.tolist() == sorted(sc.tolist(), reverse=True)


def test_soft_nms_drops_below_min_score():
    segs = np.array([[0, 10], [0, 10]], np.float32)
    idx, sc = soft_nms(segs, np.array([0.9, 0.01], np.float32), sigma=0.5, min_score=0.005)
    assert idx.tolist() == [0]


def _soft_nms_reference(segs, scores, sigma, min_score):
    """Textbook soft-NMS over all segments at once (no grouping)."""
    idx = list(range(len(segs)))
    sc = scores.astype(np.float32).copy()
    out = []
    while idx:
        best = max(idx, key=lambda i: sc[i])
        out.append((best, float(sc[best])))
        idx.remove(best)
        for i in list(idx):
            inter = max(0.0, min(segs[best, 1], segs[i, 1]) - max(segs[best, 0], segs[i, 0]))
            a = segs[best, 1] - segs[best, 0] + 1e-6
            b = segs[i, 1] - segs[i, 0] + 1e-6
            iou = inter / (a + b - inter)
            sc[i] *= math.exp(-iou * iou / sigma)
            if sc[i] < min_score:
                idx.remove(i)
    return out


def test_soft_nms_grouping_matches_plain_soft_nms():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(1, 40))
        start = rng.uniform(0, 100, n)
        segs = np.stack([start, start + rng.uniform(0.5, 15, n)], 1).astype(np.float32)
        scores = rng.uniform(0.001, 1, n).astype(np.float32)
        idx, sc = soft_nms(segs, scores, 0.5, 0.01)
        ref = sorted(_soft_nms_reference(segs, scores, 0.5, 0.01), key=lambda p: -p[1])
        assert idx.tolist() == [i for i, _ in ref]
        assert sc.tolist() == pytest.approx([s for _, s in ref], rel=1e-4)


def test_batched_soft_nms_per_class_and_cap():
    segs = np.array([[0, 10], [0, 10], [0, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    labels = np.array([1, 2, 1])
    out_segs, out_scores, out_labels = batched_soft_nms(segs, scores, labels, PostprocessConfig())
    assert out_labels.tolist() == [1, 2, 1]
    assert out_scores[:2].tolist() == pytest.approx([0.9, 0.8])  # other class: not decayed
    assert out_scores[2] == pytest.approx(0.7 * math.exp(-2), rel=1e-4)
    assert len(batched_soft_nms(segs, scores, labels, PostprocessConfig(max_seg_num=2))[0]) == 2


def test_decode_candidates():
    logits = [np.full((8, 3), -20.0, np.float32), np.full((4, 3), -20.0, np.float32)]
    offsets = [np.zeros((8, 2), np.float32), np.zeros((4, 2), np.float32)]
    logits[1][2, 1] = 5.0  # level 1 (stride 2), point 2 -> grid position 4
    offsets[1][2] = [1.5, 0.5]  # 3 steps back, 1 step ahead
    segs, scores, labels = decode_candidates(logits, offsets, valid_len=8, strides=(1, 2), config=PostprocessConfig())
    assert segs.tolist() == [[1.0, 5.0]] and labels.tolist() == [1]
    assert scores[0] == pytest.approx(1 / (1 + math.exp(-5)))
    # the same point beyond the valid length is ignored
    assert len(decode_candidates(logits, offsets, valid_len=4, strides=(1, 2), config=PostprocessConfig())[0]) == 0


def test_chunk_starts():
    cfg = PostprocessConfig(chunk_len=288, chunk_overlap=192)
    assert chunk_starts(288, cfg, 32) == [0]
    assert chunk_starts(289, cfg, 32) == [0, 96]
    starts = chunk_starts(1000, cfg, 32)
    assert starts[-1] + 288 >= 1000 and all(s % 32 == 0 for s in starts)


def _oracle(event, event_class=3):
    """A fake network that sees one event (grid [s, e]) only as far as the chunk shows it: points near
    its visible centre predict it, cut at the chunk's ends, with high scores."""
    state = {"offset": 0}

    def network(x, mask):
        L = x.shape[2]
        valid = int(mask.sum())
        lo = state["offset"]
        s, e = max(event[0], lo), min(event[1], lo + valid)
        logits, offsets = [], []
        for stride in STRIDES:
            n = L // stride
            lg = np.full((n, 14), -20.0, np.float32)
            off = np.zeros((n, 2), np.float32)
            if e > s:
                pos = lo + np.arange(n) * stride
                near = np.abs(pos - (s + e) / 2) <= 1.5 * stride
                far = np.maximum((s + e) / 2 - s, e - (s + e) / 2) + 1.5 * stride
                if 2 ** int(math.log2(stride)) == stride and stride <= far < 4 * stride or stride == 32:
                    lg[near, event_class] = 4.0
                    off[near, 0] = (pos[near] - s) / stride
                    off[near, 1] = (e - pos[near]) / stride
            logits.append(lg)
            offsets.append(off)
        state["offset"] += 96  # the chunk step of the config below
        return logits, offsets

    return network


def test_event_across_a_chunk_seam_comes_out_once_and_whole():
    cfg = PostprocessConfig(chunk_len=288, chunk_overlap=192)
    T = 700
    event = (170.0, 230.0)  # crosses the seam of the first two chunks' centre parts (at 192)
    features = np.zeros((T, 4), np.float32)
    segs, scores, labels = detect_segments(features, T * 4 / 30 + 1, _oracle(event), STRIDES,
                                           lambda n: max(96, -(-n // 32) * 32), cfg, FeatureGrid(), 32)
    strong = scores > 0.3  # a cut copy from the third chunk would survive soft-NMS at about 0.44
    assert strong.sum() == 1
    grid = FeatureGrid()
    assert segs[strong][0] == pytest.approx(grid.to_seconds(np.array(event), 1e9), abs=1e-4)
    assert labels[strong][0] == 3


def _reading_network(x, mask):
    """A fake network whose outputs follow the chunk it is shown: each level's class logits are the
    features averaged over the level's stride (class c reads feature c mod D), offsets their size."""
    D, L = x.shape[1], x.shape[2]
    logits, offsets = [], []
    for stride in STRIDES:
        pooled = x[0].reshape(D, L // stride, stride).mean(axis=2).T  # (L / stride, D)
        logits.append(1.5 * pooled[:, np.arange(14) % D])
        offsets.append(np.abs(pooled[:, :2]) * 3.0 + 0.5)
    return logits, offsets


@pytest.mark.parametrize("T", [50, 288, 289, 384, 385, 700, 1001])
def test_chunks_scored_while_features_arrive_give_what_scoring_at_the_end_gives(T):
    cfg, grid = PostprocessConfig(chunk_len=288, chunk_overlap=192), FeatureGrid()
    padded = lambda n: max(96, -(-n // 32) * 32)  # noqa: E731
    features = np.random.default_rng(T).standard_normal((T, 4)).astype(np.float32)
    at_end = detect_segments(features, T * 4 / 30 + 1, _reading_network, STRIDES, padded, cfg, grid, 32)
    fed = ChunkedDetection(_reading_network, STRIDES, padded, cfg, grid, 32)
    for start in range(0, T, 7):  # runs of 7 steps, as the I3D's batches come
        fed.feed(features[start:start + 7])
    # every chunk but the last was scored while the features came in, keeping only what was needed
    assert len(fed.pooled) == len(chunk_starts(T, cfg, 32)) - 1
    assert fed.kept.shape[0] <= cfg.chunk_len + 7
    streamed = fed.finish(features, T * 4 / 30 + 1)
    assert len(at_end[0]) > 0
    for a, b in zip(at_end, streamed):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="were fed"):
        fed.finish(features[:-1], T * 4 / 30)


@pytest.mark.parametrize("T", [50, 700])
def test_detections_at_least_a_score_are_those_of_scoring_everything(T):
    """Left out of soft-NMS, the candidates under the threshold change no detection over it."""
    cfg, grid = PostprocessConfig(chunk_len=288, chunk_overlap=192, max_seg_num=5000), FeatureGrid()
    padded = lambda n: max(96, -(-n // 32) * 32)  # noqa: E731
    features = np.random.default_rng(T).standard_normal((T, 4)).astype(np.float32)
    everything = detect_segments(features, T * 4 / 30 + 1, _reading_network, STRIDES, padded, cfg, grid, 32)
    for at_least in (0.3, 0.6, 0.9):
        strong = everything[1].astype(np.float64) >= at_least
        got = ChunkedDetection(_reading_network, STRIDES, padded, cfg, grid, 32).finish(
            features, T * 4 / 30 + 1, at_least)
        assert 0 < strong.sum() < len(strong)
        for a, b in zip(got, everything):
            np.testing.assert_array_equal(a, b[strong])
