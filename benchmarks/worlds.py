#!/usr/bin/env python
"""World-evaluation benchmark: 3 worlds x 50 strategies x 5,040 sessions (issue target: under 5 s in all).

Times `quantlab.world.evaluate.evaluate_world(...)` once per world over the whole range, from the frames
the `world_evaluation/<world>` asset reads to the four frames it writes: the KPI table and returns read into
(date, strategy) matrices, data lags, overrides in force, paper tracks, gate outcomes, correlations, every
day's decision, and the `world_decisions`, `rule_results`, `world_snapshots` (JSON documents and their
sha256 input hashes) and `stage_history` frames. `Evaluation.plans` is a lazy sequence: a `Plan` is built
from the rows when accessed, not timed. Not timed either: the synthetic returns, the KPI table
(`quantlab.backtest.kpis.asof_kpis`), the bar dates and the overrides frames.

Workload (deterministic, `--seed`): `--strategies` synthetic strategies over the last `--sessions` NYSE
sessions ending 2025-12-31 — a 3-factor model with slowly drifting alphas (so strategies cross their gates
and get promoted and demoted), staggered inceptions (early days lack history; the correlation windows
hold NaNs), near-duplicate pairs (correlation conflicts), long / short / long_short sides; bar dates with
a few gaps longer than the worlds' `max_lag` (evaluate-only days); a few overrides per world (freeze,
force_active, force_inactive, with and without `until`). Three worlds govern all the strategies, shaped
like `worlds/*.yaml`: different gate trees (and / or / not), scores, by-side quotas, correlation limits and
windows, hysteresis, stage warm-ups and each `on_missing_metric` policy.

    python benchmarks/worlds.py                       # the issue's workload, best of 3
    python benchmarks/worlds.py --sessions 1000 --repeat 1
    python benchmarks/worlds.py --check 300           # also re-decide the last 300 days of every world
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from machine import loadavg

from quantlab import calendar
from quantlab.backtest.kpis import asof_kpis
from quantlab.world.decide import State
from quantlab.world.evaluate import evaluate_world
from quantlab.world.spec import WorldSpec

END = dt.date(2025, 12, 31)
RESULTS = Path(__file__).resolve().parent / "results"
TARGET_SECONDS = 5.0


# ------------------------------------------------------------------------------------------- workload
def strategy_ids(n: int) -> tuple[list[str], list[str]]:
    """Ids and sides: about 60 % long, 25 % long_short, 15 % short."""
    ids = [f"strat_{i:02d}" for i in range(n)]
    sides = ["long_short" if i % 4 == 1 else "short" if i % 7 == 3 else "long" for i in range(n)]
    return ids, sides


def synthetic_returns(ids: list[str], sides: list[str], days: list[dt.date], seed: int) -> pl.DataFrame:
    """`strategy_returns`-shaped rows (date, strategy, net, turnover) from inception on."""
    rng = np.random.default_rng(seed)
    n_t, n_s = len(days), len(ids)
    factors = rng.normal(0.0, 0.006, (n_t, 3))
    beta = rng.normal(0.0, 0.6, (n_s, 3))
    beta[:, 0] = [0.9 if s == "long" else -0.8 if s == "short" else 0.1 for s in sides]
    t = np.arange(n_t)[:, None]
    period = rng.uniform(400, 1600, n_s)
    phase = rng.uniform(0, 2 * np.pi, n_s)
    alpha = 0.0002 + 0.0009 * np.sin(2 * np.pi * t / period + phase)  # regimes: gates are crossed
    vol = rng.uniform(0.005, 0.012, n_s)
    net = alpha + factors @ beta.T + rng.normal(0.0, 1.0, (n_t, n_s)) * vol
    for j in range(1, n_s, 9):  # near-duplicates: correlation conflicts
        net[:, j] = 0.95 * net[:, j - 1] + 0.05 * net[:, j]
    inception = np.where(np.arange(n_s) < n_s // 2, 0, (np.arange(n_s) * 97) % 2000)
    valid = t >= inception[None, :]
    rows_t, rows_s = np.nonzero(valid)
    return pl.DataFrame(
        {
            "date": np.array(days, dtype="datetime64[D]")[rows_t],
            "strategy": np.array(ids)[rows_s],
            "net": net[rows_t, rows_s],
            "turnover": np.full(len(rows_t), 0.1),
            "long_ret": np.where(np.array(sides)[rows_s] == "short", 0.0, net[rows_t, rows_s]),
            "short_ret": np.where(np.array(sides)[rows_s] == "short", net[rows_t, rows_s], 0.0),
        }
    ).with_columns(pl.col("date").cast(pl.Date))


def bar_dates(days: list[dt.date]) -> list[dt.date]:
    """Every session but a few gaps (2, 4, 6 and 9 sessions): evaluate-only days in every world."""
    n = len(days)
    gaps = {
        k for f, g in ((0.12, 4), (0.36, 2), (0.58, 6), (0.81, 9)) for k in range(int(f * n), int(f * n) + g)
    }
    return [d for k, d in enumerate(days) if k not in gaps]


def overrides(world: str, ids: list[str], days: list[dt.date]) -> pl.DataFrame:
    """A few desk decisions: freeze, force_active, force_inactive, bounded and open-ended."""
    n = len(days)
    spec = [
        (ids[3], "freeze", n // 5, n // 5 + 60),
        (ids[7], "force_active", n // 3, n // 3 + 40),
        (ids[12 % len(ids)], "force_inactive", n // 2, None),
        (ids[7], "force_inactive", n // 3 + 20, n // 3 + 25),  # later: wins over the force_active
        (ids[20 % len(ids)], "freeze", (3 * n) // 4, (3 * n) // 4 + 5),
    ]
    return pl.DataFrame(
        {
            "override_id": [f"{world}-o{k}" for k in range(len(spec))],
            "world": world,
            "strategy": [s for s, *_ in spec],
            "action": [a for _, a, *_ in spec],
            "reason": [f"desk call {k}" for k in range(len(spec))],
            "actor": ["alice", "bob", "carol", "bob", "dave"],
            "created_at": [dt.datetime(2000, 1, 1) + dt.timedelta(days=k) for k in range(len(spec))],
            "effective_from": [days[min(a, n - 1)] for *_, a, _ in spec],
            "until": [None if b is None else days[min(b, n - 1)] for *_, b in spec],
        },
        schema_overrides={"until": pl.Date, "effective_from": pl.Date},
    )


def worlds(ids: list[str], sides: list[str]) -> list[WorldSpec]:
    """Three policies over all the strategies, shaped like worlds/core_equity.yaml and momentum_lab.yaml."""
    n_side = {s: sides.count(s) for s in ("long", "short", "long_short")}
    core = {
        "id": "bench_core",
        "owners": ["benchmarks"],
        "strategies": {"ids": ids},
        "windows": {"short": "20d", "mid": "60d", "long": "252d"},
        "data_currency": {"max_lag": "3d", "min_history": "252d"},
        "stages": {
            "backtest": {"gates": {"and": ["sharpe_long >= 0.3", "max_dd_long <= 0.35"]}},
            "paper": {"min_days": "20d", "gates": {"and": ["sharpe_paper >= 0.0", "max_dd_mid <= 0.25"]}},
            "live": {"gates": {"and": ["sharpe_long >= 0.0", "max_dd_long <= 0.45"]}},
        },
        "selection": {
            "score": "sharpe_mid + 0.1 * hit_rate_long - 0.2 * ulcer_mid",
            "topk": {"total": 6, "by_side": {"long": 3, "long_short": 2, "short": min(1, n_side["short"])}},
            "correlation": {"max_pairwise": 0.9, "window": "mid"},
            "hysteresis": {"promote_after": 3, "demote_after": 5, "min_dwell": "10d"},
        },
        "rules": {"data_currency": {"severity": "blocking", "owner": "ops"}},
        "on_missing_metric": "fail",
    }
    momentum = {
        "id": "bench_momentum",
        "owners": ["benchmarks"],
        "strategies": {"ids": ids},
        "windows": {"short": "20d", "mid": "60d", "long": "126d"},
        "data_currency": {"max_lag": "2d", "min_history": "126d"},
        "stages": {
            "backtest": {
                "gates": {"or": ["sharpe_long >= 0.5", {"and": ["sharpe_full >= 0.3", "calmar_full >= 0.2"]}]}
            },
            "paper": {"min_days": "10d", "gates": "sharpe_paper >= -0.5"},
        },
        "selection": {
            "score": "sharpe_long - 0.5 * max_dd_long",
            "topk": {"total": 3, "by_side": {"long_short": 1}},
            "correlation": {"max_pairwise": 0.8, "window": "short"},
            "hysteresis": {"promote_after": 2, "demote_after": 3, "min_dwell": "5d"},
        },
        "on_missing_metric": "warn",
    }
    diversified = {
        "id": "bench_diversified",
        "owners": ["benchmarks"],
        "strategies": {"ids": ids},
        "windows": {"short": "20d", "mid": "126d", "long": "252d"},
        "data_currency": {"max_lag": "5d", "min_history": "60d"},
        "stages": {
            "backtest": {
                "gates": [
                    "sortino_mid >= 0.2",
                    {"not": "max_dd_long > 0.4"},
                    {"or": ["psr >= 0.6", "hit_rate_mid >= 0.52"]},
                ]
            },
            "paper": {"min_days": "15d", "gates": {"and": ["sharpe_paper >= -0.2", "ulcer_short <= 0.1"]}},
            "live": {"gates": {"not": {"or": ["sharpe_long < -0.2", "max_dd_mid > 0.3"]}}},
        },
        "selection": {
            "score": "0.5 * sharpe_mid + 0.5 * sortino_long - calmar_short / 100",
            "topk": {"total": 10, "by_side": {"long": 6, "short": min(2, n_side["short"]), "long_short": 3}},
            "correlation": {"max_pairwise": 0.7, "window": "long"},
            "hysteresis": {"promote_after": 4, "demote_after": 2, "min_dwell": "20d"},
        },
        "on_missing_metric": "ignore",
    }
    return [WorldSpec.model_validate(w) for w in (core, momentum, diversified)]


def build(n_strategies: int, n_sessions: int, seed: int) -> dict[str, Any]:
    days = calendar.sessions(dt.date(1990, 1, 1), END)[-n_sessions:]
    ids, sides = strategy_ids(n_strategies)
    returns = synthetic_returns(ids, sides, days, seed)
    t0 = time.perf_counter()
    no_trades = pl.DataFrame(schema={"date": pl.Date, "strategy": pl.String, "n": pl.Int64})
    kpis = asof_kpis(returns, no_trades, days[0], days[-1])
    kpi_seconds = time.perf_counter() - t0
    specs = worlds(ids, sides)
    return {
        "days": days,
        "ids": ids,
        "sides": sides,
        "returns": returns.select("date", "strategy", "net"),
        "kpis": kpis,
        "kpi_seconds": kpi_seconds,
        "bars": bar_dates(days),
        "worlds": specs,
        "overrides": {w.id: overrides(w.id, ids, days) for w in specs},
    }


def run_world(w: dict[str, Any], world: WorldSpec) -> Any:
    days = w["days"]
    return evaluate_world(
        world,
        w["ids"],
        w["sides"],
        w["kpis"],
        w["returns"],
        w["bars"],
        tuple(State() for _ in w["ids"]),
        days[0],
        days[-1],
        overrides=w["overrides"][world.id],
    )


def check(w: dict[str, Any], world: WorldSpec, evaluation: Any, n_days: int) -> int:
    """Re-decide the last n_days stored snapshots (`snapshot_from_doc` + `decide`): plans and rule rows
    must be the stored ones, exactly."""
    from quantlab.world.decide import decide
    from quantlab.world.evaluate import snapshot_from_doc

    rules = evaluation.rules
    days = w["days"]
    checked = 0
    for day, doc in evaluation.snapshots.tail(n_days).select("date", "snapshot").iter_rows():
        plan = decide(snapshot_from_doc(world, json.loads(doc)))
        stored = evaluation.plans[days.index(day)]
        same_scores = np.array_equal(np.array(plan.scores), np.array(stored.scores), equal_nan=True)
        fields = ("date", "states", "selected", "reason_codes", "evaluate_only", "rules")
        assert same_scores and all(getattr(plan, f) == getattr(stored, f) for f in fields), day
        got = rules.filter(pl.col("date") == day).select("strategy", "rule", "status", "reason").rows()
        assert got == [(r.strategy, r.rule, r.status, r.reason) for r in plan.rules], day
        checked += 1
    return checked


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strategies", type=int, default=50)
    ap.add_argument("--sessions", type=int, default=5040)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--repeat", type=int, default=3, help="runs per world; the best is reported")
    ap.add_argument("--check", type=int, default=0, help="re-decide the last N snapshots of every world")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    out = args.out or RESULTS / f"worlds_3x{args.strategies}x{args.sessions}.json"

    print(f"building {args.strategies} strategies x {args.sessions} sessions ...", flush=True)
    t0 = time.perf_counter()
    w = build(args.strategies, args.sessions, args.seed)
    setup = time.perf_counter() - t0
    print(f"  setup {setup:.1f} s (KPI table {w['kpis'].height:,} rows in {w['kpi_seconds']:.1f} s)")

    per_world: dict[str, Any] = {}
    load_before = loadavg()
    for world in w["worlds"]:
        runs, cpu = [], []
        for _ in range(args.repeat):
            gc.collect()
            t0, c0 = time.perf_counter(), time.process_time()
            ev = run_world(w, world)
            runs.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        dec = ev.decisions
        per_world[world.id] = {
            "seconds_best": round(min(runs), 4),
            "seconds_all": [round(r, 4) for r in runs],
            "cpu_seconds_all": [round(r, 4) for r in cpu],
            "decision_rows": dec.height,
            "rule_rows": ev.rules.height,
            "snapshot_rows": ev.snapshots.height,
            "snapshot_mb": round(ev.snapshots.get_column("snapshot").str.len_bytes().sum() / 2**20, 2),
            "stage_history_rows": ev.stage_history.height,
            "evaluate_only_days": int(dec.filter(pl.col("strategy") == w["ids"][0])["evaluate_only"].sum()),
            "selected_rows": int(dec.get_column("selected").sum()),
            "live_rows": int((dec.get_column("stage") == "live").sum()),
            "reason_codes": dict(sorted(dec.group_by("reason_code").len().rows())),
            "correlated_rows": ev.rules.filter(pl.col("reason_code") == "correlated").height,
        }
        if args.check:
            per_world[world.id]["checked_days"] = check(w, world, ev, args.check)
        print(
            f"  {world.id:<18} {min(runs):7.3f} s  ({dec.height:,} decisions, {ev.rules.height:,} rules, "
            f"{ev.stage_history.height:,} transitions)",
            flush=True,
        )
    total = sum(v["seconds_best"] for v in per_world.values())
    verdict = "met" if total < TARGET_SECONDS else "MISSED"
    print(
        f"{'total':<20} {total:7.3f} s   target {TARGET_SECONDS:g} s: {verdict}  (load average {loadavg()})"
    )
    report = {
        "workload": {
            "strategies": args.strategies,
            "sessions": args.sessions,
            "first_session": w["days"][0].isoformat(),
            "last_session": w["days"][-1].isoformat(),
            "worlds": [world.id for world in w["worlds"]],
            "seed": args.seed,
            "kpi_rows": w["kpis"].height,
            "return_rows": w["returns"].height,
            "setup_seconds_untimed": round(setup, 2),
        },
        "measures": (
            "quantlab.world.evaluate.evaluate_world(world, members, sides, kpis, returns, bar_dates, "
            "previous=all backtest, start, end, overrides) per world, whole range: metric panel, paper tracks, "
            "correlations, decisions, rule results, snapshots (document + input hash), stage history, plans. "
            "Untimed: synthetic returns, KPI table, bar dates, overrides."
        ),
        "target_seconds": TARGET_SECONDS,
        "total_seconds": round(total, 4),
        "worlds": per_world,
        "machine": {
            "loadavg_before": load_before,
            "loadavg_after": loadavg(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "numpy": np.__version__,
            "polars": pl.__version__,
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
