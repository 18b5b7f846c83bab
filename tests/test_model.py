"""The model folder (model.py): every manifest field that configures inference changes what
extraction and analyze do; unknown format versions and inconsistent folders are one line."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import one_line_error
from ratscore.cli import app
from ratscore.errors import InputError
from ratscore.features import extract_features, load_front_end
from ratscore.grid import FeatureGrid
from ratscore.model import (BUNDLED_MODEL_DIR, DEFAULT_THRESHOLD, building_folder, check_model_output, load_model,
                            read_manifest, replace_model, update_model)

SAMPLE = Path(__file__).resolve().parent.parent / "sample_videos" / "clip_7_0001.mp4"  # 10 s at 30 fps


def variant(tiny_model: Path, tmp_path: Path, grid: dict | None = None, **fields) -> Path:
    """A copy of the tiny model with some manifest fields changed (the grid also in the
    localizer's own config, which must agree with it)."""
    out = tmp_path / "variant"
    shutil.copytree(tiny_model, out)
    if grid:
        localizer = read_manifest(out)["localizer"]
        localizer["config"]["grid"].update({{"fps": "fps", "clip_stride": "feat_stride",
                                              "clip_frames": "num_frames"}[k]: v for k, v in grid.items()})
        fields = {**fields, **grid, "localizer": localizer}
    update_model(out, fields)
    return out


def features_of(model_dir: Path):
    front = load_front_end(model_dir, device="cpu", no_roi=True)
    return extract_features(SAMPLE, front, "cpu", no_roi=True, progress=False)


def test_bundled_model_reads_as_it_is():
    model = load_model(BUNDLED_MODEL_DIR)
    assert model.grid == FeatureGrid(30.0, 4, 16) and model.has_front_end and model.detector is not None
    assert 0.0 < model.threshold <= 1.0 and model.feature_dim == model.localizer.config.input_dim


@pytest.mark.parametrize("grid, frames, stride, clip, fps", [
    (None, 300, 4, 16, 30.0),
    ({"fps": 15.0}, 150, 4, 16, 15.0),
    ({"clip_stride": 8}, 300, 8, 16, 30.0),
])
def test_the_time_grid_comes_from_the_model(tiny_model, tmp_path, grid, frames, stride, clip, fps):
    result = features_of(variant(tiny_model, tmp_path, grid))
    assert result.n_frames == frames and result.features.shape[0] == (frames - clip) // stride + 1
    assert result.feature_time(1) == pytest.approx((stride + clip / 2) / fps)


def test_the_clip_length_comes_from_the_model(tmp_path):
    from ratscore.i3d import I3DConfig, InceptionI3d
    from ratscore.training.export import add_i3d_to_model_dir

    folder = tmp_path / "eight"
    update_model(folder, {"clip_frames": 8})
    add_i3d_to_model_dir(folder, InceptionI3d(I3DConfig(width=0.125, input_size=64)).state_dict(), input_size=64,
                         keep_torch_weights=False)
    result = features_of(folder)
    assert result.features.shape[0] == (300 - 8) // 4 + 1 and result.feature_time(0) == pytest.approx(4 / 30)


def analyze(model_dir: Path, out: Path, *args) -> pd.DataFrame:
    result = CliRunner().invoke(app, ["analyze", str(SAMPLE), "-o", str(out), "--model", str(model_dir),
                                      "--no-roi", "--device", "cpu", *map(str, args)])
    assert result.exit_code == 0, result.output
    return pd.read_csv(out / "clip_7_0001.events.csv")


def test_racine_map_and_threshold_come_from_the_model(tiny_model, tmp_path):
    every_au_stage_7 = {name: (0 if name == "others" else 7) for name in read_manifest(tiny_model)["racine_map"]}
    model = variant(tiny_model, tmp_path, threshold=0.0, racine_map=every_au_stage_7)
    events = analyze(model, tmp_path / "a")
    assert len(events) > 0 and set(events.racine_stage) == {7}  # an untrained model scores low: threshold 0 keeps them
    update_model(model, {"threshold": 1.0})
    assert len(analyze(model, tmp_path / "b")) == 0


def test_racine_config_overrides_the_model_map_for_what_it_names(tiny_model, tmp_path):
    every_au_stage_7 = {name: (0 if name == "others" else 7) for name in read_manifest(tiny_model)["racine_map"]}
    model = variant(tiny_model, tmp_path, threshold=0.0, racine_map=every_au_stage_7)
    config = tmp_path / "racine.yaml"
    config.write_text("racine:\n  staring: 1\n")
    events = analyze(model, tmp_path / "c", "--racine-config", config)
    assert set(events[events.au == "staring"].racine_stage) <= {1}
    assert set(events[events.au != "staring"].racine_stage) == {7}


def test_threshold_defaults_when_the_model_states_none(tiny_model, tmp_path):
    manifest = read_manifest(tiny_model)
    assert "threshold" not in manifest and load_model(tiny_model).threshold == DEFAULT_THRESHOLD


def test_unknown_format_version_is_one_line(tiny_model, tmp_path):
    folder = tmp_path / "future"
    shutil.copytree(tiny_model, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "format_version": 2}))
    result = CliRunner().invoke(app, ["analyze", str(SAMPLE), "-o", str(tmp_path / "o"), "--model", str(folder)])
    assert "format_version 2 is not supported" in one_line_error(result)


@pytest.mark.parametrize("change, message", [
    ({"fps": 25.0}, "another time grid"),
    ({"feature_dim": 7}, "feature dimensions disagree"),
    ({"threshold": 2}, "threshold must be a number"),
    ({"racine_map": {"staring": 9}}, "racine_map"),
])
def test_inconsistent_manifest_is_refused(tiny_model, tmp_path, change, message):
    folder = tmp_path / "bad"
    shutil.copytree(tiny_model, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, **change}))
    with pytest.raises(InputError, match=message):
        load_model(folder)


def test_update_model_writes_files_before_the_manifest_and_keeps_the_rest(tmp_path):
    folder = tmp_path / "m"
    update_model(folder, {"name": "first"}, {"a.bin": b"123"})
    update_model(folder, {"trained_on": "x"}, {"b.bin": lambda f: f.write(b"4")})
    manifest = read_manifest(folder)
    assert manifest["name"] == "first" and manifest["trained_on"] == "x"
    assert (folder / "a.bin").read_bytes() == b"123" and (folder / "b.bin").read_bytes() == b"4"
    assert not any(p.name.endswith(".tmp") for p in folder.iterdir())


def test_a_new_model_replaces_the_old_ones_files_and_leaves_the_rest(tmp_path):
    folder = tmp_path / "m"
    update_model(folder, {"name": "m", "feature_stats": "old_stats.npz", "note": "old"}, {"old_stats.npz": b"old"})
    (folder / ".features").mkdir()  # a cache: hidden, not the model's
    (folder / "detector_labels.png").write_bytes(b"sheet")  # beside the model, named by no manifest
    building = building_folder(folder)
    update_model(building, {"name": "m", "feature_stats": "stats.npz"}, {"stats.npz": b"new"})
    replace_model(folder, building)
    assert read_manifest(folder).get("note") is None and read_manifest(folder)["feature_stats"] == "stats.npz"
    assert sorted(p.name for p in folder.iterdir()) == [".features", "detector_labels.png", "manifest.json", "stats.npz"]


def test_a_model_is_written_into_a_new_empty_or_model_folder_only(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "work" / ".run").mkdir(parents=True)
    (tmp_path / "work" / "notes.txt").write_text("x")
    for ok in (tmp_path / "new", tmp_path / "empty"):
        assert check_model_output(ok) == ok
    assert check_model_output(tmp_path / "work", also_resumable=".run") == tmp_path / "work"
    with pytest.raises(InputError, match="notes.txt"):
        check_model_output(tmp_path / "work")
