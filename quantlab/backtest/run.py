"""Backtest one strategy over a date range from warehouse frames (thin layer over `engine`).

The rebalance schedule is anchored on the global NYSE session index (a decision day is one whose index is
a multiple of `rebalance.every`), so any window of data gives the same schedule. A range [start, end] is
computed from `warmup_start(...)`: one full rebalance cycle plus the execution lag earlier, which always
contains the last execution before `start`; with full rebalancing that execution fixes the state, so a
ranged run and day-by-day runs give identical rows. With a participation cap an order may stop short of
its target and the state then depends on every earlier execution; with a cash return the cash growth is
compounded from the start of the run (its last bits depend on that start). In both cases the run starts
at the strategy's inception (less the ADV window) instead, so results are identical however runs are cut. Rows are emitted from the day after the inception (the first
decision date with a non-zero target).

Cash earns nothing, a constant rate or a risk-free series (`quantlab.backtest.cash`). The average daily traded value behind the cap is
the mean of close_raw x volume over `execution.adv_window` sessions up to the decision day, divided by
`execution.capital` (so it is in units of portfolio capital).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from quantlab.backtest.cash import cash_returns
from quantlab.backtest.engine import ExecutionConfig, run_backtest
from quantlab.calendar import session_index, shift_sessions
from quantlab.strategy_lab.spec import StrategySpec


def warmup_start(start: dt.date, spec: StrategySpec, inception: dt.date | None) -> dt.date:
    """First session whose data a run for [start, ...] must load."""
    from_inception = spec.execution.participation_cap is not None or spec.cash.earns
    if from_inception and inception is not None:
        return shift_sessions(min(start, inception), -(spec.execution.adv_window + 1))
    return shift_sessions(start, -(spec.rebalance.every + spec.execution.lag + 1))


def _adv(ohlcv: pl.DataFrame, window: int, capital: float) -> pl.DataFrame:
    """Average daily traded value per (date, symbol) over `window` rows, in units of capital."""
    traded = (pl.col("close_raw") * pl.col("volume").cast(pl.Float64)).rolling_mean(window).over("symbol")
    return ohlcv.sort("symbol", "date").select("date", "symbol", (traded / capital).alias("adv"))


def _matrices(df: pl.DataFrame, values: list[str], dates: pl.Series, symbols: pl.Series) -> list[np.ndarray]:
    """(T, N) float matrices of `values` placed by (date, symbol) position; NaN where a row is absent."""
    pos = df.join(pl.DataFrame({"date": dates, "_r": np.arange(len(dates))}), on="date").join(
        pl.DataFrame({"symbol": symbols, "_c": np.arange(len(symbols))}), on="symbol"
    )
    rows, cols = pos.get_column("_r").to_numpy(), pos.get_column("_c").to_numpy()
    out = []
    for value in values:
        mat = np.full((len(dates), len(symbols)), np.nan)
        mat[rows, cols] = pos.get_column(value).cast(pl.Float64).to_numpy()
        out.append(mat)
    return out


def backtest_strategy(
    ohlcv: pl.DataFrame,
    targets: pl.DataFrame,
    spec: StrategySpec,
    start: dt.date,
    end: dt.date,
    inception: dt.date | None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(`strategy_returns` rows, `trades` rows) dated in [start, end].

    `ohlcv` covers [warmup_start(...), end] (with close_raw and volume when a participation cap is set);
    `targets` holds the strategy's targets over the same dates;
    `inception` is its first decision date with a non-zero target (None: no position yet, no rows).
    """
    if inception is None or ohlcv.is_empty():
        return pl.DataFrame(), pl.DataFrame()
    dates = ohlcv.get_column("date").unique().sort()
    listed = ohlcv.get_column("symbol").unique()
    symbols = listed.filter(listed.is_in(targets.get_column("symbol").unique())).sort()
    open_, close = _matrices(ohlcv, ["open", "close"], dates, symbols)
    (weights,) = _matrices(targets, ["weight"], dates, symbols)
    weights = np.nan_to_num(weights, nan=0.0)
    rebalance = session_index(dates) % spec.rebalance.every == 0
    ex = spec.execution
    cfg = ExecutionConfig(
        price=ex.price,
        lag=ex.lag,
        fee_bps=spec.costs.fee_bps,
        slippage_bps=spec.costs.slippage_bps,
        participation_cap=ex.participation_cap,
    )
    adv = None
    if ex.participation_cap is not None:
        (adv,) = _matrices(_adv(ohlcv, ex.adv_window, ex.capital), ["adv"], dates, symbols)
    res = run_backtest(
        open_, close, weights, rebalance, cfg, cash_return=cash_returns(spec.cash, dates), adv=adv
    )
    day = dates.to_numpy().astype("datetime64[D]")
    keep = (day >= np.datetime64(max(start, inception + dt.timedelta(days=1)))) & (day <= np.datetime64(end))
    returns = pl.DataFrame(
        {
            "date": day[keep],
            "strategy": spec.id,
            "gross": res.gross[keep],
            "cost": res.cost[keep],
            "net": res.net[keep],
            "long_ret": res.long_ret[keep],
            "short_ret": res.short_ret[keep],
            "cash_ret": res.cash_ret[keep],
            "turnover": res.turnover[keep],
            "gross_exposure": res.gross_exposure[keep],
            "net_exposure": res.net_exposure[keep],
            "capped_trades": res.capped_trades[keep].astype(np.int64),
        }
    ).with_columns(pl.col("date").cast(pl.Date))
    tday = day[res.trade_day]
    tkeep = (tday >= np.datetime64(start)) & (tday <= np.datetime64(end))
    trades = pl.DataFrame(
        {
            "date": tday[tkeep],
            "strategy": spec.id,
            "symbol": symbols.to_numpy().astype(str)[res.trade_symbol[tkeep]],
            "side": np.where(res.trade_dw[tkeep] > 0, "buy", "sell"),
            "weight_change": res.trade_dw[tkeep],
            "price": res.trade_price[tkeep],
            "cost": res.trade_cost[tkeep],
            "capped": res.trade_capped[tkeep],
        },
        schema_overrides={"symbol": pl.String, "side": pl.String},
    ).with_columns(pl.col("date").cast(pl.Date))
    return returns, trades
