"""The asset-check report of one as-of date: every check of the definitions, from the Dagster instance and
from the warehouse.

Dagster records a check evaluation per partition only for runs of one partition (ranged runs store it with
no partition; the `history` job has no asset checks at all), so each check is also re-derived from the
warehouse's per-date record with the same functions the assets use: `quality_issues` for the data rules,
`anomaly_scores` for the sentinel, `rule_results` for the world families, `world_allocations` and
`world_decisions` for the allocation checks. A row says both, so a reviewer sees what ran and what holds.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import dagster as dg
import polars as pl
from dagster._core.event_api import PartitionKeyFilter

from quantlab.assets.curator import ANOMALY_CHECK, CHECKS
from quantlab.assets.world import ALLOCATION_CHECKS, allocation_checks
from quantlab.project import Project
from quantlab.resources import Warehouse
from quantlab.world.allocate import WorldRun
from quantlab.world.checks import family_failures, family_passed
from quantlab.world.spec import FAMILIES


def _dagster_view(instance: dg.DagsterInstance, key: dg.AssetCheckKey, day: dt.date) -> dict[str, Any] | None:
    records = instance.event_log_storage.get_asset_check_execution_history(
        key, limit=1, partition_filter=PartitionKeyFilter(key=day.isoformat())
    )
    if not records:
        return None
    rec = records[0]
    evaluation = rec.event.asset_check_evaluation if rec.event is not None else None
    return {
        "status": rec.status.value,
        "passed": None if evaluation is None else evaluation.passed,
        "severity": None if evaluation is None else evaluation.severity.value,
        "run_id": rec.run_id,
    }


def _row(
    asset: str, check: str, severity: str, passed: bool | None, failing: int, reason: str
) -> dict[str, Any]:
    return {
        "asset": asset,
        "check": check,
        "severity": severity,
        "warehouse": {"passed": passed, "failing": failing, "reason": reason},
    }


def _data_rows(warehouse: Warehouse, project: Project, day: dt.date) -> list[dict[str, Any]]:
    bars = warehouse.read_table("ohlcv", day, day, columns=["symbol"]).height
    issues = warehouse.read_table("quality_issues", day, day)
    rows = []
    for rule, severity in CHECKS.items():
        if rule == "schema":
            passed = True if bars else None
            rows.append(
                _row("ohlcv", rule, severity, passed, 0, f"{bars} bars stored" if bars else "no bars stored")
            )
            continue
        failing = issues.filter(pl.col("rule") == rule)
        first = failing.head(3).select(pl.format("{} {}", "symbol", "detail")).to_series().to_list()
        rows.append(
            _row(
                "ohlcv",
                rule,
                severity,
                failing.is_empty() if bars else None,
                failing.height,
                "; ".join(first),
            )
        )
    threshold = project.curator.anomaly.threshold
    scores = warehouse.read_table("anomaly_scores", day, day)
    flagged = scores.filter(pl.col("score") >= threshold).sort("score", descending=True)
    text = "; ".join(f"{s} {v:.3f}" for s, v in flagged.select("symbol", "score").head(3).iter_rows())
    rows.append(
        _row(
            "anomaly_scores",
            ANOMALY_CHECK,
            "warn",
            flagged.is_empty() if scores.height else None,
            flagged.height,
            text,
        )
    )
    return rows


def _world_rows(warehouse: Warehouse, project: Project, world_id: str, day: dt.date) -> list[dict[str, Any]]:
    spec = project.worlds[world_id]
    rules = warehouse.read_table("rule_results", day, day, where={"world": world_id})
    decided = warehouse.read_table("world_decisions", day, day, where={"world": world_id})
    rows = []
    for family in FAMILIES:
        failing = family_failures(rules, family)
        reason = "; ".join(f"{s}: {r}" for s, r in failing.select("strategy", "reason").head(3).iter_rows())
        passed = family_passed(spec, family, rules) if decided.height else None
        rows.append(
            _row(
                f"world_evaluation/{world_id}",
                f"{world_id}_{family}",
                spec.rule(family).severity,
                passed,
                failing.height,
                reason,
            )
        )
    run = WorldRun(
        *[
            warehouse.read_table(t, day, day, where={"world": world_id})
            for t in ("world_allocations", "world_targets", "world_returns", "world_risk_events")
        ]
    )
    results = {c.check_name: c for c in allocation_checks(spec, run, decided)} if decided.height else {}
    for name in (*ALLOCATION_CHECKS, "circuit_breaker"):
        check = f"{world_id}_{name}"
        res = results.get(check)
        failing = (
            0 if res is None else int(res.metadata.get("violations", res.metadata.get("dates_on")).value)
        )
        reason = "; ".join(
            run.events.filter(pl.col("event") == "circuit_trip").get_column("reason").to_list()
        )
        rows.append(
            _row(
                f"world_allocation/{world_id}",
                check,
                "warn" if name == "circuit_breaker" else "blocking",
                None if res is None else res.passed,
                failing,
                reason if name == "circuit_breaker" else "",
            )
        )
    return rows


def check_report(
    instance: dg.DagsterInstance,
    warehouse: Warehouse,
    project: Project,
    day: dt.date,
    world: str | None = None,
) -> list[dict[str, Any]]:
    """One row per check of `day` (only `world`'s checks if given): severity, the Dagster evaluation stored
    for that partition (None if no single-partition run evaluated it), and the warehouse's verdict."""
    rows = [] if world else _data_rows(warehouse, project, day)
    for world_id in [world] if world else sorted(project.worlds):
        rows += _world_rows(warehouse, project, world_id, day)
    for row in rows:
        key = dg.AssetCheckKey(dg.AssetKey.from_user_string(row["asset"]), row["check"])
        row["partition"] = day.isoformat()
        row["dagster"] = _dagster_view(instance, key, day)
    return rows


def blocking_failed(rows: list[dict[str, Any]]) -> bool:
    """A blocking check failed on the date (per the warehouse, or per Dagster where it ran)."""
    for row in rows:
        if row["severity"] != "blocking":
            continue
        dagster = row["dagster"]
        if row["warehouse"]["passed"] is False or (dagster is not None and dagster["passed"] is False):
            return True
    return False
