"""The 14 RatSeizure action units and their default Racine stages.

Ids and names are exactly those of the RatSeizure annotation JSON. Stages 1-5 follow
Racine (1972); 6-7 the extended scale of Pinel & Rovner (1978). "wet dog shakes" has no
stage: it is counted and reported on its own. A lab overrides the stages with a YAML file:

    racine:
      mouth clonus: 2        # by name ...
      9: 5                   # ... or by id
      wet dog shakes: null   # null = not staged
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional


from .errors import InputError

LABELS: tuple[str, ...] = (
    "others",
    "staring",
    "mouth clonus",
    "wet dog shakes",
    "head nodding",
    "neck jerk",
    "unilateral forelimb clonus",
    "bilateral forelimb clonus",
    "alternating forelimb clonus",
    "rearing",
    "falling",
    "wild running",
    "jumping",
    "tonic extension",
)
NUM_CLASSES = len(LABELS)
LABEL_IDS: dict[str, int] = {name: i for i, name in enumerate(LABELS)}

NORMAL_ID = LABEL_IDS["others"]
WET_DOG_SHAKES_ID = LABEL_IDS["wet dog shakes"]
MAX_STAGE = 7

DEFAULT_RACINE: dict[int, Optional[int]] = {
    0: 0,
    1: 1,
    2: 1,
    3: None,
    4: 2,
    5: 2,
    6: 3,
    7: 4,
    8: 3,
    9: 4,
    10: 5,
    11: 6,
    12: 6,
    13: 7,
}


def label_id(label: str | int) -> int:
    """The id of an action unit given by name (as in the JSON) or id; InputError if unknown."""
    if isinstance(label, bool):
        raise InputError(f"unknown action unit {label!r}")
    if isinstance(label, int):
        if 0 <= label < NUM_CLASSES:
            return label
        raise InputError(f"unknown action unit id {label} (ids are 0..{NUM_CLASSES - 1})")
    name = str(label).strip()
    if name.isdigit():
        return label_id(int(name))
    if name in LABEL_IDS:
        return LABEL_IDS[name]
    folded = name.lower().replace("_", " ")
    if folded in LABEL_IDS:
        return LABEL_IDS[folded]
    raise InputError(f"unknown action unit {label!r} (see `ratscore labels`)")


@dataclass(frozen=True)
class RacineMap:
    """Action unit id -> Racine stage (None: counted but not staged)."""

    stages: tuple[Optional[int], ...] = tuple(DEFAULT_RACINE[i] for i in range(NUM_CLASSES))

    def stage(self, au_id: int) -> Optional[int]:
        return self.stages[au_id]

    def as_dict(self) -> dict[str, Optional[int]]:
        return {LABELS[i]: s for i, s in enumerate(self.stages)}

    @classmethod
    def from_mapping(cls, overrides: Mapping, base: Optional["RacineMap"] = None) -> "RacineMap":
        """`base` (default: the published scale) with the stages `overrides` names replaced."""
        stages = list((base or cls()).stages)
        for key, value in overrides.items():
            au = label_id(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 0 <= value <= MAX_STAGE):
                raise InputError(f"Racine stage for {LABELS[au]!r} must be an integer 0..{MAX_STAGE} or null, got {value!r}")
            if au == NORMAL_ID and value not in (0, None):
                raise InputError("'others' is normal behaviour and cannot have a seizure stage")
            stages[au] = value
        return cls(tuple(stages))


def load_racine_map(path: str | Path | None, base: Optional[RacineMap] = None) -> RacineMap:
    """The stage of each AU: a YAML config file's, else `base`'s (a model's own map), else the
    published scale's."""
    if path is None:
        return base or RacineMap()
    from .config import read_yaml_mapping

    doc = read_yaml_mapping(path, "Racine config")
    if not isinstance(doc.get("racine"), dict):
        raise InputError(f"{path}: expected a mapping with a 'racine' section of label: stage")
    try:
        return RacineMap.from_mapping(doc["racine"], base)
    except InputError as e:
        raise InputError(f"{path}: {e}") from None
