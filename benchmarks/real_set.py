"""The real recordings that bench_real_roi.py measures, made again from their public sources,
frame for frame the same on every machine, with their labelled positions.

    .venv/bin/python benchmarks/real_set.py SOURCES OUT [--recipes FILE] [--only STEM,...]

The recordings are public clips under their own licences, so the repository holds none of them:
`real_set/recipes.json` says how each was made (its source files by repository, path, commit and
sha256; the frames taken; a crop; grey or colour; the frame rate), and
`real_set/<stem>.positions.csv` holds its labelled moments (time_s, x, y, w, h: the animal's centre
and its body without the tail, in the recording's pixels; made once by the method in
benchmarks/README.md and checked by eye). Get the source files from their repositories yourself
and put them anywhere under SOURCES: each is found by its sha256, so a different version of a file
is never used by mistake. For each recording of a set (dev, held out, fresh, held out) this
writes OUT/<set>/videos/<stem>.mp4 (H.264) and OUT/<set>/positions/<stem>.positions.csv and
.about.txt (<set>: `dev`, `held_out`, `fresh_held_out`), then prints the bench_real_roi.py command
for each set. A recording already in OUT is left as it is.

So every session measures the same frames against the same positions, where each fresh box used
to make its own and figures moved with the labelling.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Iterator

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ratscore.files import file_sha256  # noqa: E402
from ratscore.video import write_h264  # noqa: E402

RECIPES = Path(__file__).resolve().parent / "real_set" / "recipes.json"
ENCODER = {"crf": "18", "preset": "medium"}
GREY = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601 luma


class SetError(Exception):
    """A recipe or a source that cannot make its recording: one line for the user."""


def index_sources(folder: Path, wanted: set[str]) -> dict[str, Path]:
    """sha256 -> a file under `folder` with those bytes, for the wanted hashes (files of other
    sizes are hashed too: a folder of a few source files is quick to read)."""
    found: dict[str, Path] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest = file_sha256(path)
        if digest in wanted:
            found.setdefault(digest, path)
    return found


def source_frames(paths: list[Path]) -> Iterator[np.ndarray]:
    """Every decoded frame of the files in order, one to one (no resampling), as (H, W, 3) RGB."""
    import av

    for path in paths:
        with av.open(str(path)) as container:
            for frame in container.decode(container.streams.video[0]):
                yield frame.to_ndarray(format="rgb24")


def recipe_frames(recipe: dict, paths: list[Path]) -> Iterator[np.ndarray]:
    """The recording's frames: from `first_frame`, `frames` of them (None: to the end), cropped to
    `crop` ([x0, y0, x1, y1], ends excluded), in grey (three equal channels) if `grey`."""
    first, count = int(recipe.get("first_frame") or 0), recipe.get("frames")
    crop = recipe.get("crop")
    taken = 0
    for index, image in enumerate(source_frames(paths)):
        if index < first:
            continue
        if count is not None and taken >= count:
            return
        if crop is not None:
            x0, y0, x1, y1 = (int(v) for v in crop)
            image = image[y0:y1, x0:x1]
        if recipe.get("grey"):
            luma = np.rint(image.astype(np.float32) @ GREY).clip(0, 255).astype(np.uint8)
            image = np.repeat(luma[..., None], 3, axis=2)
        taken += 1
        yield image
    if count is not None and taken < count:
        raise SetError(f"{recipe['stem']}: its sources hold {taken} frames from frame {first}, not {count}")


def set_folder(name: str) -> str:
    """'fresh, held out' -> 'fresh_held_out'."""
    return "_".join(name.replace(",", " ").split())


def make_recording(recipe: dict, sources: dict[str, Path], positions_dir: Path, out: Path) -> str:
    """Write OUT/<set>/videos/<stem>.mp4 and its positions; 'made' or 'there before'."""
    stem = recipe["stem"]
    folder = out / set_folder(recipe["set"])
    video = folder / "videos" / f"{stem}.mp4"
    positions = folder / "positions"
    positions.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(positions_dir / f"{stem}.positions.csv", positions / f"{stem}.positions.csv")
    (positions / f"{stem}.about.txt").write_text(recipe["about"].strip() + "\n")
    if video.exists():
        return "there before"
    paths = [sources[s["sha256"]] for s in recipe["sources"]]
    video.parent.mkdir(parents=True, exist_ok=True)
    written = write_h264(video, recipe_frames(recipe, paths), float(recipe["fps"]), ENCODER)  # whole or absent
    if written == 0:
        video.unlink(missing_ok=True)
        raise SetError(f"{stem}: no frames from frame {recipe.get('first_frame') or 0} of its sources")
    return "made"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", type=Path, help="a folder holding the recordings' source files (anywhere inside)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--recipes", type=Path, default=RECIPES, help="recipes.json (its positions lie beside it)")
    parser.add_argument("--only", default="", help="comma-separated stems: only these")
    args = parser.parse_args(argv)
    try:
        recipes = json.loads(args.recipes.read_text())
        if args.only:
            wanted = {s.strip() for s in args.only.split(",") if s.strip()}
            unknown = wanted - {r["stem"] for r in recipes}
            if unknown:
                raise SetError(f"no recipe for {', '.join(sorted(unknown))} in {args.recipes}")
            recipes = [r for r in recipes if r["stem"] in wanted]
        if not args.sources.is_dir():
            raise SetError(f"{args.sources} is not a folder")
        positions_dir = args.recipes.parent
        for recipe in recipes:
            if not (positions_dir / f"{recipe['stem']}.positions.csv").is_file():
                raise SetError(f"{recipe['stem']}: no {recipe['stem']}.positions.csv beside {args.recipes}")
        found = index_sources(args.sources, {s["sha256"] for r in recipes for s in r["sources"]})
        missing = [f"{s['repo']}:{s['path']} ({r['stem']})" for r in recipes for s in r["sources"]
                   if s["sha256"] not in found]
        if missing:
            raise SetError(f"not under {args.sources} (by sha256): {'; '.join(missing)}")
        for recipe in recipes:
            print(f"{recipe['stem']}: {make_recording(recipe, found, positions_dir, args.out)}", flush=True)
    except (OSError, ValueError, KeyError, SetError) as e:
        print(f"real_set: {e}".replace("\n", " "), file=sys.stderr)
        return 2
    for name in dict.fromkeys(r["set"] for r in recipes):
        folder = args.out / set_folder(name)
        seizures = [r["stem"] for r in recipes if r["set"] == name and r.get("seizure")]
        print(f"\n# {name}\n.venv/bin/python benchmarks/bench_real_roi.py {folder}/videos {folder}/positions "
              f"--out RESULTS/{set_folder(name)}" + (f" --seizures {','.join(seizures)}" if seizures else "")
              + f' [--record "{name}"]')
    return 0


if __name__ == "__main__":
    sys.exit(main())
