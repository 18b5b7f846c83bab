import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import one_line_error
from ratscore.cli import app
from ratscore.errors import InputError
from ratscore.timeline import EPISODE_COLUMNS, RACINE_COLUMNS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "sample_videos" / "example.events.csv"
runner = CliRunner()


def test_labels_command():
    result = runner.invoke(app, ["labels"])
    assert result.exit_code == 0
    for name in ("others", "wet dog shakes", "alternating forelimb clonus", "tonic extension", "not staged"):
        assert name in result.stdout


def test_timeline_command_writes_everything(tmp_path):
    result = runner.invoke(app, ["timeline", str(EXAMPLE), "-o", str(tmp_path), "--episode-gap", "10"])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert names == ["example.episodes.csv", "example.racine.csv", "example.summary.json", "example.timeline.png"]
    assert list(pd.read_csv(tmp_path / "example.racine.csv").columns) == RACINE_COLUMNS
    episodes = pd.read_csv(tmp_path / "example.episodes.csv")
    assert list(episodes.columns) == EPISODE_COLUMNS and len(episodes) == 2  # the wet dog shake makes none
    summary = json.loads((tmp_path / "example.summary.json").read_text())
    # The duration comes from the summary.json beside the events file (120 s), not the last event.
    assert summary["duration_s"] == 120.0 and len(pd.read_csv(tmp_path / "example.racine.csv")) == 120
    assert summary["max_stage"] == 5 and summary["wet_dog_shakes"] == 1
    assert (tmp_path / "example.timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_timeline_threshold_and_duration(tmp_path):
    events = tmp_path / "rat7.events.csv"
    shutil.copy(EXAMPLE, events)
    result = runner.invoke(app, ["timeline", str(events), "-o", str(tmp_path / "o"), "--threshold", "0.5",
                                 "--duration", "200", "--bin", "2"])
    assert result.exit_code == 0, result.output
    racine = pd.read_csv(tmp_path / "o" / "rat7.racine.csv")
    assert len(racine) == 100
    summary = json.loads((tmp_path / "o" / "rat7.summary.json").read_text())
    assert summary["n_events"] == 7  # the neck jerk (0.46) and the late mouth clonus (0.21) are left out


def test_events_file_round_trip(tmp_path):
    from ratscore.writers import read_events_csv

    video, events = read_events_csv(EXAMPLE)
    assert video == "example" and len(events) == 9 and events[7].au_id == 3


@pytest.mark.parametrize("content, message", [
    ("video,start_s,end_s,au,score\nv,1,2,grooming,0.5\n", "line 2: unknown action unit 'grooming'"),
    ("video,start_s,end_s,au,score\nv,3,2,staring,0.5\n", "line 2: event"),
    ("video,start_s,end_s,score\nv,1,2,0.5\n", "missing column"),
    ("video,start_s,end_s,au,au_id\nv,1,2,staring,4\n", "au_id says 4"),
    ("video,start_s,end_s,au,score\nv,1,2,staring,7\n", "outside \\[0, 1\\]"),
    ("", "empty file"),
])
def test_timeline_bad_events_file(tmp_path, content, message):
    events = tmp_path / "bad.events.csv"
    events.write_text(content)
    result = runner.invoke(app, ["timeline", str(events), "-o", str(tmp_path / "o")])
    err = one_line_error(result)
    import re

    assert re.search(message, err), err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_timeline_bad_options(tmp_path):
    one_line_error(runner.invoke(app, ["timeline", str(EXAMPLE), "-o", str(tmp_path), "--bin", "0"]))
    one_line_error(runner.invoke(app, ["timeline", str(tmp_path / "none.csv"), "-o", str(tmp_path)]))
    result = runner.invoke(app, ["timeline", str(EXAMPLE)])  # no -o: a usage error
    assert result.exit_code == 2


def test_racine_config_file(tmp_path):
    cfg = tmp_path / "lab.yaml"
    cfg.write_text("racine:\n  falling: 4\n")
    result = runner.invoke(app, ["timeline", str(EXAMPLE), "-o", str(tmp_path), "--racine-config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "example.summary.json").read_text())["max_stage"] == 4
    cfg.write_text("racine: [")
    one_line_error(runner.invoke(app, ["labels", "--racine-config", str(cfg)]))


def test_debug_shows_the_traceback(tmp_path):
    result = runner.invoke(app, ["--debug", "timeline", str(tmp_path / "none.csv"), "-o", str(tmp_path)])
    assert result.exit_code != 0 and isinstance(result.exception, InputError)


def test_timeline_never_takes_the_summary_of_another_run(tmp_path):
    from ratscore.files import publish_set

    events = EXAMPLE.read_bytes()
    summary = json.loads(EXAMPLE.with_name("example.summary.json").read_text())
    publish_set(tmp_path, "rat9", {"rat9.events.csv": lambda f: f.write(events),
                                   "rat9.summary.json": lambda f: f.write(json.dumps(summary).encode())})
    result = runner.invoke(app, ["timeline", str(tmp_path / "rat9.events.csv"), "-o", str(tmp_path / "a")])
    assert result.exit_code == 0 and json.loads((tmp_path / "a" / "rat9.summary.json").read_text())["duration_s"] == 120
    # the summary replaced by another run's while the events stayed: not this set's, not used
    (tmp_path / "rat9.summary.json").write_text(json.dumps({**summary, "duration_s": 500.0}))
    result = runner.invoke(app, ["timeline", str(tmp_path / "rat9.events.csv"), "-o", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "b" / "rat9.summary.json").read_text())["duration_s"] != 500.0
