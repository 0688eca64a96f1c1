"""Walk-forward model strategies: spec validation, purge/embargo, point-in-time scores, determinism, the model
cache, ranged == day-by-day, every whitelisted estimator, `models` rows, the summary, and a Dagster run."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import polars as pl
import pytest

from quantlab.calendar import session_index, sessions, shift_sessions
from quantlab.config import ConfigError
from quantlab.curator.synthetic import synthetic_ohlcv
from quantlab.features.labels import compute_labels
from quantlab.features.library import compute_features
from quantlab.features.sets import PRESETS
from quantlab.schemas import TABLES
from quantlab.strategy_lab.model import (
    ModelCache,
    build_panel,
    history_start,
    refit_date,
    refit_dates,
    training_mask,
    training_window,
    walk_forward,
)
from quantlab.strategy_lab.spec import StrategySpec, load_strategy, resolve_feature_set
from quantlab.strategy_lab.summary import exposure_stats, strategy_summary
from quantlab.strategy_lab.targets import strategy_targets

warnings.filterwarnings("ignore", message=".*(beta|preview).*")

REPO = Path(__file__).resolve().parents[1]
DATA_START, DATA_END = dt.date(2018, 1, 2), dt.date(2019, 6, 28)
START, END = dt.date(2019, 1, 2), dt.date(2019, 4, 30)  # the walk-forward range most tests score
FAST_GB = {"max_iter": 15, "max_depth": 3, "learning_rate": 0.1}


@pytest.fixture(scope="module")
def data() -> tuple[pl.DataFrame, pl.DataFrame]:
    ohlcv = synthetic_ohlcv(8, DATA_START, DATA_END)
    return compute_features(ohlcv), compute_labels(ohlcv)


def model_spec(sid: str = "ml", portfolio: dict | None = None, **signal: Any) -> StrategySpec:
    sig = {
        "kind": "model",
        "estimator": "gradient_boosting",
        "params": FAST_GB,
        "features": "momentum",
        "label": "fwd_excess_5",
        "train_window": 126,
        "refit_every": 21,
        "embargo": 3,
        "seed": 7,
        "min_train_rows": 50,
        **signal,
    }
    return StrategySpec.model_validate(
        {
            "id": sid,
            "universe": {"all": True},
            "signal": sig,
            "portfolio": portfolio or {"long": {"top": 2}, "short": {"top": 1}},
        }
    )


def run(data, spec: StrategySpec, start=START, end=END, cache: ModelCache | None = None):
    features, labels = data
    return walk_forward(features, labels, spec, resolve_feature_set(spec.signal, PRESETS), start, end, cache)


# ------------------------------------------------------------------------------------------ schedule


def test_refit_schedule_is_anchored_to_the_calendar() -> None:
    days = sessions(dt.date(2019, 1, 2), dt.date(2019, 6, 28))
    for k in (1, 5, 21):
        for d in days:
            f = refit_date(d, k)
            assert f <= d and int(session_index([f])[0]) % k == 0
            assert d < shift_sessions(f, k)  # the next fit date is after d
        assert refit_dates(days[0], days[-1], k) == [d for d in days if refit_date(d, k) == d]


def test_history_start_covers_the_previous_models_window() -> None:
    spec = model_spec()
    first_fit = shift_sessions(refit_date(START, 21), -21)
    assert history_start(spec.signal, START) == shift_sessions(first_fit, -126)


# ------------------------------------------------------------------------------------ purge / embargo


def test_purge_and_embargo(data) -> None:
    features, labels = data
    spec = model_spec(embargo=3)
    sig = spec.signal
    fset = resolve_feature_set(sig, PRESETS)
    # a symbol with a gap: its labels become known later than t + 5 sessions
    sym = features.get_column("symbol").unique().sort()[0]
    late = labels.with_columns(
        asof_date=pl.when((pl.col("symbol") == sym) & (pl.col("date").dt.day() < 8))
        .then(pl.col("asof_date") + pl.duration(days=20))
        .otherwise(pl.col("asof_date"))
    )
    panel = build_panel(features, late, sig, fset.features)
    for f in refit_dates(START, END, sig.refit_every):
        rows, mask = training_mask(panel, f, sig)
        day = panel.day[rows][mask]
        asof = panel.asof[rows][mask]
        first, last = training_window(f, sig)
        assert day.size > 0
        f_day = (f - dt.date(1970, 1, 1)).days
        assert asof.max() <= f_day  # purge: every training label is known at the fit date
        assert (day >= (first - dt.date(1970, 1, 1)).days).all()
        # embargo: nothing dated after f - (horizon + embargo) sessions, although those labels are known at f
        assert day.max() <= (last - dt.date(1970, 1, 1)).days
        assert last == shift_sessions(f, -(5 + 3)) and first == shift_sessions(f, -126)
        known_later = (panel.day > (last - dt.date(1970, 1, 1)).days) & (panel.day < f_day)
        assert (panel.asof[known_later] <= f_day).any()  # ... and there were such rows to drop
        # the row-level purge drops the late-known rows of the gappy symbol
        late_rows = (panel.symbol[rows] == sym) & (panel.asof[rows] > f_day)
        assert not (late_rows & mask).any()


def test_purge_removes_late_labels_inside_the_window(data) -> None:
    features, labels = data
    sig = model_spec(embargo=0).signal
    fset = resolve_feature_set(sig, PRESETS)
    f = refit_dates(START, END, sig.refit_every)[0]
    first, last = training_window(f, sig)
    victim = shift_sessions(last, -2)
    moved = labels.with_columns(
        asof_date=pl.when(pl.col("date") == victim).then(pl.lit(shift_sessions(f, 1))).otherwise("asof_date")
    )
    before = build_panel(features, labels, sig, fset.features)
    after = build_panel(features, moved, sig, fset.features)
    rows_b, mask_b = training_mask(before, f, sig)
    rows_a, mask_a = training_mask(after, f, sig)
    v = (victim - dt.date(1970, 1, 1)).days
    assert (before.day[rows_b][mask_b] == v).any()
    assert not (after.day[rows_a][mask_a] == v).any()  # not known at f: purged


# ---------------------------------------------------------------------------------- point in time


def test_no_look_ahead(data) -> None:
    features, labels = data
    spec = model_spec()
    cut = dt.date(2019, 3, 15)
    base = run(data, spec)
    rng = np.random.default_rng(0)
    noisy_features = features.with_columns(
        pl.when(pl.col("date") > cut).then(pl.col(c) * 3.0 + rng.normal()).otherwise(pl.col(c)).alias(c)
        for c in PRESETS["momentum"].features
    )
    noisy_labels = labels.with_columns(
        value=pl.when(pl.col("asof_date") > cut).then(-pl.col("value") + 0.01).otherwise(pl.col("value"))
    )
    other = run((noisy_features, noisy_labels), spec)
    early = pl.col("date") <= cut
    assert base.scores.filter(early).height > 0
    assert base.scores.filter(early).equals(other.scores.filter(early))
    assert base.models.filter(early).equals(other.models.filter(early))
    assert not base.scores.filter(~early).equals(other.scores.filter(~early))  # the change did matter later


def test_deterministic_for_a_seed(data) -> None:
    for estimator in ("gradient_boosting", "random_forest"):
        params = FAST_GB if estimator == "gradient_boosting" else {"n_estimators": 10, "max_features": 0.5}
        a = run(data, model_spec(estimator=estimator, params=params, seed=3))
        b = run(data, model_spec(estimator=estimator, params=params, seed=3))
        assert a.scores.equals(b.scores) and a.models.equals(b.models)
    c = run(
        data, model_spec(estimator="random_forest", params={"n_estimators": 10, "max_features": 0.5}, seed=4)
    )
    assert not a.scores.get_column("score").equals(c.scores.get_column("score"))  # the seed matters


def test_cache_hit_equals_refit(data, tmp_path: Path) -> None:
    spec = model_spec()
    fresh = run(data, spec, cache=ModelCache(None))
    cache = ModelCache(tmp_path / "models")
    first = run(data, spec, cache=cache)
    assert cache.hits == 0 and cache.misses > 0
    files = sorted((tmp_path / "models").glob("*.joblib"))
    assert len(files) == cache.misses
    again = ModelCache(tmp_path / "models")
    second = run(data, spec, cache=again)
    assert again.misses == 0 and again.hits == cache.misses
    for out in (first, second):
        assert out.scores.equals(fresh.scores)  # bit-identical
        assert out.models.equals(fresh.models)
    # a corrupt file and a missing file are refitted, with the same result
    files[0].write_bytes(b"not a joblib file")
    files[1].unlink()
    repaired = ModelCache(tmp_path / "models")
    third = run(data, spec, cache=repaired)
    assert repaired.misses == 2 and third.scores.equals(fresh.scores)
    assert files[1].is_file()
    # a different model never reuses the cached files
    other = ModelCache(tmp_path / "models")
    run(data, model_spec(seed=8, estimator="random_forest", params={"n_estimators": 5}), cache=other)
    assert other.hits == 0


@pytest.mark.parametrize("estimator", ["gradient_boosting", "ridge"])
def test_ranged_equals_day_by_day(data, estimator: str, tmp_path: Path) -> None:
    params = FAST_GB if estimator == "gradient_boosting" else {"alpha": 2.0}
    spec = model_spec(estimator=estimator, params=params, refit_every=10)
    days = sessions(dt.date(2019, 2, 1), dt.date(2019, 3, 15))
    ranged = run(data, spec, days[0], days[-1])
    cache = ModelCache(tmp_path / "models")
    daily = [run(data, spec, d, d, cache=cache) for d in days]
    assert cache.hits > 0  # daily runs reuse the fit of their fit date
    assert ranged.scores.equals(pl.concat([d.scores for d in daily]))
    assert ranged.models.equals(pl.concat([d.models for d in daily]))
    assert ranged.models.height == len(refit_dates(days[0], days[-1], 10))


# --------------------------------------------------------------------------------------- estimators


@pytest.mark.parametrize(
    ("estimator", "label", "params"),
    [
        ("logistic_regression", "fwd_dir_5", {"C": 0.5}),
        ("ridge", "fwd_excess_5", {"alpha": 1.0}),
        ("ridge", "fwd_dir_5", {}),
        ("random_forest", "fwd_ret_5", {"n_estimators": 10}),
        ("random_forest", "fwd_dir_5", {"n_estimators": 10}),
        ("gradient_boosting", "fwd_excess_5", FAST_GB),
        ("gradient_boosting", "fwd_dir_5", FAST_GB),
    ],
)
def test_each_estimator_fits_and_predicts(data, estimator: str, label: str, params: dict) -> None:
    spec = model_spec(
        estimator=estimator, label=label, params=params, features=["mom_20", "vol_20", "rsi_14"]
    )
    out = run(data, spec)
    scores = out.scores.get_column("score")
    assert out.scores.height > 0 and scores.is_finite().all()
    if spec.signal.is_classifier:
        assert scores.min() >= 0.0 and scores.max() <= 1.0
    assert out.models.height == len(refit_dates(START, END, 21))
    assert out.models.get_column("feature_set").unique().to_list() == ["inline"]
    targets = strategy_targets(data[0].filter(pl.col("date").is_between(START, END)), spec, out.scores)
    TABLES["targets"].schema.validate(targets)
    per_date = targets.group_by("date").agg((pl.col("side") != "flat").sum().alias("n"))
    assert per_date.get_column("n").max() == 3  # long 2, short 1


def test_models_rows_one_per_fit(data) -> None:
    spec = model_spec()
    out = run(data, spec)
    models = out.models.sort("date")
    TABLES["models"].schema.validate(models)
    fits = refit_dates(START, END, 21)
    assert models.get_column("date").to_list() == fits
    assert models.get_column("model_id").n_unique() == len(fits)
    # each row's OOS metric is the previous model's, on its prediction window known at the fit date
    ids = models.get_column("model_id").to_list()
    assert models.get_column("oos_model_id").to_list()[1:] == ids[:-1]
    assert models.get_column("oos_model_id")[0] == out.fitted[shift_sessions(fits[0], -21)].model_id
    assert (models.get_column("oos_dates") == 21 - 4).all()  # d in [f - 21, f - 1] with d + 5 <= f
    assert models.get_column("in_sample_ic").is_not_null().all()
    assert json.loads(models.get_column("params")[0]) == {
        **FAST_GB,
        "early_stopping": False,
        "random_state": 7,
    }
    assert (models.get_column("train_end") <= pl.Series([shift_sessions(f, -8) for f in fits])).all()
    # scores come from the model in force: the one of the last fit date
    used = out.scores.select("date", "model_id").unique().sort("date")
    by_fit = {m.fit_date: m.model_id for m in out.fitted.values() if m is not None}
    for d, mid in used.iter_rows():
        assert by_fit[refit_date(d, 21)] == mid


def test_too_little_data_means_no_model_and_no_score(data) -> None:
    out = run(data, model_spec(min_train_rows=100_000))
    assert out.scores.height == 0 and out.models.height == 0
    targets = strategy_targets(
        data[0].filter(pl.col("date").is_between(START, END)), model_spec(), out.scores
    )
    assert targets.height == 0


def test_model_strategy_needs_scores(data) -> None:
    with pytest.raises(ValueError, match="model strategy"):
        strategy_targets(data[0], model_spec())
    assert model_spec().score_expr.names == frozenset()


# ------------------------------------------------------------------------------------ bad strategies

MODEL_YAML = """\
id: {id}
universe: {{all: true}}
signal:
  kind: model
  estimator: {estimator}
  params: {params}
  features: {features}
  label: {label}
  train_window: {train_window}
  refit_every: {refit_every}
  embargo: {embargo}
portfolio: {{long: {{top: 2}}}}
"""
GOOD = {
    "estimator": "gradient_boosting",
    "params": "{max_depth: 3, learning_rate: 0.05}",
    "features": "momentum",
    "label": "fwd_excess_5",
    "train_window": 504,
    "refit_every": 21,
    "embargo": 5,
}


def _write(root: Path, **changes: Any) -> Path:
    (root / "strategies").mkdir(parents=True, exist_ok=True)
    path = root / "strategies" / "mdl.yaml"
    path.write_text(MODEL_YAML.format(id="mdl", **{**GOOD, **changes}))
    return path


def test_good_model_strategy_loads(tmp_path: Path) -> None:
    spec = load_strategy(_write(tmp_path))
    assert spec.is_model and spec.signal.estimator == "gradient_boosting"
    assert spec.signal.estimator_params() == {
        "early_stopping": False,
        "max_depth": 3,
        "learning_rate": 0.05,
        "random_state": 0,
    }


@pytest.mark.parametrize(
    ("changes", "line", "field", "fragment"),
    [
        ({"estimator": "xgboost"}, 5, "signal.estimator", "'gradient_boosting'"),
        ({"params": "{max_dept: 3}"}, 6, "signal.params.max_dept", "unknown parameter"),
        ({"params": "{max_depth: -1}"}, 6, "signal.params.max_depth", "range [1, inf)"),
        ({"params": "{random_state: 1}"}, 6, "signal.params.random_state", "signal.seed"),
        ({"estimator": "ridge", "params": "{max_depth: 3}"}, 6, "signal.params.max_depth", "Ridge"),
        ({"features": "[mom_20, vol_2O]"}, 7, "signal.features.1", "unknown feature 'vol_2O'"),
        ({"features": "ml_nope"}, 7, "signal.features", "unknown feature set 'ml_nope'"),
        ({"label": "fwd_ret_3"}, 8, "signal.label", "unknown label 'fwd_ret_3'"),
        ({"estimator": "logistic_regression", "params": "{}"}, 8, "signal.label", "needs a binary label"),
        ({"train_window": 10}, 9, "signal.train_window", "greater than or equal to 21"),
        ({"train_window": 99999}, 9, "signal.train_window", "less than or equal to 5040"),
        ({"refit_every": 0}, 10, "signal.refit_every", "greater than or equal to 1"),
        ({"refit_every": 300}, 10, "signal.refit_every", "less than or equal to 252"),
        ({"train_window": 30, "label": "fwd_ret_20", "embargo": 10}, 9, "signal.train_window", "purge"),
        ({"train_window": 25, "label": "fwd_ret_20", "embargo": 5}, 9, "signal.train_window", "test window"),
        ({"embargo": -1}, 11, "signal.embargo", "greater than or equal to 0"),
    ],
)
def test_bad_model_strategy_names_file_line_and_field(
    tmp_path: Path, changes: dict, line: int, field: str, fragment: str
) -> None:
    path = _write(tmp_path, **changes)
    with pytest.raises(ConfigError) as excinfo:
        load_strategy(path)
    msg = str(excinfo.value)
    assert msg.startswith(f"{path}:{line}: {field}: "), msg
    assert fragment in msg


def test_feature_set_resolved_against_the_project(tmp_path: Path) -> None:
    (tmp_path / "feature_sets").mkdir()
    (tmp_path / "feature_sets" / "mine.yaml").write_text(
        "id: mine\ninclude: [momentum]\nfeatures: [rsi_14]\n"
    )
    spec = load_strategy(_write(tmp_path, features="mine"))
    from quantlab.project import Project

    fset = resolve_feature_set(spec.signal, Project(tmp_path).feature_sets)
    assert fset.id == "mine" and fset.features[-1] == "rsi_14" and len(fset.features) == 8
    with pytest.raises(ValueError, match="unknown feature set"):
        resolve_feature_set(spec.signal, PRESETS)


def test_repo_example_loads() -> None:
    from quantlab.project import load_project

    project = load_project(REPO)
    spec = project.strategies["ml_gbm"]
    assert spec.is_model and spec.signal.estimator == "gradient_boosting"
    resolve_feature_set(spec.signal, project.feature_sets)
    assert not any("ml_gbm" in w.members(project.strategies) for w in project.worlds.values())


# ------------------------------------------------------------------------------------------ summary


def test_exposure_stats_turnover() -> None:
    d1, d2, d3 = dt.date(2021, 3, 1), dt.date(2021, 3, 2), dt.date(2021, 3, 3)
    t = pl.DataFrame(
        {
            "date": [d1, d1, d2, d2, d3],
            "symbol": ["A", "B", "A", "C", "C"],
            "weight": [0.5, -0.5, 0.5, 0.5, 1.0],
        }
    )
    s = exposure_stats(t)
    assert s["dates"] == 3 and s["max_positions"] == 2
    assert s["avg_gross"] == pytest.approx(1.0) and s["peak_gross"] == pytest.approx(1.0)
    assert s["avg_net"] == pytest.approx((0 + 1 + 1) / 3) and s["peak_net"] == pytest.approx(1.0)
    # d1 -> d2: |0| + |0 - -0.5| + |0.5| = 1.0; d2 -> d3: |0 - 0.5| + |1 - 0.5| = 1.0
    assert s["turnover"] == pytest.approx(1.0)
    assert exposure_stats(t.filter(pl.col("date") == d1))["turnover"] is None


def test_strategy_summary_renders_rank_and_model(data) -> None:
    spec = model_spec()
    out = run(data, spec)
    feats = data[0].filter(pl.col("date").is_between(START, END))
    rank = StrategySpec.model_validate(
        {"id": "mom", "universe": {"all": True}, "signal": {"score": "mom_20"}}
    )
    targets = pl.concat([strategy_targets(feats, spec, out.scores), strategy_targets(feats, rank)])
    text = strategy_summary({"ml": spec, "mom": rank}, targets, out.models, START, END, PRESETS)
    assert "## ml (version 1)" in text and "## mom (version 1)" in text
    assert "rank by `mom_20`" in text and "model `gradient_boosting` (HistGradientBoostingRegressor)" in text
    assert "`fwd_excess_5` (horizon 5 sessions)" in text and "`momentum` (version" in text
    assert out.models.get_column("model_id")[0] in text
    assert "turnover" in text and "long top 2, short top 1 (long_short)" in text


# ------------------------------------------------------------------------------------ Dagster chain

ML_STRATEGY = """\
id: ml_small
version: 1
tags: [ml]
universe: {all: true}
signal:
  kind: model
  estimator: gradient_boosting
  params: {max_iter: 20, max_depth: 3, learning_rate: 0.1}
  features: [mom_20, vol_20, rsi_14, zscore_20]
  label: fwd_excess_5
  train_window: 63
  refit_every: 10
  embargo: 2
  seed: 3
  min_train_rows: 60
portfolio: {long: {top: 2}, short: {top: 1}, max_weight: 0.5}
"""


def test_dagster_targets_write_models_rows(tmp_path: Path) -> None:
    from quantlab.definitions import CHAIN_JOB, build_definitions
    from quantlab.jobs import HISTORY_JOB
    from quantlab.resources import Warehouse

    root = tmp_path / "project"
    (root / "strategies").mkdir(parents=True)
    (root / "worlds").mkdir()
    shutil.copy(REPO / "strategies" / "momentum_top2.yaml", root / "strategies")
    (root / "strategies" / "ml_small.yaml").write_text(ML_STRATEGY)
    db = tmp_path / "wh" / "warehouse.duckdb"
    defs = build_definitions(project_root=str(root), warehouse=Warehouse(database=str(db)))
    start, end = dt.date(2011, 6, 1), dt.date(2011, 10, 31)
    config = {
        "resources": {"history_window": {"config": {"start": start.isoformat(), "end": end.isoformat()}}}
    }
    result = defs.resolve_job_def(HISTORY_JOB).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), run_config=config
    )
    assert result.success
    wh = Warehouse(database=str(db))
    models = wh.read_table("models", start, end).sort("date")
    fits = [f for f in refit_dates(start, end, 10) if f >= shift_sessions(start, 63 + 5)]
    assert models.height >= len(fits) > 0
    assert set(models.get_column("strategy")) == {"ml_small"}
    assert models.get_column("date").is_unique().all()
    assert sorted((db.parent / "models").glob("*.joblib"))  # the cache sits next to the warehouse
    targets = wh.read_table("targets", start, end, where={"strategy": "ml_small"})
    assert targets.height > 0 and targets.get_column("date").min() >= models.get_column("date").min()
    report = sorted((root / "artifacts" / "runs").glob("*/reports/strategy_summary.md"))
    assert report and "## ml_small" in report[-1].read_text()
    assert models.get_column("model_id")[-1] in report[-1].read_text()

    # the next refit day as one partition, once next to the model cache and once on a copy without it:
    # cached models and refits give the same rows
    day = refit_dates(dt.date(2011, 11, 1), dt.date(2011, 11, 30), 10)[0]
    fresh = tmp_path / "fresh" / "warehouse.duckdb"
    fresh.parent.mkdir()
    shutil.copy(db, fresh)
    for path in (db, fresh):
        res = (
            build_definitions(project_root=str(root), warehouse=Warehouse(database=str(path)))
            .resolve_job_def(CHAIN_JOB)
            .execute_in_process(instance=dg.DagsterInstance.ephemeral(), partition_key=day.isoformat())
        )
        assert res.success
        meta = next(
            m.event_specific_data.materialization.metadata
            for m in res.all_events
            if m.event_type_value == "ASSET_MATERIALIZATION"
            and m.event_specific_data.materialization.asset_key == dg.AssetKey("targets")
        )
        assert meta["model_cache_hits"].value == (
            1 if path == db else 0
        )  # the previous model, for its OOS IC
    rows = [Warehouse(database=str(p)).read_table("models", day, day) for p in (db, fresh)]
    assert rows[0].height == 1 and rows[0].equals(rows[1])
    assert rows[0].get_column("oos_model_id")[0] == models.get_column("model_id")[-1]
    day_targets = [
        Warehouse(database=str(p)).read_table("targets", day, day).sort("strategy", "symbol")
        for p in (db, fresh)
    ]
    assert day_targets[0].equals(day_targets[1])
