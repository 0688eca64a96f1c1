"""Feature sets: presets, user files (include + features), errors naming file/line/field, versions, warm-up."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import polars as pl
import pytest

from quantlab.calendar import shift_sessions
from quantlab.config import ConfigError
from quantlab.curator.embedded import embedded_ohlcv
from quantlab.features.library import FEATURE_NAMES, FEATURES, compute_features, feature_set_version
from quantlab.features.sets import PRESETS, SET_ID, FeatureSet, load_feature_set, load_feature_sets
from quantlab.project import Project

REPO = Path(__file__).resolve().parents[1]


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(text.lstrip("\n"))
    return path


def error_of(directory: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_feature_sets(directory)
    return str(info.value)


# ---------------------------------------------------------------------------------------------- presets
def test_presets_are_valid() -> None:
    assert {"standard", "momentum", "risk", "reversal"} <= set(PRESETS)
    assert PRESETS["standard"].features == list(FEATURE_NAMES)
    for set_id, spec in PRESETS.items():
        assert spec.id == set_id and re.fullmatch(SET_ID, set_id) and spec.description
        assert spec.features and not spec.include
        assert len(set(spec.features)) == len(spec.features)
        assert all(f in FEATURES for f in spec.features)
        assert spec.lookback == max(FEATURES[f].lookback for f in spec.features)
        assert spec.version == feature_set_version(spec.features) and re.fullmatch(
            r"[0-9a-f]{12}", spec.version
        )
    assert len({s.version for s in PRESETS.values()}) == len(PRESETS)


def test_no_directory_gives_the_presets(tmp_path: Path) -> None:
    assert load_feature_sets(tmp_path / "absent") == PRESETS
    assert load_feature_sets(tmp_path) == PRESETS  # an empty directory too


def test_repo_sets_load_and_ml_core() -> None:
    sets = load_feature_sets(REPO / "feature_sets")
    assert set(PRESETS) < set(sets)
    ml = sets["ml_core"]
    assert 8 <= len(ml.features) <= 10
    assert ml.features[: len(PRESETS["momentum"].features)] == PRESETS["momentum"].features  # via include
    assert not ml.include and ml.version == feature_set_version(ml.features)
    assert Project(REPO).feature_sets["ml_core"] == ml


# ------------------------------------------------------------------------------------------ user files
def test_user_set_with_include_and_features(tmp_path: Path) -> None:
    write(
        tmp_path,
        "core",
        """
id: core
description: two presets and two more
include: [momentum, risk]
features: [rsi_14, mom_20, mom_252]
""",
    )
    write(tmp_path, "core_plus", "id: core_plus\ninclude: [core]\nfeatures: [gap_1]\n")
    write(tmp_path, "tiny", "id: tiny\nfeatures: [ret_1, ret_1]\n")
    sets = load_feature_sets(tmp_path)
    core = sets["core"]
    # includes first (in order), then the set's own; duplicates dropped (mom_20 is in momentum)
    assert core.features == [*PRESETS["momentum"].features, *PRESETS["risk"].features, "rsi_14", "mom_252"]
    assert core.include == [] and core.description == "two presets and two more"
    assert core.lookback == 253
    assert sets["core_plus"].features == [*core.features, "gap_1"]
    assert sets["tiny"].features == ["ret_1"] and sets["tiny"].lookback == 2
    assert {k: v for k, v in sets.items() if k in PRESETS} == PRESETS


def test_unresolved_set_has_no_version() -> None:
    spec = FeatureSet(id="x", include=["momentum"])
    with pytest.raises(ValueError, match="unresolved includes"):
        spec.version  # noqa: B018


def test_version_changes_with_membership_not_order(tmp_path: Path) -> None:
    write(tmp_path, "a", "id: a\nfeatures: [mom_20, rsi_14, vol_20]\n")
    write(tmp_path, "b", "id: b\nfeatures: [vol_20, mom_20, rsi_14, mom_20]\n")
    write(tmp_path, "c", "id: c\nfeatures: [vol_20, mom_20]\n")
    write(tmp_path, "d", "id: d\ninclude: [c]\nfeatures: [rsi_14]\n")
    write(tmp_path, "e", "id: e\nfeatures: [vol_20, mom_20, rsi_14, atr_14]\n")
    sets = load_feature_sets(tmp_path)
    assert sets["a"].version == sets["b"].version == sets["d"].version  # same members, any order or route
    assert len({sets["a"].version, sets["c"].version, sets["e"].version}) == 3
    assert sets["a"].version == feature_set_version(["rsi_14", "vol_20", "mom_20"])


# ----------------------------------------------------------------------------- errors: file, line, field
def test_include_cycle_names_file_line_field(tmp_path: Path) -> None:
    write(tmp_path, "a", "id: a\ninclude: [b]\n")
    write(tmp_path, "b", "id: b\nfeatures: [ret_1]\ninclude:\n  - momentum\n  - c\n")
    write(tmp_path, "c", "id: c\ninclude: [a]\n")
    msg = error_of(tmp_path)
    assert f"{tmp_path / 'c.yaml'}:2: include.0: include cycle: a -> b -> c -> a" in msg
    write(tmp_path, "a", "id: a\ninclude: [momentum, a]\n")  # a set including itself
    assert f"{tmp_path / 'a.yaml'}:2: include.1: include cycle: a -> a" in error_of(tmp_path)


def test_unknown_include_names_file_line_field(tmp_path: Path) -> None:
    write(tmp_path, "a", "id: a\ndescription: x\ninclude:\n  - momentum\n  - nope\n")
    msg = error_of(tmp_path)
    assert msg.startswith(f"{tmp_path / 'a.yaml'}:5: include.1: unknown feature set 'nope'")


def test_unknown_feature_names_file_line_field(tmp_path: Path) -> None:
    write(tmp_path, "a", "id: a\nfeatures:\n  - mom_20\n  - mom_21\n")
    msg = error_of(tmp_path)
    assert f"{tmp_path / 'a.yaml'}:4: features.1:" in msg and "unknown feature 'mom_21'" in msg


def test_label_is_never_a_feature(tmp_path: Path) -> None:
    write(tmp_path, "a", "id: a\nfeatures: [mom_20, fwd_ret_5]\n")
    msg = error_of(tmp_path)
    assert f"{tmp_path / 'a.yaml'}:2: features.1:" in msg and "forward-looking" in msg


def test_id_must_equal_file_name(tmp_path: Path) -> None:
    path = write(tmp_path, "mine", "description: d\nid: other\nfeatures: [ret_1]\n")
    with pytest.raises(
        ConfigError, match=re.escape(f"{path}:2: id: 'other' must equal the file name 'mine'")
    ):
        load_feature_set(path)


def test_shadowing_a_preset_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "momentum", "id: momentum\nfeatures: [ret_1]\n")
    assert f"{tmp_path / 'momentum.yaml'}:1: id: 'momentum' is a preset" in error_of(tmp_path)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("id: a\n", ":1: (top level):"),  # neither features nor include
        ("id: a\nfeatures: [ret_1]\ncolour: red\n", ":3: colour: unknown key"),
        ("id: a\ninclude: [Bad-Id]\n", ":2: include.0:"),
        ("id: a\nfeatures: ret_1\n", ":2: features:"),
    ],
)
def test_invalid_files(tmp_path: Path, text: str, where: str) -> None:
    write(tmp_path, "a", text)
    assert f"{tmp_path / 'a.yaml'}{where}" in error_of(tmp_path)


def test_errors_of_all_files_are_reported_together(tmp_path: Path) -> None:
    write(tmp_path, "a", "id: a\nfeatures: [nope]\n")
    write(tmp_path, "b", "id: zzz\nfeatures: [ret_1]\n")
    msg = error_of(tmp_path)
    assert "a.yaml:2: features.0" in msg and "b.yaml:1: id: 'zzz'" in msg


# ----------------------------------------------------------------------------------- first valid date
@pytest.fixture(scope="module")
def embedded_features() -> pl.DataFrame:
    return compute_features(embedded_ohlcv())


@pytest.mark.parametrize("set_id", [*PRESETS, "ml_core"])
def test_first_valid_date_matches_the_data(embedded_features: pl.DataFrame, set_id: str) -> None:
    """For every symbol of the embedded data, the set's first valid date (from the symbol's first bar and the
    set's lookback) is the first date where every member has a value."""
    spec = load_feature_sets(REPO / "feature_sets")[set_id]
    per_symbol = (
        embedded_features.group_by("symbol")
        .agg(
            pl.col("date").min().alias("first_bar"),
            pl.col("date").max().alias("last_bar"),
            pl.col("date")
            .filter(pl.all_horizontal(pl.col(f).is_not_null() for f in spec.features))
            .min()
            .alias("first_full"),
        )
        .sort("symbol")
    )
    assert per_symbol.height == 5
    for symbol, first_bar, last_bar, first_full in per_symbol.iter_rows():
        expected = spec.first_valid_date(first_bar)
        if first_full is None:  # too short a history for the set (FB with a 253-session lookback)
            assert expected > last_bar, (set_id, symbol)
        else:
            assert first_full == expected, (set_id, symbol)
    fb = per_symbol.filter(pl.col("symbol") == "FB").row(0, named=True)
    assert fb["first_bar"] == dt.date(2012, 5, 18)
    assert spec.first_valid_date(fb["first_bar"]) == shift_sessions(fb["first_bar"], spec.lookback - 1)
