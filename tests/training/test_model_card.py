"""The model card is generated from the manifest, so it cannot go stale."""

import copy
from pathlib import Path

from ratscore.model import read_manifest
from ratscore.training.bundle import BundleRecipe, bundle_stages
from ratscore.training.model_card import _STAGE_WORDS, main, model_card

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = ".venv/bin/python -m ratscore.training.model_card models/ -o docs/MODEL_CARD.md"


def test_committed_card_is_the_bundled_models():
    committed = (ROOT / "docs" / "MODEL_CARD.md").read_text()
    assert committed == model_card(read_manifest(ROOT / "models")), f"docs/MODEL_CARD.md is stale: run {REGENERATE}"


def test_card_says_what_the_model_is_and_is_not():
    card = model_card(read_manifest(ROOT / "models"))
    assert "Never trained on a real rat" in card
    assert "Not validated on real rats" in card and "Not a diagnosis" in card
    assert ("| localizer as shipped: the average of 3 Top-K draws (keep ratio 0.5) "
            "| 75.4 | 75.2 | 74.1 | 71.7 | 68.0 | 72.9 |") in card
    assert "| wet dog shakes | not staged |" in card
    assert REGENERATE in card


def test_a_manifest_without_optional_sections_still_renders():
    bare = {"format_version": 1, "name": "bare"}
    card = model_card(bare)
    assert card.startswith("# Model card: bare\n") and "## Intended use" in card and "## Regenerating" in card
    assert "## Accuracy" not in card and "## Recipe" not in card and "## Measured figures" not in card

    # a localizer-only model from `train localizer`: top-level test figures, no front end, no recipe
    partial = {"name": "mine", "fps": 30.0, "clip_stride": 4, "racine_map": {"others": 0, "wet dog shakes": None},
               "benchmark": {"train_seconds": 12.0, "testing": {"0.5": 40.0, "average": 38.5},
                             "some_new_figure": {"x": 1}}}
    card = model_card(partial)
    assert "| this model | - | - | 40.0 | - | - | 38.5 |" in card
    assert "Training of the localizer: 12.0 s" in card
    assert '"some_new_figure"' in card  # an unknown benchmark entry is shown, not dropped
    assert "| others | 0 |" in card and "| wet dog shakes | not staged |" in card

    # sections of unexpected types do not break the card
    odd = copy.deepcopy(read_manifest(ROOT / "models"))
    odd["benchmark"]["detector_heldout"] = None
    odd["front_end"]["detector"] = None
    odd["recipe"] = "not a mapping"
    card = model_card(odd)
    assert "| ROI detector | none: the whole frame is used |" in card and "## Recipe" not in card


def test_main_writes_the_card(tmp_path, capsys):
    out = tmp_path / "card.md"
    assert main([str(ROOT / "models"), "-o", str(out)]) == 0
    assert out.read_text() == model_card(read_manifest(ROOT / "models"))
    assert main([str(tmp_path / "missing"), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ratscore: error: ") and "\n" not in err


def test_real_footage_rows_become_a_section():
    manifest = copy.deepcopy(read_manifest(ROOT / "models"))
    manifest.setdefault("benchmark", {})["real_footage"] = [
        {"set": "dev", "recording": "mouse1", "shows": "black mouse, top view", "moments": 30, "hold": 0.833,
         "familiar": False, "reasons": ["the detector recognised the animal itself in only 39 of 234 frames"],
         "max_stage": 6},
        {"set": "held out", "recording": "rat2", "shows": "hooded rat", "moments": 24, "hold": 0.95,
         "familiar": True, "reasons": [], "max_stage": 0}]
    card = model_card(manifest)
    assert "## On real footage" in card
    assert ("| dev | mouse1 | black mouse, top view | 83% | unfamiliar: the detector recognised the animal itself "
            "in only 39 of 234 frames | 6 |") in card
    assert "| held out | rat2 | hooded rat | 95% | familiar | 0 |" in card
    assert "real_footage" not in card.split("## Measured figures")[-1]  # not repeated under "Other figures"


def test_every_stage_of_the_recipe_has_words_in_the_card():
    styled = BundleRecipe(detector_style="varied", behaviour_style="varied")  # the recipe with every stage
    assert [s.name for s in bundle_stages(styled) if s.name not in _STAGE_WORDS] == []
