"""Feature sets: named subsets of the feature library, presets plus the user's `feature_sets/*.yaml`.

A set is versioned by a hash of its definition (`feature_set_version`: each member's name, lookback and
version, plus the library version), so a model records exactly which features it was trained on. The
`features` table always holds the whole library; a set only selects columns. Each feature declares its
lookback, so a set's warm-up (the longest lookback) and its first valid date for a symbol are known.

User file (`feature_sets/<id>.yaml`, id = file name, may not shadow a preset):

    id: ml_core
    description: momentum and risk for the gradient-boosting strategy
    include: [momentum]              # presets or other sets (optional)
    features: [rsi_14, beta_60]      # library names (optional); at least one feature in total
"""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import AfterValidator, Field, model_validator

from quantlab.calendar import shift_sessions
from quantlab.config import ConfigError, Strict, _line_of, load_directory, load_yaml_model
from quantlab.features.labels import check_no_label_leakage
from quantlab.features.library import FEATURE_NAMES, FEATURES, feature_set_version

SET_ID = r"^[a-z][a-z0-9_]{0,62}$"


def _library_feature(name: str) -> str:
    check_no_label_leakage([name])  # a forward label is never a feature, whatever the library holds
    if name not in FEATURES:
        raise ValueError(f"unknown feature '{name}'; the library has {list(FEATURE_NAMES)}")
    return name


class FeatureSet(Strict):
    id: str = Field(pattern=SET_ID)
    description: str = ""
    include: list[Annotated[str, Field(pattern=SET_ID)]] = []
    features: list[Annotated[str, AfterValidator(_library_feature)]] = []

    @model_validator(mode="after")
    def _not_empty(self) -> FeatureSet:
        if not self.features and not self.include:
            raise ValueError("a feature set needs `features` or `include`")
        return self

    def _resolved(self) -> list[str]:
        if self.include:
            raise ValueError(
                f"feature set '{self.id}' has unresolved includes; load it with load_feature_sets"
            )
        return self.features

    @cached_property
    def version(self) -> str:
        """Hash of the members' definitions (order and repetition do not matter)."""
        return feature_set_version(self._resolved())

    @property
    def lookback(self) -> int:
        """Rows of history the set needs (its longest member lookback; today included)."""
        return max(FEATURES[f].lookback for f in self._resolved())

    def first_valid_date(self, first_bar: dt.date) -> dt.date:
        """The first session every member has a value for a symbol whose first bar is `first_bar`: its
        `lookback`-th session, for a symbol with a bar every session (features count the symbol's rows) and
        no value missing for other reasons (missing inputs, flat windows)."""
        return shift_sessions(first_bar, self.lookback - 1)


def _preset(id: str, description: str, features: tuple[str, ...]) -> FeatureSet:
    return FeatureSet(id=id, description=description, features=list(features))


PRESETS: dict[str, FeatureSet] = {
    s.id: s
    for s in (
        _preset("standard", "every feature of the library", FEATURE_NAMES),
        _preset(
            "momentum",
            "trend and relative strength",
            ("mom_20", "mom_60", "mom_120", "ma_gap_20", "ma_gap_50", "xs_rank_mom_20", "xs_z_mom_20"),
        ),
        _preset(
            "risk", "volatility, range and market beta", ("vol_20", "vol_60", "atr_14", "range_1", "beta_60")
        ),
        _preset(
            "reversal",
            "short-term reversal and exhaustion",
            ("ret_1", "ret_5", "rsi_14", "zscore_20", "gap_1", "volume_ratio_20"),
        ),
    )
}


class _IncludeError(ValueError):
    """A bad `include` entry: set `set_id`, item `index`."""

    def __init__(self, set_id: str, index: int, message: str) -> None:
        super().__init__(message)
        self.set_id, self.index = set_id, index


def _expand(sets: dict[str, FeatureSet]) -> dict[str, FeatureSet]:
    """Resolve `include` (presets or other sets, no cycles) into each set's full feature list (includes'
    features first, in include order, then the set's own; duplicates dropped)."""
    done: dict[str, FeatureSet] = {}

    def resolve(set_id: str, path: tuple[str, ...]) -> FeatureSet:
        if set_id in done:
            return done[set_id]
        spec = sets[set_id]
        features: list[str] = []
        for i, inc in enumerate(spec.include):
            if inc not in sets:
                raise _IncludeError(set_id, i, f"unknown feature set '{inc}'; known: {sorted(sets)}")
            chain = (*path, set_id)
            if inc in chain:
                cycle = " -> ".join((*chain[chain.index(inc) :], inc))
                raise _IncludeError(set_id, i, f"include cycle: {cycle}")
            features += resolve(inc, chain).features
        full = spec.model_copy(
            update={"include": [], "features": list(dict.fromkeys(features + spec.features))}
        )
        done[set_id] = full
        return full

    for set_id in sets:
        resolve(set_id, ())
    return done


def load_feature_set(path: Path) -> FeatureSet:
    """One user set file, validated alone (its includes are resolved by load_feature_sets)."""
    spec = load_yaml_model(path, FeatureSet)
    if spec.id != path.stem:
        raise ConfigError(
            f"{path}:{_key_line(path, 'id')}: id: '{spec.id}' must equal the file name '{path.stem}'"
        )
    if spec.id in PRESETS:
        raise ConfigError(f"{path}:{_key_line(path, 'id')}: id: '{spec.id}' is a preset; choose another name")
    return spec


def _key_line(path: Path, *loc: str | int) -> int:
    return _line_of(yaml.compose(path.read_text(), Loader=yaml.SafeLoader), loc) or 1


def load_feature_sets(directory: Path) -> dict[str, FeatureSet]:
    """The presets plus every `*.yaml` set in `directory` (absent: presets only), includes resolved.

    Raises ConfigError naming the file, line and field: invalid files, an id that is not the file name or
    shadows a preset, unknown features (or labels) and unknown or cyclic includes.
    """
    user = load_directory(directory, load_feature_set) if directory.is_dir() else {}
    try:
        return _expand({**PRESETS, **user})
    except _IncludeError as exc:
        path = Path(directory) / f"{exc.set_id}.yaml"
        raise ConfigError(
            f"{path}:{_key_line(path, 'include', exc.index)}: include.{exc.index}: {exc}"
        ) from None
