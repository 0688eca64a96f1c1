"""Anomaly sentinel: an IsolationForest scores every daily bar for a person to review (pure, no Dagster).

Features (`FEATURES`, per bar, per symbol, from that symbol's bars up to and including the bar):
- `ret`: log return close / previous close (adjusted series);
- `gap`: overnight gap, open / previous close - 1 (adjusted series);
- `range`: intraday range (high - low) / close;
- `ret_z`: `ret` over the trailing volatility (root mean square of the `volatility_window` returns before
  the bar, the bar excluded);
- `volume_z`: z-score of log volume against the `volume_window` bars before the bar (the bar excluded).

A feature without enough history (a symbol's first bars), or not finite (a zero volume, a flat window), is
null; a bar with any null feature is neither fitted nor scored. Trailing windows count the symbol's bars
(rows), which are its sessions when no session is missing (the quality gate blocks missing sessions).
Rolling sums add the shifted values in a fixed order, so a feature value is bit-identical whatever history
precedes its window.

Refit schedule. Every day of a calendar month is scored by one model, fitted on the bars dated in the
`train_sessions` NYSE sessions ending the session before the month's first session (its `model_date`), so
a model never sees the month it scores. Training rows are sorted by (date, symbol) and the forest is seeded:
the same rows always give the same model, and a ranged run equals day-by-day runs exactly when each reads
from `history_start`. With fewer than `min_train_sessions` sessions of usable training rows there is no model
and the month's scores are null.

The score is `-IsolationForest.score_samples`: the anomaly score of Liu et al. (2008), in (0, 1], higher is
more anomalous (about 0.5 and below is ordinary).
"""

from __future__ import annotations

import datetime as dt
import operator
from functools import reduce

import numpy as np
import polars as pl
from pydantic import Field, model_validator
from sklearn.ensemble import IsolationForest

from quantlab.calendar import sessions, shift_sessions
from quantlab.config import Strict

FEATURES: tuple[str, ...] = ("ret", "gap", "range", "ret_z", "volume_z")
_WARMUP_MARGIN = (
    10  # extra sessions read before the feature warm-up (a few missing bars do not break exactness)
)


class AnomalySettings(Strict):
    """Settings of the anomaly sentinel (unknown keys and out-of-range values are rejected)."""

    train_sessions: int = Field(
        default=252, ge=20, le=2520, description="Training window of each monthly model, in NYSE sessions."
    )
    min_train_sessions: int = Field(
        default=60,
        ge=1,
        description="Fewer sessions with usable training bars before a model's fit date: no model, null scores.",
    )
    n_estimators: int = Field(default=100, ge=1, le=1000, description="Trees of each IsolationForest.")
    max_samples: int = Field(
        default=256,
        ge=2,
        le=100_000,
        description="Bars drawn (without replacement) to grow each tree (capped at the training rows).",
    )
    seed: int = Field(default=7, ge=0, le=2**32 - 1, description="random_state of every forest.")
    threshold: float = Field(
        default=0.7,
        gt=0.0,
        le=1.0,
        description="Score at or above which a bar is an anomaly (the WARN check fails on any such bar).",
    )
    top_n: int = Field(default=10, ge=1, le=1000, description="How many top anomalies a check lists.")
    volume_window: int = Field(
        default=20, ge=2, le=252, description="Bars before the bar for the log-volume z-score."
    )
    volatility_window: int = Field(
        default=20, ge=2, le=252, description="Returns before the bar for the trailing volatility of ret_z."
    )

    @model_validator(mode="after")
    def _check_min_train(self) -> AnomalySettings:
        if self.min_train_sessions > self.train_sessions:
            raise ValueError(
                f"min_train_sessions ({self.min_train_sessions}) exceeds train_sessions ({self.train_sessions})"
            )
        return self


def _trailing_sum(x: pl.Expr, w: int) -> pl.Expr:
    """Sum of the w values before each row (rows 1..w back), added in a fixed order; null if any is null."""
    return reduce(operator.add, [x.shift(k) for k in range(1, w + 1)])


def _finite(x: pl.Expr) -> pl.Expr:
    return pl.when(x.is_finite()).then(x)


def bar_features(bars: pl.DataFrame, settings: AnomalySettings | None = None) -> pl.DataFrame:
    """symbol, date and the `FEATURES` of every bar, sorted by symbol and date (see the module docstring)."""
    s = settings or AnomalySettings()
    wv, wr = s.volume_window, s.volatility_window
    df = bars.select("symbol", "date", "open", "high", "low", "close", "volume").sort("symbol", "date")
    pos = pl.int_range(pl.len(), dtype=pl.Int64).over("symbol")  # row number within the symbol
    prev_close = pl.col("close").shift(1)
    df = df.with_columns(
        _pos=pos,
        ret=_finite((pl.col("close") / prev_close).log()),
        gap=_finite(pl.col("open") / prev_close - 1.0),
        range=_finite((pl.col("high") - pl.col("low")) / pl.col("close")),
        _lv=_finite(pl.col("volume").cast(pl.Float64).log()),
    ).with_columns(
        ret=pl.when(pl.col("_pos") >= 1).then(pl.col("ret")),
        gap=pl.when(pl.col("_pos") >= 1).then(pl.col("gap")),
    )
    # the windows below read rows 1..w back: masked unless they all belong to the symbol
    lv_mean = _trailing_sum(pl.col("_lv"), wv) / wv
    df = df.with_columns(_lv_mean=lv_mean, _rms=(_trailing_sum(pl.col("ret") ** 2, wr) / wr).sqrt())
    # the mean at row t is built from rows t-w..t-1; the deviations must use that same mean
    dev = [(pl.col("_lv").shift(k) - pl.col("_lv_mean")) ** 2 for k in range(1, wv + 1)]
    lv_var = reduce(operator.add, dev) / (wv - 1)
    out = df.with_columns(
        ret_z=pl.when(pl.col("_pos") >= wr + 1).then(_finite(pl.col("ret") / pl.col("_rms"))),
        volume_z=pl.when(pl.col("_pos") >= wv).then(
            _finite((pl.col("_lv") - pl.col("_lv_mean")) / lv_var.sqrt())
        ),
    )
    return out.select("symbol", "date", *FEATURES)


def _month_first_session(day: dt.date) -> dt.date:
    first = dt.date(day.year, day.month, 1)
    return sessions(first, first + dt.timedelta(days=40))[0]


def _train_window(day: dt.date, train_sessions: int) -> tuple[dt.date, dt.date]:
    """First and last session of the training window of the model that scores `day`."""
    s0 = _month_first_session(day)
    return shift_sessions(s0, -train_sessions), shift_sessions(s0, -1)


def history_start(start: dt.date, settings: AnomalySettings | None = None) -> dt.date:
    """The earliest date to read so that `score_bars(bars, start, end)` is exact for any end >= start.

    The training window of `start`'s month plus the longest feature warm-up and a margin, in sessions.
    """
    s = settings or AnomalySettings()
    lo, _ = _train_window(start, s.train_sessions)
    warmup = max(s.volume_window, s.volatility_window + 1) + _WARMUP_MARGIN
    return shift_sessions(lo, -warmup)


def _days(dates: pl.Series) -> np.ndarray:
    return dates.cast(pl.Date).cast(pl.Int32).to_numpy()


def _day(d: dt.date) -> int:
    return (d - dt.date(1970, 1, 1)).days


def score_bars(
    bars: pl.DataFrame, start: dt.date, end: dt.date, settings: AnomalySettings | None = None
) -> pl.DataFrame:
    """One row per bar dated in [start, end]: date, symbol, score, the `FEATURES`, model_date.

    `bars` (OHLCV contract) must hold the history from `history_start(start)` up to `end`; bars after `end`
    are ignored. `score` is null for a bar with a null feature or in a month without a model; `model_date`
    (the last session of the training window) is null without a model. Sorted by date, symbol.
    """
    s = settings or AnomalySettings()
    feats = bar_features(bars.filter(pl.col("date") <= end), s).sort("date", "symbol")
    ok = pl.all_horizontal([pl.col(f).is_not_null() for f in FEATURES])
    usable = feats.filter(ok)
    x = usable.select(FEATURES).to_numpy().astype(np.float32)  # the forest works in float32
    x_day = _days(usable.get_column("date"))
    usable_days = np.unique(x_day)

    target = feats.filter(pl.col("date").is_between(start, end))
    t_ok = target.select(ok).to_series().to_numpy()
    t_month = target.select(pl.col("date").dt.year() * 12 + pl.col("date").dt.month() - 1).to_series()
    t_month = t_month.to_numpy().astype(np.int64)
    xt = target.select(FEATURES).to_numpy().astype(np.float32)
    score = np.full(target.height, np.nan)
    model_day = np.full(target.height, np.iinfo(np.int32).min, dtype=np.int32)
    for month in np.unique(t_month).tolist():
        lo, hi = _train_window(dt.date(month // 12, month % 12 + 1, 1), s.train_sessions)
        a = np.searchsorted(x_day, _day(lo), side="left")
        b = np.searchsorted(x_day, _day(hi), side="right")
        n_sessions = np.searchsorted(usable_days, _day(hi), side="right") - np.searchsorted(
            usable_days, _day(lo), side="left"
        )
        if n_sessions < s.min_train_sessions:
            continue
        forest = IsolationForest(
            n_estimators=s.n_estimators,
            max_samples=min(s.max_samples, b - a),
            random_state=s.seed,
        ).fit(x[a:b])
        r0, r1 = np.searchsorted(t_month, [month, month + 1])
        rows = r0 + np.flatnonzero(t_ok[r0:r1])
        if rows.size:
            score[rows] = -forest.score_samples(xt[rows])
        model_day[r0:r1] = _day(hi)
    return target.select(
        "date",
        "symbol",
        pl.Series("score", score, dtype=pl.Float64).fill_nan(None),
        *FEATURES,
        pl.Series("model_date", model_day, dtype=pl.Int32)
        .replace(np.iinfo(np.int32).min, None)
        .cast(pl.Date),
    )


def top_anomalies(scores: pl.DataFrame, settings: AnomalySettings | None = None) -> pl.DataFrame:
    """The bars scored at or above the threshold, highest score first (ties by date, symbol), top_n rows."""
    s = settings or AnomalySettings()
    cols = ["date", "symbol", "score", *[f for f in FEATURES if f in scores.columns]]
    return (
        scores.filter(pl.col("score") >= s.threshold)
        .sort(["score", "date", "symbol"], descending=[True, False, False])
        .head(s.top_n)
        .select(cols)
    )
