"""Bad inputs: special files never hang, sizes beyond what a scoring holds are refused at once,
annotation ids stay inside their folder, truncated recordings say so, frames too small or turned
sideways are flagged, weight files that cannot load say why in one line, and report stills are
the real frame at their time."""

from __future__ import annotations

import json
import os
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import one_line_error
from ratscore.cli import app
from ratscore.errors import InputError
from test_video import make_video

runner = CliRunner()


def finishes(call, seconds: float = 60.0, fifo: Path | None = None):
    """call() run in a thread; fails the test (instead of hanging it) when it is still running after
    `seconds`, first freeing a thread blocked opening `fifo` by opening its other end."""
    box: dict = {}

    def run():
        try:
            box["value"] = call()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            box["error"] = e

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        if fifo is not None:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        pytest.fail(f"still running after {seconds} s: blocked on a special file?")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _model_args(model):
    return ["--model", str(model), "--no-roi", "--device", "cpu", "--threshold", "0"]


# --- 1. special files -----------------------------------------------------------------------

@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "camera.mp4"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("special", ["fifo", "/dev/null", "/dev/zero"])
def test_special_files_are_refused_before_anything_opens_them(special, fifo):
    from ratscore.pipeline import video_fingerprint
    from ratscore.video import check_video_file, probe_video, read_frames

    path = fifo if special == "fifo" else Path(special)
    for call in (lambda: check_video_file(path), lambda: video_fingerprint(path), lambda: probe_video(path),
                 lambda: list(read_frames(path))):
        with pytest.raises(InputError, match="not a regular file"):
            finishes(call, 30, fifo)


def test_analyze_and_extract_refuse_a_fifo_in_one_line(tmp_path, fifo, tiny_model):
    result = finishes(lambda: runner.invoke(app, ["analyze", str(fifo), "-o", str(tmp_path / "o"),
                                                  *_model_args(tiny_model)]), 60, fifo)
    assert "not a regular file" in one_line_error(result)
    result = finishes(lambda: runner.invoke(app, ["analyze", "/dev/zero", "-o", str(tmp_path / "o"),
                                                  *_model_args(tiny_model)]), 60)
    assert "not a regular file" in one_line_error(result)
    result = finishes(lambda: runner.invoke(app, ["extract", str(fifo), "-o", str(tmp_path / "f"),
                                                  "--model", str(tiny_model), "--no-roi", "--device", "cpu"]), 60, fifo)
    one_line_error(result)


def test_batch_lists_a_fifo_as_a_failure_without_hanging(tmp_path, tiny_model):
    study = tmp_path / "study"
    study.mkdir()
    os.mkfifo(study / "rat1.mp4")
    result = finishes(lambda: runner.invoke(app, ["batch", str(study), "-o", str(tmp_path / "o"),
                                                  *_model_args(tiny_model)]), 120, study / "rat1.mp4")
    assert result.exit_code == 1, result.output
    assert "not a regular file" in result.output


# --- 2. sizes a scoring holds ---------------------------------------------------------------

def test_72_hours_at_tenth_second_bins_are_scored():
    from ratscore.labels import RacineMap
    from ratscore.timeline import Event, ScoringOptions, score_events

    hours72 = 72 * 3600.0
    events = [Event(10.0, 20.0, 9, 0.9), Event(100_000.0, 100_050.0, 10, 0.8), Event(259_000.0, 259_100.0, 4, 0.7),
              Event(0.0, hours72, 1, 0.2)]  # a stage-1 event under everything: every bin is painted
    s = finishes(lambda: score_events(events, "long", hours72, 30.0, "m", RacineMap(), ScoringOptions(bin_s=0.1)), 60)
    assert len(s.racine) == 2_592_000
    stage = s.racine.racine_stage.to_numpy()
    assert stage[100] == 4 and stage[1_000_000] == 5 and stage[2_590_500] == 2 and stage[50] == 1
    assert s.racine.au.iloc[1_000_000] == "falling" and s.summary["max_stage"] == 5


def test_timeline_sizes_beyond_what_it_holds_are_refused_at_once(tmp_path):
    from ratscore.labels import RacineMap
    from ratscore.timeline import MAX_BINS, MAX_DURATION_S, Event, ScoringOptions, score_events

    events = tmp_path / "rat.events.csv"
    events.write_text("start_s,end_s,au\n10,20,rearing\n")
    out = tmp_path / "out"
    for args in (["--bin", "1e-7"], ["--duration", "1e11"], ["--duration", "inf"],
                 ["--duration", str(MAX_BINS * 0.1 * 2), "--bin", "0.1"]):
        result = finishes(lambda: runner.invoke(app, ["timeline", str(events), "-o", str(out), *args]), 30)
        err = one_line_error(result)
        assert "MemoryError" not in err and "internal error" not in err
    assert "or wider" in err  # the too-many-bins line says what bin would fit
    absurd = tmp_path / "absurd.events.csv"
    absurd.write_text("start_s,end_s,au\n10,1e12,rearing\n")
    err = one_line_error(finishes(lambda: runner.invoke(app, ["timeline", str(absurd), "-o", str(out)]), 30))
    assert "line 2" in err and "days" in err
    assert not out.exists() or not any(p.suffix == ".csv" for p in out.iterdir())
    with pytest.raises(InputError, match="longer than"):
        score_events([Event(0, 1, 9)], "v", MAX_DURATION_S * 2, 30.0, "m", RacineMap(), ScoringOptions())
    with pytest.raises(InputError, match="--bin must be at least"):
        ScoringOptions(bin_s=1e-7)


def test_analyze_refuses_a_bin_it_cannot_hold_before_any_work(tmp_path, tiny_model):
    video = make_video(tmp_path / "v.mp4", n_frames=40)
    result = finishes(lambda: runner.invoke(app, ["analyze", str(video), "-o", str(tmp_path / "o"), "--bin", "1e-7",
                                                  *_model_args(tiny_model)]), 60)
    assert "--bin" in one_line_error(result)


# --- 3. ids stay inside their folder ---------------------------------------------------------

BAD_IDS = ["../trav/evil", "/abs/evil", "a/b", "..", ".", ""]


@pytest.mark.parametrize("video_id", BAD_IDS)
def test_annotation_ids_must_be_file_stems(tmp_path, video_id):
    from ratscore.annotations import read_annotations

    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"database": {video_id: {"subset": "testing", "duration": 10.0, "annotations": []}}}))
    with pytest.raises(InputError, match="video id"):
        read_annotations(path)


def test_load_features_never_reads_outside_its_folder(tmp_path):
    from ratscore.features import load_features

    inside = tmp_path / "features"
    inside.mkdir()
    np.save(inside / "ok.npy", np.zeros((4, 8), np.float32))
    np.save(tmp_path / "evil.npy", np.ones((4, 8), np.float32))  # would load, if the id could climb out
    assert set(load_features(inside, ["ok"])) == {"ok"}
    for video_id in ("../evil", str(tmp_path / "evil"), "sub/evil", ""):
        with pytest.raises(InputError, match="inside the features folder"):
            load_features(inside, [video_id])


def test_benchmark_refuses_an_id_that_climbs_out(tmp_path, tiny_model):
    features = tmp_path / "features"
    features.mkdir()
    (tmp_path / "trav").mkdir()
    np.save(tmp_path / "trav" / "evil.npy", np.zeros((72, 128), np.float32))
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"database": {"../trav/evil": {
        "subset": "testing", "duration": 10.0, "annotations": [{"segment": [1.0, 2.0], "label": "rearing"}]}}}))
    result = runner.invoke(app, ["benchmark", "--model", str(tiny_model), "--annotations", str(ann),
                                 "--features", str(features), "--device", "cpu"])
    assert "../trav/evil" in one_line_error(result)


# --- 4. truncated recordings ----------------------------------------------------------------

@pytest.fixture(scope="module")
def faststart_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cut")
    whole = make_video(folder / "whole.mp4", n_frames=300, faststart=True)  # 10 s, index at the front
    data = whole.read_bytes()
    cut = folder / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    return whole, cut


def test_truncated_recording_is_flagged_where_features_are_extracted(faststart_pair, tiny_model):
    from ratscore.features import extract_features

    whole, cut = faststart_pair
    full = extract_features(whole, tiny_model, device="cpu", no_roi=True, progress=False)
    assert full.truncated is None and full.decode_warnings == []
    short = extract_features(cut, tiny_model, device="cpu", no_roi=True, progress=False)
    assert short.truncated and short.truncated.startswith("truncated: ") and "10.00 s" in short.truncated
    assert short.decode_warnings.count(short.truncated) == 1
    assert [w for w in short.decode_warnings if w.startswith("truncated")] == [short.truncated]


def test_analyze_and_extract_report_truncation(tmp_path, faststart_pair, tiny_model):
    whole, cut = faststart_pair
    out = tmp_path / "o"
    result = runner.invoke(app, ["analyze", str(cut), "-o", str(out), *_model_args(tiny_model)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "cut.summary.json").read_text())
    assert len(summary["warnings"]) == 1 and summary["warnings"][0].startswith("truncated: ")
    line = next(x for x in result.stdout.splitlines() if x.startswith(str(cut)))
    assert "WARNING: truncated" in line
    result = runner.invoke(app, ["analyze", str(whole), "-o", str(out), *_model_args(tiny_model)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "whole.summary.json").read_text())["warnings"] == []
    assert "WARNING" not in result.stdout
    result = runner.invoke(app, ["extract", str(cut), "-o", str(tmp_path / "f"), "--model", str(tiny_model),
                                 "--no-roi", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "truncated: the file says 10.00 s" in result.stderr


# --- 5. trust: frames too small, frames turned sideways --------------------------------------

def _trust_without_distance(result):
    """A check whose feature statistics are the video's own: only the frames can flag it."""
    from ratscore.trust import TrustCheck, feature_stats

    return TrustCheck(feature_stats([result.features]), distance_limit=1e9).assess(result)


def test_frames_too_small_to_see_a_rat_are_flagged(tmp_path, tiny_model):
    from ratscore.features import extract_features

    tiny = extract_features(make_video(tmp_path / "tiny.mp4", n_frames=40, width=32, height=24), tiny_model,
                            device="cpu", no_roi=True, progress=False)
    assert (tiny.width, tiny.height) == (32, 24)
    trust = _trust_without_distance(tiny)
    assert trust["familiar"] is False and any("32x24" in r and "too small" in r for r in trust["reasons"])
    normal = extract_features(make_video(tmp_path / "normal.mp4", n_frames=40), tiny_model, device="cpu",
                              no_roi=True, progress=False)
    assert _trust_without_distance(normal)["familiar"] is True


def test_a_rotation_tag_that_turns_frames_portrait_is_flagged(tmp_path, tiny_model):
    from ratscore.features import extract_features

    # upright landscape pixels with a stray 90-degree tag: ratscore (like every player) turns them sideways
    stray = extract_features(make_video(tmp_path / "stray.mp4", n_frames=40, width=160, height=96, rotation=90),
                             tiny_model, device="cpu", no_roi=True, progress=False)
    assert (stray.width, stray.height, stray.rotation) == (96, 160, 90)
    trust = _trust_without_distance(stray)
    assert trust["familiar"] is False
    assert any("portrait" in r and "90-degree rotation tag" in r for r in trust["reasons"])
    # sideways pixels whose tag turns them upright (a phone's way): landscape, nothing to flag
    honest = extract_features(make_video(tmp_path / "honest.mp4", n_frames=40, width=96, height=160, rotation=90),
                              tiny_model, device="cpu", no_roi=True, progress=False)
    assert (honest.width, honest.height) == (160, 96)
    assert _trust_without_distance(honest)["familiar"] is True


def test_analyze_records_the_frame_and_flags_a_tiny_video(tmp_path, tiny_model):
    video = make_video(tmp_path / "small.mp4", n_frames=40, width=32, height=24)
    result = runner.invoke(app, ["analyze", str(video), "-o", str(tmp_path / "o"), *_model_args(tiny_model)])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "o" / "small.summary.json").read_text())
    assert (summary["source"]["width"], summary["source"]["height"], summary["source"]["rotation"]) == (32, 24, 0)
    assert any("too small" in r for r in summary["trust"]["reasons"]) and summary["trust"]["familiar"] is False


# --- 6. weight files that do not load --------------------------------------------------------

class _Gadget:
    """Pickled by reference to this module: loading it would need this code."""


def _weight_files(folder: Path) -> dict[str, Path]:
    files = {"random": folder / "random.pt", "text": folder / "notes.pt", "code": folder / "code.pt",
             "cut": folder / "cut.pt", "empty": folder / "empty.pt", "pickle": folder / "plain.pt"}
    files["random"].write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    files["text"].write_text("these are my notes, not weights\n" * 20)
    torch.save({"weight": _Gadget()}, files["code"])
    good = folder / "good.pt"
    torch.save({"weight": torch.zeros(64, 64)}, good)
    files["cut"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    files["empty"].write_bytes(b"")
    files["pickle"].write_bytes(pickle.dumps({"weight": [1.0, 2.0]}))
    return files


def _complete(message: str) -> None:
    assert "\n" not in message and "Re-running" not in message and "`torch." not in message
    assert message.endswith(")")  # the reason closes: nothing is cut off after it


def test_checkpoint_load_failures_say_why_in_one_complete_line(tmp_path):
    from ratscore.checkpoint import safe_load

    files = _weight_files(tmp_path)
    reasons = {}
    for kind, path in files.items():
        with pytest.raises(InputError) as caught:
            safe_load(path)
        reasons[kind] = str(caught.value)
        _complete(reasons[kind])
    assert "needs code to load" in reasons["code"] and "_Gadget" in reasons["code"]
    for kind in ("random", "text", "cut", "empty", "pickle"):
        assert "needs code" not in reasons[kind], reasons[kind]
        assert "not a readable PyTorch checkpoint" in reasons[kind]
    assert "neither a zip archive nor a pickle" in reasons["random"]
    assert "a text file" in reasons["text"]
    assert "cut off or damaged" in reasons["cut"]
    assert "empty" in reasons["empty"]
    assert "not a file saved by torch.save" in reasons["pickle"]


def test_i3d_weight_load_failures_say_why_in_one_complete_line(tmp_path):
    from ratscore.features import load_i3d_weights

    files = _weight_files(tmp_path)
    for kind, path in files.items():
        with pytest.raises(InputError) as caught:
            load_i3d_weights(path)
        message = str(caught.value)
        _complete(message)
        assert ("needs code to load" in message) == (kind == "code"), message
    with pytest.raises(InputError, match=r"random.pt: not a PyTorch weights file \(its bytes are neither"):
        load_i3d_weights(files["random"])


# --- 7. report stills are the real frame -----------------------------------------------------

BITS = 12  # frame index as a bar code: 12 blocks, white for 1


def _barcode(i: int) -> np.ndarray:
    image = np.full((32, 8 * BITS, 3), 16, np.uint8)
    for b in range(BITS):
        if (i >> b) & 1:
            image[:, 8 * b: 8 * b + 8] = 235
    return image


def _read_barcode(image: np.ndarray) -> int:
    blocks = image[4:28].reshape(24, BITS, 8, 3).mean(axis=(0, 2, 3))
    return int(sum(1 << b for b in range(BITS) if blocks[b] > 128))


def _long_gop_clip(path: Path, codec: str, fmt: str, seconds: int = 60, fps: int = 30) -> Path:
    import av

    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = 8 * BITS, 32, "yuv420p"
        stream.codec_context.gop_size = 250  # a keyframe every 8.3 s, as many cameras write
        stream.options = ({"preset": "ultrafast", "qp": "0", "x264-params": "keyint=250:min-keyint=250:scenecut=0"}
                          if codec == "libx264" else {"qscale": "2"})
        for i in range(seconds * fps):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(_barcode(i), format="rgb24")))
        container.mux(stream.encode(None))
    return path


def _every_packet_marked_key(src: Path, dst: Path) -> Path:
    """The same stream, its index marking every frame a keyframe (some capture software does)."""
    import av

    with av.open(str(src)) as source, av.open(str(dst), "w") as target:
        inp = source.streams.video[0]
        out = target.add_stream_from_template(inp)
        for packet in source.demux(inp):
            if packet.dts is None:
                continue
            packet.is_keyframe = True
            packet.stream = out
            target.mux(packet)
    return dst


@pytest.fixture(scope="module")
def long_gop_clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gop")
    ts = _long_gop_clip(folder / "camera.ts", "libx264", "mpegts")  # seeking searches timestamps: lands late
    mp4 = _long_gop_clip(folder / "camera.mp4", "libx264", "mp4")
    avi = _every_packet_marked_key(_long_gop_clip(folder / "plain.avi", "mpeg4", "avi"), folder / "allkey.avi")
    return {"ts": ts, "mp4": mp4, "avi": avi}


@pytest.mark.parametrize("kind", ["ts", "mp4", "avi"])
def test_crop_at_gives_the_real_frame_deep_into_a_long_gop_recording(long_gop_clips, kind):
    import av

    from ratscore.video import crop_at

    path = long_gop_clips[kind]
    with av.open(str(path)) as container:  # the truth: every frame, decoded front to back
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert [_read_barcode(f) for f in frames[:3]] == [0, 1, 2]
    for t in (0.5, 7.9, 12.3, 41.0, 45.55, 58.2, 59.9):
        expected = min(len(frames) - 1, int(t * 30 + 0.25))
        still = crop_at(path, t)
        assert _read_barcode(still) == expected, (kind, t)
        assert np.abs(still.astype(int) - frames[expected]).mean() < 2.0, (kind, t)
    box = crop_at(path, 45.55, box=(0, 0, 32, 32), out_size=16)
    assert box.shape == (16, 16, 3)
