"""Evaluate a world over a date range, in date order, from warehouse frames (pure polars/numpy).

Snapshots are built per date from the as-of KPIs, the strategies' returns (paper track, correlation) and
the data lag; the previous day's state comes from the stored decisions, so a ranged run gives exactly the
rows of a day-by-day run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import NamedTuple

import numpy as np
import polars as pl

from quantlab import metrics
from quantlab.backtest.kpis import KPI_METRICS, KPI_WINDOWS, returns_matrix
from quantlab.calendar import sessions, sessions_between
from quantlab.world.decide import Override, Plan, Snapshot, State, decide
from quantlab.world.spec import WorldSpec


class Evaluation(NamedTuple):
    decisions: pl.DataFrame
    rules: pl.DataFrame
    plans: list[Plan]
    snapshots: pl.DataFrame
    stage_history: pl.DataFrame


_SNAPSHOT_SCHEMA = {"world": pl.String, "date": pl.Date, "input_hash": pl.String, "snapshot": pl.String}
_HISTORY_SCHEMA = {
    "world": pl.String,
    "date": pl.Date,
    "strategy": pl.String,
    "from_stage": pl.String,
    "to_stage": pl.String,
    "reason_code": pl.String,
}


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


def snapshot_doc(snap: Snapshot) -> dict:
    """Everything `decide` reads for this date as plain JSON data (NaN written as null; floats exact)."""
    n = len(snap.strategies)

    def values(v: np.ndarray) -> list[float | None]:
        return [None if x != x else x for x in np.broadcast_to(v, (n,)).astype(float).tolist()]

    return {
        "date": snap.date.isoformat(),
        "strategies": list(snap.strategies),
        "sides": list(snap.sides),
        "metrics": {k: values(v) for k, v in sorted(snap.metrics.items())},
        "data_lag": snap.data_lag,
        "correlation": None if snap.correlation is None else [values(row) for row in snap.correlation],
        "previous": [[s.stage, _iso(s.stage_since), s.pass_streak, s.fail_streak] for s in snap.previous],
        "overrides": {
            sid: [o.action, o.actor, o.reason, o.override_id, _iso(o.until)]
            for sid, o in sorted(snap.overrides.items())
        },
    }


def _iso(day: dt.date | None) -> str | None:
    return None if day is None else day.isoformat()


def _day(text: str | None) -> dt.date | None:
    return None if text is None else dt.date.fromisoformat(text)


def snapshot_from_doc(world: WorldSpec, doc: dict) -> Snapshot:
    """The snapshot a stored `world_snapshots` document describes (re-deciding it reproduces the plan)."""

    def arr(v: list[float | None]) -> np.ndarray:
        return np.array([np.nan if x is None else x for x in v], dtype=np.float64)

    corr = doc["correlation"]
    return Snapshot(
        world=world,
        date=dt.date.fromisoformat(doc["date"]),
        strategies=tuple(doc["strategies"]),
        sides=tuple(doc["sides"]),
        metrics={k: arr(v) for k, v in doc["metrics"].items()},
        data_lag=doc["data_lag"],
        correlation=None if corr is None else np.vstack([arr(r) for r in corr]).reshape(len(corr), len(corr)),
        previous=tuple(State(st, _day(since), ps, fs) for st, since, ps, fs in doc["previous"]),
        overrides={
            sid: Override(action, actor, reason, oid, _day(until))
            for sid, (action, actor, reason, oid, until) in doc["overrides"].items()
        },
    )


def overrides_by_day(
    overrides: pl.DataFrame | None, days_: list[dt.date]
) -> dict[dt.date, dict[str, Override]]:
    """The override in force per day and strategy: effective_from <= day <= until (open-ended if null);
    the latest created wins."""
    out: dict[dt.date, dict[str, Override]] = {d: {} for d in days_}
    if overrides is None or overrides.is_empty():
        return out
    for r in overrides.sort("created_at", "override_id").iter_rows(named=True):
        ov = Override(r["action"], r["actor"], r["reason"], r["override_id"], r["until"])
        for d in days_:
            if r["effective_from"] <= d and (r["until"] is None or d <= r["until"]):
                out[d][r["strategy"]] = ov
    return out


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
    overrides: pl.DataFrame | None = None,
) -> Evaluation:
    """`world_decisions`, `rule_results`, `world_snapshots` and `stage_history` rows, and the plans, for
    every session in [start, end].

    `kpis`: as-of KPI rows of the members for [start, end]; `returns`: their `strategy_returns` rows up to
    `end` (all history: the paper track may reach back far); `bar_dates`: dates with bars in the world's
    universe up to `end`; `previous`: states after the last decision before `start`; `overrides`: the
    world's rows of the `overrides` table.
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
    forced = overrides_by_day(overrides, days_)

    decisions, rules, plans, snapshots, history = [], [], [], [], []
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
        snap = Snapshot(world, day, tuple(members), tuple(sides), env, lags[day], corr, state, forced[day])
        plan = decide(snap)
        doc = json.dumps(snapshot_doc(snap), sort_keys=True)
        ihash = hashlib.sha256(doc.encode()).hexdigest()[:16]
        snapshots.append({"world": world.id, "date": day, "input_hash": ihash, "snapshot": doc})
        plans.append(plan)
        for i, m in enumerate(members):
            st = plan.states[i]
            if st.stage != state[i].stage:
                history.append(
                    {
                        "world": world.id,
                        "date": day,
                        "strategy": m,
                        "from_stage": state[i].stage,
                        "to_stage": st.stage,
                        "reason_code": plan.reason_codes[i],
                    }
                )
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
    return Evaluation(
        pl.DataFrame(decisions, schema_overrides=dec_schema),
        pl.DataFrame(rules, schema_overrides={"date": pl.Date}),
        plans,
        pl.DataFrame(snapshots, schema=_SNAPSHOT_SCHEMA),
        pl.DataFrame(history, schema=_HISTORY_SCHEMA),
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
