import pytest

from ratscore.errors import InputError
from ratscore.labels import DEFAULT_RACINE, LABELS, RacineMap, label_id, load_racine_map


def test_table_is_the_ratseizure_one():
    assert len(LABELS) == 14
    assert LABELS[0] == "others" and LABELS[4] == "head nodding" and LABELS[13] == "tonic extension"
    assert [RacineMap().stage(i) for i in range(14)] == [0, 1, 1, None, 2, 2, 3, 4, 3, 4, 5, 6, 6, 7]
    assert DEFAULT_RACINE[3] is None


def test_label_id_by_name_and_id():
    assert label_id("wild running") == 11
    assert label_id("Wild_Running") == 11
    assert label_id(7) == 7 and label_id("7") == 7
    with pytest.raises(InputError, match="unknown action unit"):
        label_id("grooming")
    with pytest.raises(InputError):
        label_id(14)


def test_racine_override_from_yaml(tmp_path):
    cfg = tmp_path / "lab.yaml"
    cfg.write_text("racine:\n  mouth clonus: 2\n  9: 5\n  wet dog shakes: 1\n")
    racine = load_racine_map(cfg)
    assert racine.stage(2) == 2 and racine.stage(9) == 5 and racine.stage(3) == 1
    assert racine.stage(13) == 7  # untouched entries keep the default


@pytest.mark.parametrize("text, message", [
    ("racine:\n  grooming: 2\n", "unknown action unit"),
    ("racine:\n  staring: 9\n", "integer 0..7"),
    ("racine:\n  others: 3\n", "normal behaviour"),
    ("[1, 2\n", "not valid YAML"),
    ("stages: {}\n", "'racine' section"),
])
def test_bad_racine_config(tmp_path, text, message):
    cfg = tmp_path / "lab.yaml"
    cfg.write_text(text)
    with pytest.raises(InputError, match=message):
        load_racine_map(cfg)
