"""Capital allocation among a world's live strategies, and the world's own track (pure numpy/polars).

Per date, among the strategies that are `live` after the decision:
- raw weights: `equal` 1/n; `inverse_vol` 1/annual_volatility over the allocation window (a strategy with
  no volatility yet gets the median of the others, or equal weight when none has one); `score` the
  positive part of the world score (all non-positive: equal);
- normalized to sum 1, capped at `max_weight` per strategy (the excess stays in cash: the cap is hard);
- each side's sum scaled down to its `gross_budget` (long, short, long_short).
With no live strategy the world holds cash (no rows). In evaluate-only mode the previous allocation is kept.

World returns are next-bar: the allocation decided at the close of t earns the strategies' net returns of
t+1. equity compounds from 1; drawdown = 1 - equity / running peak (the start counts as a peak).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from quantlab.calendar import shift_sessions
from quantlab.world.spec import WorldSpec


def allocation_weights(world: WorldSpec, sides: list[str], vol: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Weights for the strategies in `sides` (all live) from their volatilities and scores."""
    n = len(sides)
    if n == 0:
        return np.zeros(0)
    method = world.allocation.method
    if method == "inverse_vol":
        ok = np.isfinite(vol) & (vol > 0)
        if ok.any():
            vol = np.where(ok, vol, np.median(vol[ok]))
            raw = 1.0 / vol
        else:
            raw = np.ones(n)
    elif method == "score":
        raw = np.where(np.isfinite(score), np.maximum(score, 0.0), 0.0)
        if raw.sum() <= 0:
            raw = np.ones(n)
    else:
        raw = np.ones(n)
    w = np.minimum(raw / raw.sum(), world.allocation.max_weight)
    for side in set(sides):
        idx = np.array([s == side for s in sides])
        budget = world.allocation.gross_budget.get(side, 1.0)  # type: ignore[call-overload]
        total = w[idx].sum()
        if total > budget:
            w[idx] *= budget / total
    return w


def allocate_range(
    world: WorldSpec,
    decisions: pl.DataFrame,
    metrics_panel: pl.DataFrame,
    sides: dict[str, str],
    previous: pl.DataFrame,
    rejected: frozenset[tuple[dt.date, str]] = frozenset(),
) -> pl.DataFrame:
    """`world_allocations` rows for the dates of `decisions` (date order; frozen days copy the previous).

    `metrics_panel` holds `annual_volatility_<vol_window>` per (date, strategy); `previous` the allocation
    rows of the last date before the range (used if the range starts frozen); `rejected` the (date,
    strategy) pairs the supervisor rejected, which get no capital that day.
    """
    vol_col = f"annual_volatility_{world.allocation.vol_window}"
    vols = {
        (r["date"], r["strategy"]): r[vol_col]
        for r in metrics_panel.select("date", "strategy", vol_col).iter_rows(named=True)
    }
    rejected_on: dict[dt.date, set[str]] = {}
    for d, s in rejected:
        rejected_on.setdefault(d, set()).add(s)
    rows: list[dict] = []
    last = [(r["strategy"], r["side"], r["weight"]) for r in previous.iter_rows(named=True)]
    for (day,), grp in decisions.sort("date").group_by("date", maintain_order=True):
        if grp.get_column("evaluate_only").any():
            current = last
        else:
            live = grp.filter(pl.col("stage") == "live").sort("strategy")
            live = live.filter(~pl.col("strategy").is_in(list(rejected_on.get(day, ()))))
            ids = live.get_column("strategy").to_list()
            side_list = [sides[s] for s in ids]
            vol = np.array([vols.get((day, s), np.nan) for s in ids], dtype=np.float64)
            score = live.get_column("score").fill_null(np.nan).to_numpy().astype(np.float64)
            w = allocation_weights(world, side_list, vol, score)
            current = [(s, side_list[i], float(w[i])) for i, s in enumerate(ids)]
        rows.extend(
            {"world": world.id, "date": day, "strategy": s, "side": side, "weight": wt}
            for s, side, wt in current
        )
        last = current
    return pl.DataFrame(
        rows,
        schema={
            "world": pl.String,
            "date": pl.Date,
            "strategy": pl.String,
            "side": pl.String,
            "weight": pl.Float64,
        },
    )


def world_returns(
    world_id: str,
    allocations: pl.DataFrame,
    strategy_net: pl.DataFrame,
    days_: list[dt.date],
    prev_alloc: pl.DataFrame,
    prev_equity: float,
    prev_peak: float,
) -> pl.DataFrame:
    """`world_returns` rows for `days_`: allocation of the previous session times the strategies' net returns.

    A session with no allocation rows holds cash. `prev_alloc` is the allocation of the session before
    `days_[0]`; `prev_equity`/`prev_peak` the track's
    state at that session (1.0 / 1.0 for a new world).
    """
    alloc = (
        pl.concat([prev_alloc.select(allocations.columns), allocations]) if prev_alloc.height else allocations
    )
    by_day: dict[dt.date, dict[str, float]] = {}
    for r in alloc.iter_rows(named=True):
        by_day.setdefault(r["date"], {})[r["strategy"]] = r["weight"]
    net = {(r["date"], r["strategy"]): r["net"] for r in strategy_net.iter_rows(named=True)}
    equity, peak, out = prev_equity, prev_peak, []
    for day in days_:
        held = by_day.get(shift_sessions(day, -1), {})
        ret = float(sum(wt * (net.get((day, s)) or 0.0) for s, wt in held.items()))
        equity *= 1.0 + ret
        peak = max(peak, equity)
        out.append(
            {
                "world": world_id,
                "date": day,
                "ret": ret,
                "equity": equity,
                "drawdown": 1.0 - equity / peak,
                "exposure": float(sum(held.values())),
                "n_live": len(held),
            }
        )
    return pl.DataFrame(out, schema_overrides={"date": pl.Date, "n_live": pl.Int64})
