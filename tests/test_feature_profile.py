"""feature_profile: missing rates, moments, first valid dates, drift (PSI, mean shift), correlation clusters."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from test_features import weekdays

from quantlab.assets.features import PROFILE_FILE, run_features
from quantlab.curator.embedded import embedded_ohlcv
from quantlab.features.library import FEATURE_NAMES, FEATURES, compute_features
from quantlab.features.profile import _psi, feature_profile, profile_tables
from quantlab.resources import Warehouse


def panel(columns: dict[str, np.ndarray], n_symbols: int = 4) -> pl.DataFrame:
    """Rows (date, symbol) for len(values) / n_symbols dates, column values in (date, symbol) order."""
    n = len(next(iter(columns.values())))
    dates = weekdays(n // n_symbols)
    return pl.DataFrame(
        {
            "date": pl.Series(dates, dtype=pl.Date).gather(np.repeat(np.arange(len(dates)), n_symbols)),
            "symbol": [f"S{i}" for i in range(n_symbols)] * len(dates),
            **{k: np.asarray(v, dtype=float) for k, v in columns.items()},
        }
    )


@pytest.fixture(scope="module")
def embedded_features() -> pl.DataFrame:
    return compute_features(embedded_ohlcv())


def test_profile_of_the_library_on_embedded_data(embedded_features: pl.DataFrame) -> None:
    f = embedded_features
    p = profile_tables(f, FEATURE_NAMES)
    assert p.rows == f.height and p.symbols == 5 and p.sampled == f.height
    assert p.summary.get_column("feature").to_list() == list(FEATURE_NAMES)
    # missing rates, means and stds against direct computations
    for row in p.summary.iter_rows(named=True):
        col = f.get_column(row["feature"])
        assert row["missing"] == pytest.approx(col.null_count() / f.height)
        assert row["mean"] == pytest.approx(col.mean(), rel=1e-12)
        assert row["std"] == pytest.approx(col.std(), rel=1e-9)
        assert row["p01"] <= row["p50"] <= row["p99"]
        assert (
            row["lookback"] == FEATURES[row["feature"]].lookback
            and row["kind"] == FEATURES[row["feature"]].kind
        )
    # each symbol warms up exactly its lookback (FB is too short for the 253-session features)
    fv = p.first_valid.to_dicts()
    for row in fv:
        d = FEATURES[row["feature"]]
        assert row["warmup_rows_median"] == d.lookback - 1, row
        assert row["symbols_valid"] + row["never_valid"] == 5
        assert row["never_valid"] == (1 if d.lookback > 196 else 0), row
        first = f.filter(pl.col(row["feature"]).is_not_null()).get_column("date")
        assert row["earliest"] == first.min()
    # drift table complete, and related features clustered
    assert p.split is not None and p.drift.get_column("psi").null_count() == 0
    assert p.drift.get_column("shifted").to_list() == [v > 0.25 for v in p.drift.get_column("psi")]
    clusters = [set(c) for c in p.clusters]
    assert {"mom_252", "mom_12_1"} in clusters
    assert any({"vol_20", "vol_60"} <= c for c in clusters)
    assert not any("ret_1" in c for c in clusters)

    md = feature_profile(f, FEATURE_NAMES)
    for heading in (
        "# Feature profile",
        "## Summary",
        "## First valid date",
        "## Drift",
        "## Correlation clusters",
    ):
        assert heading in md
    assert all(f"| {n} |" in md for n in FEATURE_NAMES)
    assert "mom_252, mom_12_1" in md and "-0.0 " not in md and "| -0.0 |" not in md


def test_drift_statistics() -> None:
    rng = np.random.default_rng(0)
    n = 4 * 400  # 400 dates of 4 symbols
    half = np.repeat([0.0, 1.0], n // 2)
    df = panel(
        {
            "stable": rng.normal(0, 1, n),
            "shifted": rng.normal(0, 1, n) + 1.5 * half,  # mean moves 1.5 std in the second half
            "wider": rng.normal(0, 1, n) * (1 + 2 * half),  # same mean, wider spread
        }
    )
    p = profile_tables(df)
    d = {r["feature"]: r for r in p.drift.iter_rows(named=True)}
    assert p.split == weekdays(400)[200]
    assert d["stable"]["psi"] < 0.1 and d["stable"]["shifted"] is False
    assert abs(d["stable"]["std_mean_shift"]) < 0.15
    assert d["shifted"]["psi"] > 0.25 and d["shifted"]["shifted"] is True
    assert d["shifted"]["std_mean_shift"] == pytest.approx(1.5, abs=0.15)
    assert abs(d["wider"]["std_mean_shift"]) < 0.3 and d["wider"]["shifted"] is True  # PSI sees the spread
    first = df.filter(pl.col("date") < p.split).get_column("shifted")
    second = df.filter(pl.col("date") >= p.split).get_column("shifted")
    assert d["shifted"]["mean_first"] == pytest.approx(first.mean())
    assert d["shifted"]["std_mean_shift"] == pytest.approx((second.mean() - first.mean()) / first.std())


def test_psi_by_hand() -> None:
    first = np.arange(100.0)  # deciles cut at 9.9, 19.8, ...: 10 values per bin
    assert _psi(first, first.copy()) == pytest.approx(0.0)
    second = np.concatenate([np.full(50, 5.0), np.arange(50.0, 100.0)])  # half of it in the first bin
    p, q = np.full(10, 0.1), np.array([0.5, 0, 0, 0, 0, 0.1, 0.1, 0.1, 0.1, 0.1])
    q = np.maximum(q, 1e-4)
    assert _psi(first, second) == pytest.approx(float(np.sum((q - p) * np.log(q / p))))
    assert _psi(first[:9], first) is None  # too few values


def test_correlation_clusters() -> None:
    rng = np.random.default_rng(1)
    n = 4 * 300
    a = rng.normal(0, 1, n)
    y = a + rng.normal(0, 0.6, n)  # corr(a, y) ~ 0.86
    z = y + rng.normal(0, 0.6, n)  # corr(y, z) ~ 0.88, corr(a, z) ~ 0.76: linked only through y
    df = panel(
        {
            "a": a,
            "exp_a": np.exp(a),  # monotone: Spearman 1
            "neg_a": -a,  # |rho| = 1
            "y": y,
            "z": z,
            "free": rng.normal(0, 1, n),
            "gappy": np.where(rng.random(n) < 0.3, np.nan, 2 * a),  # NaN is missing: pairwise complete
        }
    )
    p = profile_tables(df)
    assert p.clusters == [["a", "exp_a", "neg_a", "y", "z", "gappy"]]
    names = p.summary.get_column("feature").to_list()
    corr = dict(zip(names, p.correlation, strict=True))
    assert corr["a"][names.index("exp_a")] == pytest.approx(1.0)
    # ranked over its own values, a gappy feature's ranks are not exactly linear in a's on common rows
    assert corr["a"][names.index("gappy")] == pytest.approx(1.0, abs=1e-3)
    assert corr["a"][names.index("z")] < 0.8 <= corr["y"][names.index("z")]
    assert corr["free"][names.index("a")] < 0.2
    assert p.summary.filter(pl.col("feature") == "gappy").get_column("missing")[0] == pytest.approx(
        0.3, abs=0.05
    )
    md = feature_profile(df, threshold=0.8)
    assert "1. a, exp_a, neg_a, y, z, gappy (|rho| 0." in md and "Not clustered: free." in md
    assert profile_tables(df, threshold=0.99).clusters == [["a", "exp_a", "neg_a", "gappy"]]


def test_empty_input_and_all_missing_columns() -> None:
    empty = pl.DataFrame(schema={"date": pl.Date, "symbol": pl.String, "x": pl.Float64, "y": pl.Float64})
    md = feature_profile(empty)
    assert "0 rows" in md and "_No rows to profile._" in md
    p = profile_tables(empty)
    assert p.summary.height == 2 and p.summary.get_column("mean").null_count() == 2
    assert p.first_valid.get_column("never_valid").to_list() == [0, 0] and p.clusters == []

    df = panel({"x": np.arange(40.0), "nulls": np.full(40, np.nan)}).with_columns(
        pl.lit(None, pl.Float64).alias("null_typed")
    )
    p = profile_tables(df)
    s = {r["feature"]: r for r in p.summary.iter_rows(named=True)}
    assert s["nulls"]["missing"] == s["null_typed"]["missing"] == 1.0 and s["nulls"]["mean"] is None
    fv = {r["feature"]: r for r in p.first_valid.iter_rows(named=True)}
    assert fv["nulls"]["never_valid"] == 4 and fv["nulls"]["earliest"] is None
    assert fv["x"]["earliest"] == weekdays(1)[0] and fv["x"]["warmup_rows_median"] == 0
    d = {r["feature"]: r for r in p.drift.iter_rows(named=True)}
    assert d["nulls"]["psi"] is None and d["nulls"]["std_mean_shift"] is None
    assert d["x"]["shifted"] is True  # a trend: the second half lies above every first-half decile
    short = profile_tables(panel({"x": np.arange(16.0)}))  # 2 dates of 4 symbols a half: too few
    assert short.drift.row(0, named=True)["psi"] is None and short.split is not None
    assert p.clusters == [] and math.isnan(p.correlation[1, 1])
    md = feature_profile(df)
    assert "never" in md and "Not clustered: x, nulls, null_typed." in md

    one_day = panel({"x": np.arange(4.0)})
    assert "_n/a: fewer than two dates._" in feature_profile(one_day)
    assert "_No features._" in feature_profile(df, [])
    with pytest.raises(ValueError, match="lacks"):
        profile_tables(df, ["x", "nope"])


def test_sampling_bounds_the_rows(embedded_features: pl.DataFrame) -> None:
    p = profile_tables(embedded_features, ["mom_20", "vol_20"], max_rows=1000)
    assert p.sampled <= 1000 and p.rows == embedded_features.height
    exact = profile_tables(embedded_features, ["mom_20", "vol_20"])
    assert p.summary.select("missing", "mean", "std").equals(exact.summary.select("missing", "mean", "std"))
    assert p.first_valid.equals(exact.first_valid)
    assert "evenly spaced rows of" in feature_profile(embedded_features, ["mom_20"], max_rows=1000)


def test_run_features_writes_the_profile(tmp_path: Path) -> None:
    wh = Warehouse(database=str(tmp_path / "wh.duckdb"))
    bars = embedded_ohlcv().filter(pl.col("date") <= dt.date(2004, 12, 31))
    wh.replace("ohlcv", bars, bars.get_column("date").min(), bars.get_column("date").max())
    start, end = dt.date(2004, 6, 1), dt.date(2004, 12, 31)
    run = run_features(wh, start, end, tmp_path / "run")
    path = tmp_path / "run" / "reports" / PROFILE_FILE
    assert run.metadata["feature_profile"].path == str(path)
    md = path.read_text()
    assert md.startswith(f"# Feature profile {start} to {end}") and "## Correlation clusters" in md
    assert f"{run.metadata['rows']} rows, 4 symbols, {len(FEATURE_NAMES)} features" in md
    assert "feature_profile" not in run_features(wh, start, end).metadata  # no run dir, no report
