"""Evaluate a world over a date range, in date order, from warehouse frames (pure polars/numpy).

Snapshots are built per date from the as-of KPIs, the strategies' returns (paper track, correlation) and
the data lag; the previous day's state comes from the stored decisions, so a ranged run gives exactly the
rows of a day-by-day run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import numpy as np
import polars as pl

from quantlab import metrics
from quantlab.backtest.kpis import KPI_METRICS, KPI_WINDOWS, returns_matrix
from quantlab.calendar import sessions, sessions_between
from quantlab.world.decide import Plan, Snapshot, State, decide
from quantlab.world.spec import WorldSpec


def metric_panel(world: WorldSpec, kpis: pl.DataFrame, members: list[str]) -> pl.DataFrame:
    """One row per (date, strategy) with every `<metric>_<window>` the world can name, plus psr/dsr."""
    frames = []
    for name in [*world.windows, "full"]:
        part = kpis.filter(pl.col("window") == world.kpi_window(name)).select(
            "date", "strategy", *[pl.col(m).cast(pl.Float64).alias(f"{m}_{name}") for m in KPI_METRICS]
        )
        frames.append(part)
    panel = frames[0]
    for part in frames[1:]:
        panel = panel.join(part, on=["date", "strategy"], how="full", coalesce=True)
    extra = kpis.filter(pl.col("window") == "full").select(
        "date", "strategy", pl.col("sample_days").cast(pl.Float64), "psr", "dsr"
    )
    return panel.join(extra, on=["date", "strategy"], how="left").filter(pl.col("strategy").is_in(members))


def data_lags(bar_dates: list[dt.date], days_: list[dt.date]) -> dict[dt.date, int]:
    """Sessions between each day and the newest bar on or before it (a large number when there is none)."""
    bars = np.array(sorted(bar_dates), dtype="datetime64[D]")
    out = {}
    for d in days_:
        k = np.searchsorted(bars, np.datetime64(d, "D"), side="right")
        out[d] = 10**6 if k == 0 else sessions_between(bars[k - 1].astype(dt.date), d)
    return out


def _input_hash(snap: Snapshot) -> str:
    """sha256 of everything `decide` reads for this date (NaN written as null), short."""
    n = len(snap.strategies)

    def values(v: np.ndarray) -> list[float | None]:
        return [None if x != x else x for x in np.broadcast_to(v, (n,)).astype(float).tolist()]

    doc = {
        "date": snap.date.isoformat(),
        "strategies": snap.strategies,
        "metrics": {k: values(v) for k, v in sorted(snap.metrics.items())},
        "data_lag": snap.data_lag,
        "correlation": None if snap.correlation is None else [values(row) for row in snap.correlation],
        "previous": [[s.stage, str(s.stage_since), s.pass_streak, s.fail_streak] for s in snap.previous],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def previous_states(decisions: pl.DataFrame, members: list[str]) -> tuple[State, ...]:
    """States from the latest stored decision rows (one date); new strategies start in `backtest`."""
    by_id = {
        r["strategy"]: State(r["stage"], r["stage_since"], r["pass_streak"], r["fail_streak"])
        for r in decisions.iter_rows(named=True)
    }
    return tuple(by_id.get(m, State()) for m in members)


def evaluate_world(
    world: WorldSpec,
    members: list[str],
    sides: list[str],
    kpis: pl.DataFrame,
    returns: pl.DataFrame,
    bar_dates: list[dt.date],
    previous: tuple[State, ...],
    start: dt.date,
    end: dt.date,
) -> tuple[pl.DataFrame, pl.DataFrame, list[Plan]]:
    """(`world_decisions` rows, `rule_results` rows, plans) for every session in [start, end].

    `kpis`: as-of KPI rows of the members for [start, end]; `returns`: their `strategy_returns` rows up to
    `end` (all history: the paper track may reach back far); `bar_dates`: dates with bars in the world's
    universe up to `end`; `previous`: states after the last decision before `start`.
    """
    days_ = sessions(start, end)
    panel = metric_panel(world, kpis, members)
    names = sorted(world.metric_names - {"data_lag", "paper_days", "sharpe_paper"})
    for name in names:
        if name not in panel.columns:
            panel = panel.with_columns(pl.lit(None, dtype=pl.Float64).alias(name))
    grid = pl.DataFrame({"date": days_}, schema={"date": pl.Date}).join(
        pl.DataFrame({"strategy": members}), how="cross"
    )
    panel = grid.join(panel, on=["date", "strategy"], how="left").sort("date", "strategy")
    order = {m: i for i, m in enumerate(members)}
    panel = panel.with_columns(_o=pl.col("strategy").replace_strict(order, return_dtype=pl.Int64)).sort(
        "date", "_o"
    )
    values = {
        name: panel.get_column(name).fill_null(np.nan).to_numpy().reshape(len(days_), len(members))
        for name in names
    }

    ret_dates, ret_ids, net = returns_matrix(returns.filter(pl.col("strategy").is_in(members)), "net")
    col = {s: i for i, s in enumerate(ret_ids)}
    net = (
        np.column_stack([net[:, col[m]] if m in col else np.full(len(ret_dates), np.nan) for m in members])
        if members
        else net
    )
    ret_pos = np.array(ret_dates, dtype="datetime64[D]")
    corr_cfg = world.selection.correlation
    corr_len = None if corr_cfg is None else KPI_WINDOWS[world.kpi_window(corr_cfg.window)]
    lags = data_lags(bar_dates, days_)

    decisions, rules, plans = [], [], []
    state = previous
    for k, day in enumerate(days_):
        upto = int(np.searchsorted(ret_pos, np.datetime64(day, "D"), side="right"))
        paper_days = np.full(len(members), np.nan)
        sharpe_paper = np.full(len(members), np.nan)
        for i, s in enumerate(state):
            if s.stage in ("paper", "live") and s.stage_since is not None:
                since = int(np.searchsorted(ret_pos, np.datetime64(s.stage_since, "D"), side="right"))
                track = net[since:upto, i]
                track = track[~np.isnan(track)]
                paper_days[i] = sessions_between(s.stage_since, day)
                sharpe_paper[i] = metrics.sharpe_ratio(track)
        corr = None if corr_cfg is None else _corr(net[max(0, upto - (corr_len or upto)) : upto])
        env = {name: values[name][k] for name in names}
        env.update(
            paper_days=paper_days, sharpe_paper=sharpe_paper, data_lag=np.full(len(members), float(lags[day]))
        )
        snap = Snapshot(world, day, tuple(members), tuple(sides), env, lags[day], corr, state)
        plan = decide(snap)
        ihash = _input_hash(snap)
        plans.append(plan)
        for i, m in enumerate(members):
            st = plan.states[i]
            decisions.append(
                {
                    "world": world.id,
                    "date": day,
                    "strategy": m,
                    "policy_version": world.policy_version,
                    "ruleset_hash": world.ruleset_hash,
                    "input_hash": ihash,
                    "stage": st.stage,
                    "stage_since": st.stage_since,
                    "pass_streak": st.pass_streak,
                    "fail_streak": st.fail_streak,
                    "selected": plan.selected[i],
                    "score": None if np.isnan(plan.scores[i]) else plan.scores[i],
                    "reason_code": plan.reason_codes[i],
                    "evaluate_only": plan.evaluate_only,
                }
            )
        for r in plan.rules:
            policy = world.rule(r.family)
            rules.append(
                {
                    "world": world.id,
                    "date": day,
                    "strategy": r.strategy,
                    "rule": r.rule,
                    "family": r.family,
                    "stage": r.stage,
                    "status": r.status,
                    "severity": policy.severity,
                    "owner": policy.owner,
                    "reason_code": r.reason_code,
                    "reason": r.reason,
                    "details": json.dumps(r.details, sort_keys=True),
                }
            )
        state = plan.states
    dec_schema = {
        "stage_since": pl.Date,
        "date": pl.Date,
        "score": pl.Float64,
        "pass_streak": pl.Int64,
        "fail_streak": pl.Int64,
    }
    return (
        pl.DataFrame(decisions, schema_overrides=dec_schema),
        pl.DataFrame(rules, schema_overrides={"date": pl.Date}),
        plans,
    )


def _corr(window: np.ndarray) -> np.ndarray:
    """Pairwise Pearson correlation of columns over rows where both are present (NaN if < 3 rows)."""
    s = window.shape[1]
    if len(window) >= 3 and not np.isnan(window).any() and (window.std(axis=0) > 0).all():
        return np.corrcoef(window.T).reshape(s, s)
    out = np.full((s, s), np.nan)
    for i in range(s):
        for j in range(i + 1, s):
            ok = ~np.isnan(window[:, i]) & ~np.isnan(window[:, j])
            if ok.sum() >= 3:
                a, b = window[ok, i], window[ok, j]
                if a.std() > 0 and b.std() > 0:
                    out[i, j] = out[j, i] = float(np.corrcoef(a, b)[0, 1])
    return out
