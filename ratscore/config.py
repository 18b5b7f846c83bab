"""Reading the YAML files users give (Racine maps, synth settings, localizer configs, rig profiles)."""

from __future__ import annotations

from pathlib import Path

import yaml

from .errors import InputError


def read_yaml_mapping(path: str | Path, what: str = "config file") -> dict:
    """The mapping a YAML file holds (an empty file is {}); one-line InputError naming the file otherwise."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: unreadable {what} ({e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"{path}: {what} is not valid YAML{where}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise InputError(f"{path}: a {what} must be a mapping (YAML key: value)")
    return doc
