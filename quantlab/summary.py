"""The run summary: per world, the active strategies with stage and weight, key KPIs, the world's track and
the asset-check results — read back from the warehouse (no Dagster imports)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import polars as pl

from quantlab.resources.warehouse import Warehouse


def world_summary(warehouse: Warehouse, world: str, day: dt.date) -> dict[str, Any]:
    """State of one world on `day` (its last evaluated date if `day` has none)."""
    last = warehouse.read(
        "SELECT max(date) FROM world_decisions WHERE world = ? AND date <= ?", [world, day]
    ).item()
    if last is None:
        return {"world": world, "date": None, "strategies": [], "track": None}
    dec = warehouse.read_table("world_decisions", last, last, where={"world": world})
    alloc = warehouse.read_table("world_allocations", last, last, where={"world": world})
    kp = warehouse.read_table("kpis", last, last, where={"window": "full"})
    rows = (
        dec.select("strategy", "stage", "stage_since", "reason_code", "score")
        .join(alloc.select("strategy", "weight"), on="strategy", how="left")
        .join(
            kp.select(
                "strategy", "sharpe", "annual_return", "annual_volatility", "max_dd", "hit_rate", "turnover"
            ),
            on="strategy",
            how="left",
        )
        .with_columns(pl.col("weight").fill_null(0.0))
        .sort(
            pl.col("stage").replace_strict({"live": 0, "paper": 1, "backtest": 2, "inactive": 3}), "strategy"
        )
    )
    track = warehouse.read(
        "SELECT count(*) AS days, product(1 + ret) - 1 AS total_return, max(drawdown) AS max_drawdown, "
        "arg_max(equity, date) AS equity FROM world_returns WHERE world = ? AND date <= ?",
        [world, last],
    ).row(0, named=True)
    return {
        "world": world,
        "date": last.isoformat(),
        "strategies": rows.to_dicts(),
        "track": track,
        **world_history(warehouse, world, last),
    }


def world_history(warehouse: Warehouse, world: str, day: dt.date, changes: int = 5) -> dict[str, Any]:
    """A world's equity at each month end up to `day`, its last allocation changes, circuit-breaker state
    and risk events by kind (from `world_returns`, `world_allocations`, `world_risk_events`)."""
    track = warehouse.read_table("world_returns", end=day, where={"world": world}).sort("date")
    if not track.height:
        return {"equity_curve": [], "allocation_changes": [], "circuit": None, "risk_events": {}}
    monthly = (
        track.group_by(month=pl.col("date").dt.truncate("1mo"))
        .agg(pl.col("date").last(), pl.col("equity").last())
        .sort("date")
    )
    alloc = warehouse.read_table("world_allocations", end=day, where={"world": world})
    books = (
        alloc.sort("strategy")
        .group_by("date")
        .agg(
            pl.format("{} {}%", "strategy", (pl.col("weight") * 100).round(1))
            .str.join(", ")
            .alias("allocation")
        )
        .sort("date")
    )
    books = (
        pl.DataFrame({"date": track.get_column("date")})
        .join(books, on="date", how="left")
        .with_columns(pl.col("allocation").fill_null("cash"))
    )
    moved = books.filter(pl.col("allocation") != pl.col("allocation").shift(1).fill_null(""))
    events = warehouse.read_table("world_risk_events", end=day, where={"world": world})
    last = track.row(-1, named=True)
    return {
        "equity_curve": [(d.isoformat(), e) for d, e in monthly.select("date", "equity").iter_rows()],
        "allocation_changes": [(d.isoformat(), a) for d, a in moved.tail(changes).iter_rows()],
        "circuit": {"on": last["circuit"], "since": last["circuit_since"], "drawdown": last["drawdown"]},
        "risk_events": dict(sorted(events.group_by("event").len().iter_rows())),
    }


def sparkline(values: list[float]) -> str:
    """One character per value, scaled between the series' min and max."""
    if not values:
        return ""
    blocks = "▁▂▃▄▅▆▇█"
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    return "".join(blocks[min(7, int((v - lo) / span * 8))] for v in values)


def data_summary(warehouse: Warehouse, day: dt.date, top: int = 5) -> dict[str, Any]:
    """The curated data up to `day`: registry, bars, quality issues by rule and the top anomalies."""
    if not warehouse.has_table("ohlcv"):
        return {"symbols": 0, "bars": 0, "issues": [], "anomalies": []}
    counts = warehouse.read(
        "SELECT count(DISTINCT symbol) AS symbols, count(*) AS bars, min(date) AS first, max(date) AS last "
        "FROM ohlcv WHERE date <= ?",
        [day],
    ).row(0, named=True)
    issues = (
        warehouse.read(
            "SELECT rule, severity, count(*) AS n FROM quality_issues WHERE date <= ? GROUP BY ALL ORDER BY rule",
            [day],
        ).to_dicts()
        if warehouse.has_table("quality_issues")
        else []
    )
    anomalies = (
        warehouse.read(
            "SELECT date, symbol, score, ret FROM anomaly_scores WHERE date <= ? AND score IS NOT NULL "
            "ORDER BY score DESC, date, symbol LIMIT ?",
            [day, top],
        ).to_dicts()
        if warehouse.has_table("anomaly_scores")
        else []
    )
    return {**counts, "issues": issues, "anomalies": anomalies}


def tuning_summary(warehouse: Warehouse, day: dt.date) -> list[dict[str, Any]]:
    """Per tuned strategy: its trials (all studies), their Sharpe spread, and its full-window Sharpe, PSR and
    deflated Sharpe on `day` (the KPIs the world gates read)."""
    from quantlab.tuning.report import multiple_testing
    from quantlab.tuning.study import trial_stats

    if not warehouse.has_table("tuning_trials"):
        return []
    stats = trial_stats(warehouse.read_table("tuning_trials"))
    kp = (
        warehouse.read_table("kpis", day, day, where={"window": "full"})
        if warehouse.has_table("kpis")
        else None
    )
    out = []
    for r in stats.iter_rows(named=True):
        row = kp.filter(pl.col("strategy") == r["strategy"]) if kp is not None else pl.DataFrame()
        k = row.row(0, named=True) if row.height else {}
        mt = multiple_testing(r["n_trials"], r["sr_variance"])
        out.append(
            {
                **r,
                "expected_max_sharpe": mt["expected_max_sharpe"],
                "date": day.isoformat(),
                **{m: k.get(m) for m in ("sharpe", "psr", "dsr")},
            }
        )
    return out


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.1%}" if pct else f"{v:.2f}"
    return str(v)


def render_text(summary: dict[str, Any]) -> str:
    """A readable plain-text rendering of `run_summary` output."""
    out = [
        f"quantlab run {summary['run_id']} — {summary['status']}",
        f"partitions {summary['start']} .. {summary['end']}",
        f"dataset: {summary['dataset']}",
        "",
    ]
    data = summary.get("data")
    if data and data["bars"]:
        out.append(f"Data: {data['symbols']} symbols, {data['bars']} bars, {data['first']} .. {data['last']}")
        issues = ", ".join(f"{i['rule']} {i['n']} ({i['severity']})" for i in data["issues"]) or "none"
        out.append(f"  quality issues over the history: {issues}")
        if data["anomalies"]:
            out.append("  top anomalies (IsolationForest score, daily return):")
            out += [
                f"    {a['date']}  {a['symbol']:<6} {a['score']:.3f}  {_fmt(math.expm1(a['ret']), True)}"
                for a in data["anomalies"]
            ]
        out.append("")
    for w in summary["worlds"]:
        out.append(f"World {w['world']} as of {w['date']}")
        if w["track"] and w["track"]["days"]:
            t = w["track"]
            out.append(
                f"  track: {t['days']} days, total return {_fmt(t['total_return'], True)}, "
                f"max drawdown {_fmt(t['max_drawdown'], True)}, equity {_fmt(t['equity'])}"
            )
        curve = (w.get("equity_curve") or [])[-60:]  # the last five years
        if curve:
            out.append(
                f"  equity by month {curve[0][0][:7]} .. {curve[-1][0][:7]}: {sparkline([e for _, e in curve])}"
                f"  ({curve[0][1]:.2f} -> {curve[-1][1]:.2f})"
            )
            c = w["circuit"]
            state = f"ON since {c['since']}" if c["on"] else "off"
            events = ", ".join(f"{k} {v}" for k, v in w["risk_events"].items()) or "none"
            out.append(
                f"  circuit breaker {state} (drawdown {_fmt(c['drawdown'], True)}); risk events: {events}"
            )
            out.append("  allocation changes (latest):")
            out += [f"    {d}  {a}" for d, a in w["allocation_changes"]]
            out.append(f"  chart: {summary['artifacts']}/reports/world_{w['world']}.png")
        out.append(
            f"  {'strategy':<22}{'stage':<10}{'weight':>8}{'sharpe':>8}{'CAGR':>8}{'maxDD':>8}{'hit':>7}  reason"
        )
        for s in w["strategies"]:
            out.append(
                f"  {s['strategy']:<22}{s['stage']:<10}{_fmt(s['weight'], True):>8}{_fmt(s['sharpe']):>8}"
                f"{_fmt(s['annual_return'], True):>8}{_fmt(s['max_dd'], True):>8}{_fmt(s['hit_rate'], True):>7}"
                f"  {s['reason_code']}"
            )
        checks = [c for c in summary["checks"] if c["asset"].endswith(f"/{w['world']}")]
        if checks:
            out.append(
                "  checks: "
                + ", ".join(f"{c['check']}={'PASS' if c['passed'] else c['severity']}" for c in checks)
            )
        out.append("")
    for t in summary.get("tuning", []):
        out.append(
            f"Tuning {t['strategy']}: {t['n_trials']} trials over {t['studies']} study(ies), best out-of-sample "
            f"Sharpe {_fmt(t['best_sharpe'])}, E[max Sharpe] of that many zero-skill trials {_fmt(t['expected_max_sharpe'])}"
        )
        out.append(
            f"  as of {t['date']}: Sharpe {_fmt(t['sharpe'])}, PSR {_fmt(t['psr'])}, deflated Sharpe {_fmt(t['dsr'])}"
        )
        out.append("")
    other = [c for c in summary["checks"] if "/" not in c["asset"]]
    if other:
        out.append(
            "Data checks: "
            + ", ".join(f"{c['check']}={'PASS' if c['passed'] else c['severity']}" for c in other)
        )
    out += [
        "",
        f"warehouse: {summary['warehouse']}",
        f"artifacts: {summary['artifacts']}",
        "open the UI on this instance and warehouse: make ui  (then http://127.0.0.1:3000)",
    ]
    return "\n".join(out)
