"""As-of KPIs of every strategy on every date, over named windows, in one vectorized pass.

Conventions and formulas live in `quantlab.metrics`; this module only shapes the warehouse table.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import numpy as np
import polars as pl

from quantlab import metrics

KPI_WINDOWS: dict[str, int | None] = {"20d": 20, "60d": 60, "126d": 126, "252d": 252, "full": None}
#: Metrics of each side's gross contribution (`long_ret`, `short_ret`), stored as `<side>_<metric>`.
LEG_METRICS = ("sharpe", "annual_return", "annual_volatility", "max_dd", "hit_rate")
LEG_COLUMNS = tuple(f"{side}_{m}" for side in ("long", "short") for m in LEG_METRICS)
#: Per-window KPI columns (psr and dsr are stored beside them); a world names them `<column>_<window>`.
KPI_METRICS = (*(m for m in metrics.ASOF_METRICS if m != "psr"), "trades", *LEG_COLUMNS)
_FLOATS = tuple(m for m in KPI_METRICS if m != "sample_days")


def returns_matrix(returns: pl.DataFrame, column: str) -> tuple[list[dt.date], list[str], np.ndarray]:
    """(dates, strategies, (T, S) matrix) of a long `strategy_returns` frame; NaN where absent."""
    wide = returns.pivot(on="strategy", index="date", values=column, sort_columns=True).sort("date")
    strategies = [c for c in wide.columns if c != "date"]
    mat = wide.select(strategies).to_numpy().astype(np.float64) if strategies else np.empty((wide.height, 0))
    return wide.get_column("date").to_list(), strategies, mat


def asof_kpis(
    returns: pl.DataFrame,
    trade_counts: pl.DataFrame,
    start: dt.date,
    end: dt.date,
    trials: Mapping[str, tuple[int, float]] | None = None,
) -> pl.DataFrame:
    """KPI rows (date in [start, end]) from `strategy_returns` rows covering each strategy's whole history.

    `returns` needs date, strategy, net, turnover, long_ret, short_ret; `trade_counts` the number of trades
    `n` per (date, strategy) (days without a row had none). Values at date t use rows up to and including t
    only. `psr` is against a zero Sharpe; `dsr` deflates it by `trials` (strategy -> (number of tuning
    trials, variance of their per-period Sharpe ratios), see `quantlab.tuning.study.dsr_inputs`); a strategy
    without trials has one: its `dsr` equals its `psr`. `trades`: the number of trades in the window. Leg
    metrics (`long_*`, `short_*`) are those of the side's gross contribution to the daily return, null over a
    window where the side never moved (no position).
    """
    dates, strategies, net = returns_matrix(returns, "net")
    if not strategies:
        return pl.DataFrame()
    turnover = returns_matrix(returns, "turnover")[2]
    tried = {s: trials[s] for s in strategies if s in (trials or {})}
    deflate = (
        {
            "n_trials": np.array([tried.get(s, (1, 0.0))[0] for s in strategies], dtype=np.float64),
            "trials_sr_variance": np.array([tried.get(s, (1, 0.0))[1] for s in strategies]),
        }
        if tried
        else {}
    )
    out = metrics.asof_kpis(net, turnover, KPI_WINDOWS, **deflate)
    # matrices on the axes of `net` (NaN before each strategy's inception): trades, then each leg
    counted = returns.join(trade_counts.select("date", "strategy", "n"), on=["date", "strategy"], how="left")
    per_day = returns_matrix(counted.with_columns(pl.col("n").fill_null(0)), "n")[2]
    for window, total in metrics.asof_window_sums(per_day, KPI_WINDOWS).items():
        out[f"trades_{window}"] = total
    for side in ("long", "short"):
        leg = returns_matrix(returns, f"{side}_ret")[2]
        legs = metrics.asof_kpis(leg, turnover, KPI_WINDOWS)
        moved = metrics.asof_window_sums(np.where(np.isnan(leg), np.nan, leg != 0), KPI_WINDOWS)
        for window in KPI_WINDOWS:
            for m in LEG_METRICS:
                out[f"{side}_{m}_{window}"] = np.where(moved[window] > 0, legs[f"{m}_{window}"], np.nan)
    day = np.array(dates, dtype="datetime64[D]")
    keep = (day >= np.datetime64(start)) & (day <= np.datetime64(end))
    frames = []
    for window in KPI_WINDOWS:
        cols = {m: out[f"{m}_{window}"][keep] for m in (*KPI_METRICS, "psr")}
        cols["dsr"] = out["dsr"][keep] if deflate else cols["psr"]  # since inception, as psr; 1 trial: == psr
        n_days, n_strat = cols["sharpe"].shape
        frame = pl.DataFrame(
            {
                "date": np.repeat(day[keep], n_strat),
                "strategy": np.tile(np.array(strategies), n_days),
                "window": window,
                **{k: v.reshape(-1) for k, v in cols.items()},
            }
        )
        frames.append(frame)
    df = pl.concat(frames).with_columns(pl.col("date").cast(pl.Date))
    in_history = pl.col("sample_days").fill_nan(0).fill_null(0) > 0
    return (
        df.filter(in_history)
        .with_columns(pl.col("sample_days").cast(pl.Int64))
        .with_columns([pl.col(c).fill_nan(None) for c in (*_FLOATS, "psr", "dsr")])
        .sort("date", "strategy", "window")
    )
