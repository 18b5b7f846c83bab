"""The bundled model's recipe, end to end at a toy size, and its resume."""

import json

from typer.testing import CliRunner

from ratscore.cli import app

runner = CliRunner()

TOY_RECIPE = """\
train_clips: 3
validation_clips: 1
test_clips: 2
train_long_recordings: 1
train_long_minutes: 0.25
localizer_clips: 1
detector_epochs: 1
detector_frame_step: 30
detector_imgsz: 128
i3d_width: 0.125
i3d_input_size: 64
classifier_epochs: 1
classifier_stride: 48
localizer_epochs: 2
localizer_dim: 32
ablation: false
"""


def _toy_recipe_without_extra_clips(**fields) -> str:
    """TOY_RECIPE with no long recordings or localizer clips (what the tests of a given front end or
    I3D need is the three splits), with these fields set."""
    text = (TOY_RECIPE.replace("train_long_recordings: 1", "train_long_recordings: 0")
            .replace("localizer_clips: 1", "localizer_clips: 0").replace("ablation: false\n", ""))
    return text + "".join(f"{k}: {str(v).lower() if isinstance(v, bool) else v}\n" for k, v in fields.items())


def test_bundle_recipe_runs_and_resumes(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    # and 3 varied clips for the behaviour (seed 7: the animal shows throughout in the first only)
    recipe.write_text(TOY_RECIPE + "behaviour_style: varied\nbehaviour_style_clips: 3\nbehaviour_style_seed: 7\n")
    work, model = tmp_path / "work", tmp_path / "model"
    result = runner.invoke(app, ["train", "bundle", str(work), "-o", str(model), "--config", str(recipe),
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((model / "manifest.json").read_text())
    for name in ("localizer.onnx", "i3d.onnx", "i3d.pt", "detector.onnx", "feature_stats.npz"):
        assert (model / name).is_file()
    assert manifest["front_end"]["i3d"]["feature_dim"] == manifest["feature_dim"] == 128
    assert manifest["front_end"]["i3d"]["weights"] == "i3d.pt"  # the I3D in torch on a GPU
    assert "synthetic videos only" in manifest["trained_on"]
    assert manifest["recipe"]["train_clips"] == 3
    bench = manifest["benchmark"]
    assert set(bench["timings_s"]) >= {"synth_train", "detector", "i3d_classifier", "features", "localizer_topk"}
    assert "average" in bench["localizer_topk_0.5"]["testing"]
    assert "1 recordings of 0.25 min (seed 3000) for the localizer" in manifest["trained_on"]
    assert manifest["localizer"]["config"]["train"]["cover_long_videos"] is True
    assert bench["timings_s"]["synth_long"] is not None
    assert set(bench["ap_per_class_at_0.5"]) <= set(manifest["classes"])
    assert isinstance(bench["neighbour_confusion"], dict) and bench["localizer_speed"]["videos"] == 2
    assert set(bench["event_f1_at_threshold"]) == {"validation", "testing"}
    training = json.loads((work / "annotations.json").read_text())["database"]
    # the threshold is chosen on the validation clip (seed 9000), the benchmark is the test clips' (9100)
    assert training["clip_9000_0000"]["subset"] == "validation"
    assert [training[f"clip_9100_{i:04d}"]["subset"] for i in range(2)] == ["testing", "testing"]
    assert "event threshold chosen on 1 clips of the unseen seed 9000" in manifest["trained_on"]
    assert [v for v, a in training.items() if a["subset"] == "training" and v.startswith("long_")]
    # the localizer's own clips: training, with features, and said so in the manifest
    assert training["clip_2000_0000"]["subset"] == "training" and (work / "features" / "clip_2000_0000.npy").is_file()
    assert "plus 1 clips of 10 s (seed 2000) for the localizer and the detector" in manifest["trained_on"]
    # the detector's frames come from the training clips and the localizer's clip, pooled
    detector_frames = {p.name.split("_clip_")[1][:4] for p in (work / "detector" / "detector_training" / "dataset" / "images").rglob("*.jpg")}
    assert detector_frames == {"1000", "2000"}
    # the varied clip whose animal shows throughout teaches the I3D and the localizer; the empty
    # arena and the animal put in after a while teach nothing
    assert training["clip_7_0000"]["subset"] == "training" and (work / "features" / "clip_7_0000.npy").is_file()
    assert "clip_7_0001" not in training and "clip_7_0002" not in training
    assert not (work / "features" / "clip_7_0001.npy").exists()
    assert json.loads((work / "i3d_classifier.done.json").read_text())["videos"] == 3 + 1
    assert ("plus those of 3 clips of 10 s in the synth style varied (seed 7) whose animal shows throughout, "
            "for the I3D classifier and the localizer") in manifest["trained_on"]
    assert "ultralytics " in bench["machine"] and "torch " in bench["machine"]  # a rebuild's versions are known

    # Run again: every stage is found done and skipped; the model is rebuilt the same way.
    result = runner.invoke(app, ["train", "bundle", str(work), "-o", str(model), "--config", str(recipe),
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("skipped") >= 7 and "[synth_long] done before" in result.stdout
    assert "[synth_localizer] done before" in result.stdout

    # A recipe with one more training recording: that render, the features and the localizer are
    # done again, but only the re-rendered recordings go through the front end; the detector and I3D stay.
    # (More localizer clips would redo the detector too: it trains on them.)
    features = work / "features"
    kept = {p.name: p.stat().st_mtime_ns for p in features.glob("*.npy") if not p.name.startswith("long_")}
    recipe.write_text(recipe.read_text().replace("train_long_recordings: 1", "train_long_recordings: 2"))
    result = runner.invoke(app, ["train", "bundle", str(work), "-o", str(model), "--config", str(recipe),
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    for name in ("synth_long", "features", "localizer_topk"):
        assert f"[{name}] ... (the recipe changed since it ran)" in result.stdout
    for name in ("synth_train", "synth_localizer", "synth_behaviour", "detector", "detector_heldout", "i3d_classifier",
                 "front_end"):
        assert f"[{name}] done before" in result.stdout
    assert {p.name: p.stat().st_mtime_ns for p in features.glob("*.npy") if p.name in kept} == kept
    assert set(p.name for p in features.glob("*.npy")) - set(kept) == {"long_3000_0.npy", "long_3000_1.npy"}
    manifest = json.loads((model / "manifest.json").read_text())
    assert "plus 2 recordings of 0.25 min (seed 3000) for the localizer" in manifest["trained_on"]
    assert "inputs" not in manifest["benchmark"]["i3d_classifier"]

    # The model it made analyses a video.
    video = sorted((work / "synth_test").glob("*.mp4"))[0]
    result = runner.invoke(app, ["analyze", str(video), "-o", str(tmp_path / "out"), "--model", str(model),
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / f"{video.stem}.report.html").is_file()


def test_stage_inputs_name_the_localizer_clips_only_where_they_are_read():
    from ratscore.training.bundle import BundleRecipe, stage_inputs

    assert "localizer_clips" in stage_inputs(BundleRecipe(), "detector")  # pooled into its frames
    assert "localizer_clips" not in stage_inputs(BundleRecipe(), "i3d_classifier")
    apart = BundleRecipe(detector_localizer_clips=False)  # the detector never sees the localizer clips
    for stage in ("detector", "front_end", "detector_heldout"):
        assert "localizer_clips" not in stage_inputs(apart, stage)
    for stage in ("synth_localizer", "features", "localizer_topk"):
        assert "localizer_clips" in stage_inputs(apart, stage)
    assert stage_inputs(apart, "features")["detector_localizer_clips"] is False


def test_stages_come_in_the_recipe_order_each_with_its_inputs():
    from ratscore.training.bundle import BundleRecipe, bundle_stages, stage_inputs

    names = [s.name for s in bundle_stages(BundleRecipe())]
    assert names == ["synth_train", "synth_validation", "synth_test", "synth_long", "synth_localizer", "detector",
                     "i3d_classifier", "front_end", "detector_heldout", "features", "localizer_topk", "localizer_plain"]
    for name in names:  # every stage's marker records its inputs
        assert stage_inputs(BundleRecipe(), name)
    # the localizers start in worker processes; the model is finished after each
    assert [s.name for s in bundle_stages(BundleRecipe()) if s.start and s.then] == names[-2:]
    drawn = bundle_stages(BundleRecipe(localizer_draws=3))
    assert [s.name for s in drawn][-4:] == ["localizer_topk", "localizer_topk_2", "localizer_topk_3", "localizer_plain"]
    assert [s.name for s in drawn if s.then] == ["localizer_topk_3", "localizer_plain"]  # finished once all are done
    assert stage_inputs(BundleRecipe(), "localizer_topk_2") == stage_inputs(BundleRecipe(), "localizer_topk")
    lean = BundleRecipe(front_end="elsewhere", ablation=False, train_long_recordings=0, localizer_clips=0)
    assert [s.name for s in bundle_stages(lean)] == ["synth_train", "synth_validation", "synth_test", "front_end",
                                                     "detector_heldout", "features", "localizer_topk"]


def test_bundle_on_a_given_front_end_trains_both_localizers_at_once(tmp_path):
    """`front_end: DIR` takes that model's detector and I3D as they are (no detector or classifier
    training), and the Top-K localizer and its keep ratio 1.0 ablation train in two processes."""
    from ratscore.model import BUNDLED_MODEL_DIR as bundled

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(_toy_recipe_without_extra_clips(ablation=True, front_end=bundled))
    work, model = tmp_path / "work", tmp_path / "model"
    result = runner.invoke(app, ["train", "bundle", str(work), "-o", str(model), "--config", str(recipe),
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "training at once" in result.stdout
    assert not (work / "detector.done.json").exists() and not (work / "i3d_classifier.done.json").exists()
    manifest = json.loads((model / "manifest.json").read_text())
    source = json.loads((bundled / "manifest.json").read_text())
    assert manifest["front_end"] == source["front_end"]
    assert (model / "detector.onnx").read_bytes() == (bundled / "detector.onnx").read_bytes()
    bench = manifest["benchmark"]
    assert "average" in bench["localizer_topk_0.5"]["testing"] and "average" in bench["localizer_plain_1.0"]["testing"]
    assert bench["timings_s"]["localizer_plain"] > 0 and "detector" not in bench["timings_s"]
    assert f"with the front end (detector and I3D) of {bundled}" in manifest["trained_on"]
    # other weights in the same folder are another front end: the stages that used it are redone
    marker = json.loads((work / "features.done.json").read_text())
    assert len(marker["inputs"]["front_end_sha256"]) == 64


def test_localizer_draws_are_trained_at_once_and_shipped_as_their_average(tmp_path):
    """`localizer_draws: N` trains the Top-K localizer N times (seeds seed .. seed+N-1) and ships their
    average; one more draw later trains only that one."""
    from ratscore.model import BUNDLED_MODEL_DIR as bundled
    from ratscore.training.model_card import model_card

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(_toy_recipe_without_extra_clips(ablation=False, localizer_draws=2, front_end=bundled))
    work, model = tmp_path / "work", tmp_path / "model"
    result = runner.invoke(app, ["train", "bundle", str(work), "-o", str(model), "--config", str(recipe),
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "[localizer_topk, localizer_topk_2] training at once" in result.stdout
    seeds = [json.loads((work / folder / "manifest.json").read_text())["localizer"]["config"]["train"]["seed"]
             for folder in ("localizer_k0.5", "localizer_k0.5_draw2")]
    assert seeds == [0, 1]
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["localizer"]["members"] == 2
    topk = manifest["benchmark"]["localizer_topk_0.5"]
    assert [d["seed"] for d in topk["draws"]] == [0, 1] and "average" in topk["testing"]
    assert all("average" in d["testing"] for d in topk["draws"])
    card = model_card(manifest)
    assert "the average of 2 Top-K draws" in card and "one of those draws alone: seed 1" in card
    assert "train the localizer's draw 2 (Top-K, keep ratio 0.5) (`localizer_topk_2`)" in card

    recipe.write_text(recipe.read_text().replace("localizer_draws: 2", "localizer_draws: 3"))
    result = runner.invoke(app, ["train", "bundle", str(work), "-o", str(model), "--config", str(recipe),
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "[localizer_topk] done before" in result.stdout and "[localizer_topk_2] done before" in result.stdout
    assert "[localizer_topk_3] ..." in result.stdout
    assert json.loads((model / "manifest.json").read_text())["localizer"]["members"] == 3

    # the model it made analyses a video, and its localizer's ONNX graph agrees with its checkpoint
    from ratscore.runner import check_onnx_matches

    assert check_onnx_matches(model) < 1e-4
    video = sorted((work / "synth_test").glob("*.mp4"))[0]
    result = runner.invoke(app, ["analyze", str(video), "-o", str(tmp_path / "out"), "--model", str(model),
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output


def test_long_validation_recordings_choose_the_threshold_without_retraining(tmp_path):
    """`validation_long_recordings: N` renders N long recordings of another unseen seed, which join
    the validation clips in choosing the threshold; added to a finished run, they cost their render
    and their features, not the localizer."""
    from ratscore.model import BUNDLED_MODEL_DIR as bundled

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(_toy_recipe_without_extra_clips(ablation=False, front_end=bundled))
    work, model = tmp_path / "work", tmp_path / "model"
    args = ["train", "bundle", str(work), "-o", str(model), "--config", str(recipe), "--device", "cpu"]
    assert runner.invoke(app, args).exit_code == 0
    features = work / "features"
    kept = {p.name: p.stat().st_mtime_ns for p in features.glob("*.npy")}

    recipe.write_text(recipe.read_text() + "validation_long_recordings: 1\nvalidation_long_minutes: 0.25\n")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "[synth_validation_long] ..." in result.stdout
    assert "[features] ... (the recipe changed since it ran)" in result.stdout
    assert "[localizer_topk] done before" in result.stdout
    assert {p.name: p.stat().st_mtime_ns for p in features.glob("*.npy") if p.name in kept} == kept
    assert set(p.name for p in features.glob("*.npy")) - set(kept) == {"long_5300_0.npy"}
    database = json.loads((work / "annotations.json").read_text())["database"]
    assert database["long_5300_0"]["subset"] == "validation"
    manifest = json.loads((model / "manifest.json").read_text())
    assert "chosen on 1 clips of the unseen seed 9000 and 1 recordings of 0.25 min (seed 5300)" in manifest["trained_on"]


def test_long_validation_recordings_are_inputs_of_their_render_and_the_features_only():
    from ratscore.training.bundle import BundleRecipe, bundle_stages, stage_inputs

    plain, longer = BundleRecipe(), BundleRecipe(validation_long_recordings=4)
    assert "synth_validation_long" not in [s.name for s in bundle_stages(plain)]
    assert "synth_validation_long" in [s.name for s in bundle_stages(longer)]
    assert stage_inputs(longer, "features")["validation_long_recordings"] == 4
    for stage in ("detector", "front_end", "detector_heldout", "localizer_topk", "localizer_topk_2"):
        assert stage_inputs(longer, stage) == stage_inputs(plain, stage)
    assert "validation_long_recordings" not in stage_inputs(plain, "features")  # markers made before the field count


def test_i3d_from_takes_a_model_folders_i3d_and_trains_the_detector(tmp_path):
    """`i3d_from: DIR` trains the detector but not the I3D: that folder's I3D is used as it is."""
    from ratscore.model import BUNDLED_MODEL_DIR as bundled

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(_toy_recipe_without_extra_clips(ablation=False, i3d_from=bundled))
    work, model = tmp_path / "work", tmp_path / "model"
    result = runner.invoke(app, ["train", "bundle", str(work), "-o", str(model), "--config", str(recipe),
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert (work / "detector.done.json").exists() and not (work / "i3d_classifier.done.json").exists()
    manifest = json.loads((model / "manifest.json").read_text())
    source = json.loads((bundled / "manifest.json").read_text())
    assert manifest["front_end"]["i3d"] == source["front_end"]["i3d"]
    assert (model / "i3d.onnx").read_bytes() == (bundled / "i3d.onnx").read_bytes()
    assert (model / "detector.onnx").read_bytes() != (bundled / "detector.onnx").read_bytes()  # its own, trained
    assert f"the detector and the localizer, with the I3D of {bundled}" in manifest["trained_on"]
    assert manifest["benchmark"]["i3d_classifier"] == source["benchmark"]["i3d_classifier"]
    assert len(json.loads((work / "features.done.json").read_text())["inputs"]["i3d_sha256"]) == 64


def test_i3d_from_reaches_the_stages_after_the_front_end_only():
    from ratscore.model import BUNDLED_MODEL_DIR as bundled
    from ratscore.training.bundle import BundleRecipe, bundle_stages, stage_inputs

    given = BundleRecipe(i3d_from=str(bundled))
    assert "i3d_classifier" not in [s.name for s in bundle_stages(given)]
    assert stage_inputs(given, "detector") == stage_inputs(BundleRecipe(), "detector")  # a trained detector is kept
    for stage in ("front_end", "features", "localizer_topk"):
        assert "i3d_sha256" in stage_inputs(given, stage)
        assert "i3d_from" not in stage_inputs(BundleRecipe(), stage)  # markers made before the field still count


def test_a_front_end_without_detector_or_missing_is_one_line_before_any_work(tmp_path, tiny_model):
    for folder, words in ((tiny_model, "must be a model folder with a detector and an I3D"),
                          (tmp_path / "nowhere", "no such model folder")):
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(f"front_end: {folder}\n")
        work = tmp_path / "work"
        result = runner.invoke(app, ["train", "bundle", str(work), "-o", str(tmp_path / "m"), "--config", str(recipe),
                                     "--device", "cpu"])
        assert result.exit_code == 2 and words in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1
        assert not (work / "synth_train").exists()


def test_an_i3d_from_without_an_i3d_is_one_line_before_any_work(tmp_path, tiny_model):
    import shutil

    folder = tmp_path / "no_i3d"
    shutil.copytree(tiny_model, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["front_end"] = {"detector": None, "i3d": None}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"i3d_from: {folder}\n")
    work = tmp_path / "work"
    result = runner.invoke(app, ["train", "bundle", str(work), "-o", str(tmp_path / "m"), "--config", str(recipe),
                                 "--device", "cpu"])
    assert result.exit_code == 2 and "i3d_from must be a model folder with an I3D" in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and not (work / "synth_train").exists()


def test_bad_recipe_is_one_line(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("train_clipz: 3\n")
    result = runner.invoke(app, ["train", "bundle", str(tmp_path / "w"), "-o", str(tmp_path / "m"),
                                 "--config", str(recipe)])
    assert result.exit_code == 2 and "unknown recipe key(s) train_clipz" in result.stderr
    recipe.write_text("front_end: models\ni3d_from: models\n")
    result = runner.invoke(app, ["train", "bundle", str(tmp_path / "w"), "-o", str(tmp_path / "m"),
                                 "--config", str(recipe)])
    assert result.exit_code == 2 and "give front_end or i3d_from, not both" in result.stderr
    for draws in ("0", "two", "true"):
        recipe.write_text(f"localizer_draws: {draws}\n")
        result = runner.invoke(app, ["train", "bundle", str(tmp_path / "w"), "-o", str(tmp_path / "m"),
                                     "--config", str(recipe)])
        assert result.exit_code == 2 and "localizer_draws must be a whole number of at least 1" in result.stderr
    for field, value, words in (("validation_long_recordings", "four", "validation_long_recordings must be a whole number"),
                                ("validation_long_recordings", "-1", "validation_long_recordings must be a whole number"),
                                ("validation_long_minutes", "0", "validation_long_minutes must be a number of minutes above 0"),
                                ("validation_long_minutes", "ten", "validation_long_minutes must be a number of minutes above 0"),
                                ("train_long_recordings", "two", "train_long_recordings must be a whole number of at least 0"),
                                ("detector_epochs", "0", "detector_epochs must be a whole number of at least 1"),
                                ("test_seed", "-3", "test_seed must be a whole number of at least 0"),
                                ("localizer_lr", "0", "localizer_lr must be a number above 0"),
                                ("crop_margin", "-0.1", "crop_margin must be a number of at least 0"),
                                ("ablation", "maybe", "ablation must be true or false"),
                                ("i3d_from", "3", "i3d_from must be text")):
        recipe.write_text(f"{field}: {value}\n")
        result = runner.invoke(app, ["train", "bundle", str(tmp_path / "w"), "-o", str(tmp_path / "m"),
                                     "--config", str(recipe)])
        assert result.exit_code == 2 and words in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1
    for share in ("1.5", "-0.1", "1", "half"):
        recipe.write_text(f"i3d_still_share: {share}\n")
        result = runner.invoke(app, ["train", "bundle", str(tmp_path / "w"), "-o", str(tmp_path / "m"),
                                     "--config", str(recipe)])
        assert result.exit_code == 2 and "i3d_still_share must be a number from 0" in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "w").exists()
    result = runner.invoke(app, ["train", "localizer", "-o", str(tmp_path / "m")])
    assert result.exit_code == 2 and "--annotations" in result.output


def test_bundle_on_a_missing_gpu_is_one_line_before_any_work(tmp_path):
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = runner.invoke(app, ["train", "bundle", str(tmp_path / "w"), "-o", str(tmp_path / "m"), "--device", "cuda"])
    assert result.exit_code == 2 and "no CUDA GPU is available" in result.stderr
    assert not (tmp_path / "w").exists()
