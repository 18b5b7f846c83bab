"""bench_episodes.py's average of several localizers (--average-with): the experiment behind the
RESULTS entry on averaging localizer draws, kept reproducible."""

import shutil

import numpy as np
import pytest
from benchmark_scripts import load_benchmark

from ratscore.errors import InputError
from ratscore.runner import OnnxLocalizer


def _bench_episodes():
    return load_benchmark("bench_episodes")


@pytest.fixture(scope="module")
def another_draw(tiny_model, tmp_path_factory):
    """tiny_model's front end with a localizer of other weights: another draw on the same features."""
    import torch

    from ratscore.checkpoint import read_localizer_checkpoint
    from ratscore.localizer import RaSeformer
    from ratscore.model import load_model
    from ratscore.training.export import write_model_dir
    from ratscore.training.localizer import Setup

    out = tmp_path_factory.mktemp("draws") / "another"
    shutil.copytree(tiny_model, out)
    model = load_model(tiny_model)
    _, saved = read_localizer_checkpoint(model.file(model.localizer.checkpoint))
    setup = Setup.from_dict(saved)  # the same network and settings as tiny_model's localizer
    torch.manual_seed(1)
    write_model_dir(RaSeformer(setup.localizer).eval(), setup, out, trained_on="random weights, seed 1",
                    name="tiny-test-model")
    return out


def _inputs(localizer, length=64):
    rng = np.random.default_rng(3)
    padded = localizer.config.padded_length(length)
    features = rng.standard_normal((1, localizer.feature_dim, padded)).astype(np.float32)  # (1, D, L)
    mask = (np.arange(padded) < length)[None, None]  # (1, 1, L)
    return features, mask


def test_the_average_of_two_localizers_is_their_mean_probability_and_mean_offsets(tiny_model, another_draw, tmp_path):
    averaged = _bench_episodes().averaged_localizer([tiny_model, another_draw], tmp_path)
    first, second = OnnxLocalizer(tiny_model, "cpu"), OnnxLocalizer(another_draw, "cpu")
    features, mask = _inputs(first)
    (logits_a, offsets_a), (logits_b, offsets_b) = first.raw(features, mask), second.raw(features, mask)
    logits, offsets = averaged.raw(features, mask)
    assert len(logits) == len(logits_a) == first.config.num_levels
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    assert not np.allclose(logits_a[0], logits_b[0])  # two different draws, or the test shows nothing
    for level in range(len(logits)):
        assert logits[level].shape == logits_a[level].shape
        np.testing.assert_allclose(sigmoid(logits[level]), (sigmoid(logits_a[level]) + sigmoid(logits_b[level])) / 2,
                                   atol=1e-5)
        np.testing.assert_allclose(offsets[level], (offsets_a[level] + offsets_b[level]) / 2, atol=1e-5)


def test_a_localizer_averaged_with_itself_finds_its_own_events(tiny_model, tmp_path):
    single = OnnxLocalizer(tiny_model, "cpu")
    averaged = _bench_episodes().averaged_localizer([tiny_model, tiny_model], tmp_path)
    features = np.random.default_rng(4).standard_normal((90, single.feature_dim)).astype(np.float32)  # (T, D)
    expected, found = single.detect(features, 30.0), averaged.detect(features, 30.0)
    assert expected and len(found) == len(expected)
    for a, b in zip(expected, found):
        assert a.au_id == b.au_id
        assert a.start_s == pytest.approx(b.start_s, abs=1e-4) and a.end_s == pytest.approx(b.end_s, abs=1e-4)
        assert a.score == pytest.approx(b.score, abs=1e-5)


def test_localizers_of_another_front_end_are_refused(tiny_model, tmp_path):
    other = tmp_path / "other_front_end"
    shutil.copytree(tiny_model, other)
    with open(other / "i3d.onnx", "ab") as f:  # the same manifest, another I3D: other features
        f.write(b"\0")
    with pytest.raises(InputError, match="different front end"):
        _bench_episodes().averaged_localizer([tiny_model, other], tmp_path)



def test_models_that_share_a_front_end_share_the_cached_features(tmp_path, monkeypatch, capsys):
    """The bundled model and a copy with another threshold (another model, the same front end): the
    second run scores the first run's features and extracts nothing."""
    import json

    from ratscore.model import BUNDLED_MODEL_DIR, load_model
    from ratscore.synth.planning import make_config
    from ratscore.synth.writing import synthesize

    recordings = tmp_path / "recordings"
    synthesize(recordings, seed=3, long_minutes=0.25, config=make_config({"resolutions": [[160, 120]]}))
    other = tmp_path / "other"
    shutil.copytree(BUNDLED_MODEL_DIR, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["threshold"] = 0.25
    (other / "manifest.json").write_text(json.dumps(manifest))
    assert load_model(other).identity != load_model(BUNDLED_MODEL_DIR).identity
    work = tmp_path / "work"
    bench = _bench_episodes()

    def run(model, *more):
        monkeypatch.setattr("sys.argv", ["bench_episodes.py", str(recordings), "--work", str(work), "--model", str(model),
                                         *more])
        bench.main()
        return {p: p.stat().st_mtime_ns for p in work.rglob("*.npy")}

    first = run(BUNDLED_MODEL_DIR)
    assert len(first) == 1  # one recording, under one front-end key
    episodes = tmp_path / "episodes.csv"
    assert run(other, "--episodes", str(episodes)) == first  # the same file, not written again
    out = capsys.readouterr().out
    assert "episodes_right" in out

    # --episodes: each true episode beside the one it is matched with, as the counts match them
    import pandas as pd

    from ratscore.annotations import read_annotations

    from ratscore.labels import RacineMap
    from ratscore.metrics import true_episodes

    table = pd.read_csv(episodes)
    (annotation,) = read_annotations(recordings / "annotations.json").values()
    (truth,) = true_episodes(annotation, RacineMap()).itertuples(index=False)
    assert len(table) == 1 and table.video[0] == annotation.video_id and table.threshold[0] == 0.25
    assert (table.true_onset_s[0], table.true_stage[0], table.true_aus[0]) == (truth.onset_s, truth.max_stage, truth.aus)
    assert set(truth.aus.split(";")) <= {s.label for s in annotation.segments if s.au_id != 0}
    right = int(out.strip().splitlines()[-1].split()[-2])  # the printed episodes_right
    assert int((table.onset_ok & table.stage_ok).sum()) == right
    assert pd.isna(table.found_onset_s[0]) == pd.isna(table.found_stage[0])


def test_several_folders_are_pooled_and_each_is_given_on_its_own(tmp_path, monkeypatch, capsys):
    """Two folders of recordings: each threshold's pooled figures are the sums of the folders' own."""
    import json

    from ratscore.model import BUNDLED_MODEL_DIR
    from ratscore.synth.planning import make_config
    from ratscore.synth.writing import synthesize

    folders = [tmp_path / "first", tmp_path / "second"]
    for seed, folder in zip((3, 4), folders):
        synthesize(folder, seed=seed, long_minutes=0.25, config=make_config({"resolutions": [[160, 120]]}))
    report = tmp_path / "report.json"
    monkeypatch.setattr("sys.argv", ["bench_episodes.py", *map(str, folders), "--work", str(tmp_path / "work"),
                                     "--model", str(BUNDLED_MODEL_DIR), "--threshold", "0.05", "0.4", "-o", str(report)])
    _bench_episodes().main()
    figures = json.loads(report.read_text())
    assert [r["threshold"] for r in figures["runs"]] == [0.05, 0.4]
    for run in figures["runs"]:
        mine = [r for r in figures["runs_by_recordings"] if r["threshold"] == run["threshold"]]
        assert [r["recordings"] for r in mine] == [str(f) for f in folders]
        for key in ("true_episodes", "episodes_right", "false_alarms"):
            assert sum(r[key] for r in mine) == run[key]
    assert all(r["true_episodes"] == 1 for r in figures["runs_by_recordings"])  # each folder's own episode, not pooled
    assert any(r["false_alarms"] for r in figures["runs_by_recordings"]) or any(
        r["episodes_right"] for r in figures["runs_by_recordings"])  # something was found at 0.05
    assert str(folders[1]) in capsys.readouterr().out  # the second table names each folder
