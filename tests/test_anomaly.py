"""Anomaly sentinel: real crashes rank on top, no look-ahead, ranged runs equal day-by-day runs exactly."""

import datetime as dt

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

from quantlab.calendar import sessions, shift_sessions
from quantlab.curator.anomaly import (
    FEATURES,
    AnomalySettings,
    bar_features,
    history_start,
    score_bars,
    top_anomalies,
)
from quantlab.curator.embedded import embedded_ohlcv
from quantlab.curator.synthetic import synthetic_ohlcv

SMALL = AnomalySettings(n_jobs=1)  # small universes: fitted in this process


@pytest.fixture(scope="module")
def small_bars() -> pl.DataFrame:
    return synthetic_ohlcv(6, dt.date(2009, 1, 2), dt.date(2011, 12, 30))


def _at(bars: pl.DataFrame, symbol: str, day: dt.date) -> dict:
    return bars.filter((pl.col("symbol") == symbol) & (pl.col("date") == day)).row(0, named=True)


def test_embedded_crash_ranks_among_the_top_scores() -> None:
    """AAPL's real -52% day of 2000-09-29 (a profit warning) is among the 5 highest scores of 13 years."""
    scores = score_bars(embedded_ohlcv(), dt.date(2000, 3, 1), dt.date(2013, 3, 1))
    assert scores.height == embedded_ohlcv().height
    ranked = scores.filter(pl.col("score").is_not_null()).sort("score", descending=True)
    top5 = ranked.head(5).select("date", "symbol").rows()
    assert (dt.date(2000, 9, 29), "AAPL") in top5
    top = top_anomalies(scores, AnomalySettings())
    print(top.select("date", "symbol", "score"))
    assert top.height == 10 and top.row(0, named=True)["symbol"] == "AAPL"
    # the top list is made of large moves on heavy volume (earnings surprises, crashes), not data noise
    assert (top["ret"].abs() > 0.05).all() and (top["volume_z"] > 2.5).all()
    crash = _at(scores, "AAPL", dt.date(2000, 9, 29))
    assert crash["model_date"] == dt.date(2000, 8, 31) and crash["score"] >= AnomalySettings().threshold


def test_features_use_only_past_bars(small_bars: pl.DataFrame) -> None:
    s = SMALL
    feats = bar_features(small_bars, s)
    assert feats.columns == ["symbol", "date", *FEATURES]
    one = small_bars.filter(pl.col("symbol") == "SYN0003").sort("date")
    f = feats.filter(pl.col("symbol") == "SYN0003").sort("date")
    # warm-up: the first bar has no return, the z-scores need a full window before the bar
    assert f["ret"].null_count() == 1 and f["volume_z"].null_count() == s.volume_window
    assert f["ret_z"].null_count() == s.volatility_window + 1
    t = 100
    close, vol = one["close"].to_numpy(), np.log(one["volume"].to_numpy().astype(float))
    row = f.row(t, named=True)
    window = vol[t - s.volume_window : t]  # the bars before t, t excluded
    assert row["volume_z"] == pytest.approx((vol[t] - window.mean()) / window.std(ddof=1), rel=1e-12)
    rets = np.log(close[1:] / close[:-1])[t - 1 - s.volatility_window : t - 1]
    assert row["ret_z"] == pytest.approx(
        np.log(close[t] / close[t - 1]) / np.sqrt(np.mean(rets**2)), rel=1e-12
    )
    assert row["gap"] == pytest.approx(one["open"][t] / close[t - 1] - 1, rel=1e-12)
    # changing bars after t leaves the features up to t unchanged
    later = small_bars.with_columns(
        pl.when(pl.col("date") > one["date"][t]).then(pl.col(c) * 3).otherwise(pl.col(c)).alias(c)
        for c in ("open", "high", "low", "close", "volume")
    )
    g = bar_features(later, s).filter(pl.col("symbol") == "SYN0003").sort("date")
    assert g.head(t + 1).equals(f.head(t + 1))
    assert not g.equals(f)


def test_no_look_ahead(small_bars: pl.DataFrame) -> None:
    """Changing every bar after t, including later days of t's own month, leaves scores up to t unchanged."""
    start, t, end = dt.date(2011, 2, 1), dt.date(2011, 3, 15), dt.date(2011, 4, 29)
    base = score_bars(small_bars, start, end, SMALL)
    after = pl.col("date") > t
    shocked = small_bars.with_columns(
        pl.when(after).then(pl.col("close") * 0.5).otherwise(pl.col("close")).alias("close"),
        pl.when(after).then(pl.col("low") * 0.5).otherwise(pl.col("low")).alias("low"),
        pl.when(after).then(pl.col("volume") * 20).otherwise(pl.col("volume")).alias("volume"),
    )
    moved = score_bars(shocked, start, end, SMALL)
    upto = pl.col("date") <= t
    assert moved.filter(upto).equals(base.filter(upto))
    # later bars of the same month keep their model (fitted before the month) but their features move
    march = (pl.col("date") > t) & (pl.col("date") <= dt.date(2011, 3, 31))
    assert moved.filter(march)["model_date"].equals(base.filter(march)["model_date"])
    assert not moved.filter(march)["score"].equals(base.filter(march)["score"])


def test_ranged_run_equals_day_by_day_runs(small_bars: pl.DataFrame) -> None:
    a, b = dt.date(2011, 1, 24), dt.date(2011, 2, 8)  # across a monthly refit
    ranged = score_bars(small_bars.filter(pl.col("date") >= history_start(a, SMALL)), a, b, SMALL)
    days = []
    for day in sessions(a, b):
        window = small_bars.filter(pl.col("date").is_between(history_start(day, SMALL), day))
        days.append(score_bars(window, day, day, SMALL))
    daily = pl.concat(days)
    assert ranged.equals(daily)  # bit-identical, nulls included
    assert ranged["score"].null_count() == 0 and ranged["model_date"].n_unique() == 2
    assert ranged.height == 6 * len(sessions(a, b))
    # more history than required changes nothing either
    assert score_bars(small_bars, a, b, SMALL).equals(ranged)


def test_history_start_covers_training_window_and_warm_up() -> None:
    s = AnomalySettings()
    start = dt.date(2011, 3, 15)
    first_train = shift_sessions(dt.date(2011, 3, 1), -s.train_sessions)
    h = history_start(start, s)
    assert h < first_train
    assert len(sessions(h, first_train)) > max(s.volume_window, s.volatility_window) + 1
    assert history_start(dt.date(2011, 3, 31), s) == h  # one model per month, one history per month


def test_scores_are_deterministic_and_independent_of_workers() -> None:
    bars = synthetic_ohlcv(3, dt.date(2008, 1, 2), dt.date(2009, 12, 31))
    a, b = dt.date(2009, 3, 2), dt.date(2009, 10, 30)  # 8 months: fitted in worker processes when n_jobs > 1
    one = score_bars(bars, a, b, SMALL)
    assert score_bars(bars, a, b, SMALL).equals(one)
    assert score_bars(bars, a, b, AnomalySettings(n_jobs=2)).equals(one)
    other = score_bars(bars, a, b, AnomalySettings(n_jobs=1, seed=8))
    assert not other["score"].equals(one["score"])
    assert one.schema["score"] == pl.Float64 and one["score"].null_count() == 0
    assert ((one["score"] > 0) & (one["score"] <= 1)).all()


def test_no_model_without_enough_history() -> None:
    bars = synthetic_ohlcv(3, dt.date(2010, 1, 4), dt.date(2010, 12, 31))
    feats = bar_features(bars, SMALL).drop_nulls()
    # the model scoring June is fitted on the 252 sessions up to 2010-05-28: here only the usable ones exist
    usable = feats.filter(pl.col("date") <= dt.date(2010, 5, 28))["date"].n_unique()
    june = (dt.date(2010, 6, 1), dt.date(2010, 6, 30))
    enough = score_bars(bars, *june, AnomalySettings(n_jobs=1, min_train_sessions=usable))
    assert enough["score"].null_count() == 0
    assert (enough["model_date"] == dt.date(2010, 5, 28)).all()
    short = score_bars(bars, *june, AnomalySettings(n_jobs=1, min_train_sessions=usable + 1))
    assert short["score"].null_count() == short.height and short["model_date"].null_count() == short.height
    assert short.select(FEATURES).equals(enough.select(FEATURES))  # features are reported all the same
    # default settings: no score in the first months, scores once 60 sessions of history exist
    early = score_bars(bars, dt.date(2010, 1, 4), dt.date(2010, 12, 31), SMALL)
    assert early.filter(pl.col("date") < dt.date(2010, 4, 1))["score"].null_count() == 3 * len(
        sessions(dt.date(2010, 1, 4), dt.date(2010, 3, 31))
    )
    assert early.filter(pl.col("date") >= dt.date(2010, 7, 1))["score"].null_count() == 0


def test_empty_input_gives_an_empty_frame_with_the_layout() -> None:
    empty = synthetic_ohlcv(2, dt.date(2011, 1, 3), dt.date(2011, 1, 31)).clear()
    out = score_bars(empty, dt.date(2011, 1, 3), dt.date(2011, 1, 31), SMALL)
    assert out.is_empty()
    assert out.schema == pl.Schema(
        {"date": pl.Date, "symbol": pl.String, "score": pl.Float64}
        | {f: pl.Float64 for f in FEATURES}
        | {"model_date": pl.Date}
    )
    assert top_anomalies(out, SMALL).is_empty()


def test_settings_are_strict() -> None:
    s = AnomalySettings()
    assert (s.train_sessions, s.min_train_sessions, s.seed, s.top_n, s.volume_window) == (252, 60, 7, 10, 20)
    with pytest.raises(ValidationError, match="extra"):
        AnomalySettings.model_validate({"treshold": 0.8})
    for bad in (
        {"n_estimators": 0},
        {"max_samples": 1},
        {"threshold": 0.0},
        {"threshold": 1.5},
        {"top_n": 0},
        {"volume_window": 1},
        {"seed": -1},
        {"train_sessions": 100, "min_train_sessions": 101},
    ):
        with pytest.raises(ValidationError):
            AnomalySettings(**bad)


def test_top_anomalies_orders_filters_and_caps() -> None:
    d = [dt.date(2020, 1, i) for i in (2, 3, 6, 7, 8)]
    scores = pl.DataFrame(
        {
            "date": [d[0], d[1], d[1], d[2], d[3], d[4], d[4]],
            "symbol": ["A", "B", "A", "A", "C", "B", "A"],
            "score": [0.90, 0.80, 0.80, 0.60, None, 0.75, 0.95],
            **{f: [0.0] * 7 for f in FEATURES},
            "model_date": [dt.date(2019, 12, 31)] * 7,
        }
    )
    top = top_anomalies(scores, AnomalySettings(threshold=0.75, top_n=4))
    assert top.columns == ["date", "symbol", "score", *FEATURES]
    assert top.select("date", "symbol", "score").rows() == [
        (d[4], "A", 0.95),
        (d[0], "A", 0.90),
        (d[1], "A", 0.80),  # ties: by date, then symbol
        (d[1], "B", 0.80),
    ]
    assert top_anomalies(scores, AnomalySettings(threshold=0.75, top_n=10)).height == 5  # 0.75 is included
    assert top_anomalies(scores, AnomalySettings(threshold=0.99)).is_empty()
