"""The bundle recipe and synth styles: it never trains on "unseen"; "varied" adds the detector's
own clips (detector_style) or the behaviour's (behaviour_style); the default recipe's stages are
those of before styles had names."""

import pytest
from typer.testing import CliRunner

from ratscore.cli import app
from ratscore.errors import InputError
from ratscore.synth.planning import STYLES, TRAINING_STYLES
from ratscore.training.bundle import BundleRecipe, _renders, bundle_stages, stage_inputs


@pytest.mark.parametrize("field", ["detector_style", "behaviour_style"])
def test_the_recipe_refuses_unseen_for_training(field):
    assert "unseen" in STYLES and "unseen" not in TRAINING_STYLES
    with pytest.raises(InputError, match=f"{field} 'unseen'"):
        BundleRecipe(**{field: "unseen"})
    with pytest.raises(InputError, match="classic or varied"):
        BundleRecipe(**{field: "fancy"})


@pytest.mark.parametrize("field", ["detector_style", "behaviour_style"])
def test_a_recipe_file_with_unseen_is_refused_in_one_line(tmp_path, field):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"{field}: unseen\n")
    with pytest.raises(InputError, match=f"recipe.yaml: {field} 'unseen'"):
        BundleRecipe.from_yaml(recipe)
    result = CliRunner().invoke(app, ["train", "bundle", str(tmp_path / "work"), "-o", str(tmp_path / "m"),
                                      "--config", str(recipe)])
    assert result.exit_code == 2
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1
    assert not (tmp_path / "work").exists()


def test_the_default_recipe_is_classic_and_unchanged():
    recipe = BundleRecipe()
    assert recipe.detector_style == recipe.behaviour_style == "classic"
    names = [s.name for s in bundle_stages(recipe)]
    assert "synth_detector" not in names and "synth_behaviour" not in names
    for stage in names:  # the markers of a work folder made before styles still match
        assert not any(k.startswith(("detector_style", "behaviour_style")) for k in stage_inputs(recipe, stage))
    # every render of the recipe (features, localizer, threshold, test) is synthesize's default: classic
    assert all("config" not in how for _, how in _renders(recipe))


def test_a_varied_detector_trains_on_its_own_clips_only():
    recipe = BundleRecipe(detector_style="varied")
    names = [s.name for s in bundle_stages(recipe)]
    assert names.index("synth_detector") < names.index("detector")
    assert "synth_detector" not in [name for name, _ in _renders(recipe)]  # no features, no localizer
    assert stage_inputs(recipe, "detector")["detector_style"] == "varied"
    assert stage_inputs(recipe, "features")["detector_style_seed"] == 5000  # the detector feeds them
    assert "detector_style" not in stage_inputs(recipe, "i3d_classifier")
    assert "synth_detector" not in [s.name for s in bundle_stages(BundleRecipe(detector_style="varied", front_end="x"))]


def test_a_varied_behaviour_trains_the_i3d_and_the_localizer_not_the_detector():
    recipe = BundleRecipe(behaviour_style="varied")
    assert ("synth_behaviour", {"clips": 200, "seed": 6000, "style": "varied"}) in _renders(recipe)
    assert "behaviour_style" not in stage_inputs(recipe, "detector")
    for stage in ("i3d_classifier", "front_end", "features", "localizer_topk"):
        assert stage_inputs(recipe, stage)["behaviour_style_seed"] == 6000
    # on a given front end the I3D is not trained: only what reads the features depends on them
    from ratscore.model import BUNDLED_MODEL_DIR

    given = BundleRecipe(behaviour_style="varied", front_end=str(BUNDLED_MODEL_DIR))
    assert "behaviour_style" not in stage_inputs(given, "i3d_classifier")
    assert "synth_behaviour" in [s.name for s in bundle_stages(given)]
    assert stage_inputs(given, "localizer_plain")["behaviour_style"] == "varied"
