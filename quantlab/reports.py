"""`quantlab report`: the markdown reports of one as-of date, written from the warehouse (and the Dagster
instance for the check evaluations), whatever kind of run produced the date.

Files: `checks.md` (the asset-check report), `approvals.md` (the supervisor's approvals and risk flags),
`worlds.md` (each world's decisions, allocation and failing rules), `backtest_summary.md` with the equity
charts (each strategy's track up to the date, by the backtest's own report writer) and `trades.csv` (the
trades of the date).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from quantlab.assets.backtest import write_backtest_reports
from quantlab.check_report import check_report
from quantlab.markdown import md_table
from quantlab.project import Project
from quantlab.resources import Warehouse


def _checks_md(rows: list[dict[str, Any]], day: dt.date) -> str:
    def verdict(passed: bool | None) -> str:
        return "-" if passed is None else ("PASS" if passed else "FAIL")

    table = pl.DataFrame(
        [
            {
                "asset": r["asset"],
                "check": r["check"],
                "severity": r["severity"],
                "dagster": verdict(None if r["dagster"] is None else r["dagster"]["passed"]),
                "warehouse": verdict(r["warehouse"]["passed"]),
                "failing": r["warehouse"]["failing"],
                "reason": r["warehouse"]["reason"],
            }
            for r in rows
        ]
    )
    return (
        f"# Asset checks on {day}\n\n`dagster`: the evaluation Dagster stored for the partition (`-`: none, "
        "the date was written by a ranged or `history` run); `warehouse`: the verdict re-derived from the "
        f"per-date tables.\n\n{md_table(table, max_rows=500)}\n"
    )


def _approvals_md(approvals: pl.DataFrame, day: dt.date) -> str:
    if approvals.is_empty():
        return f"# Approvals on {day}\n\nNo approvals recorded for the date.\n"
    by_strategy = (
        approvals.group_by("strategy")
        .agg(
            pl.len().alias("positions"),
            pl.col("approved").sum().alias("approved"),
            pl.col("target_weight").abs().sum().alias("target_gross"),
            pl.col("approved_weight").abs().sum().alias("approved_gross"),
        )
        .sort("strategy")
    )
    flagged = approvals.filter(pl.col("risk_flags") != "").select(
        "strategy", "symbol", "target_weight", "approved_weight", "risk_flags", "reason"
    )
    parts = [f"# Approvals on {day}\n", "## By strategy\n", md_table(by_strategy), "\n## Risk flags\n"]
    parts.append(md_table(flagged, max_rows=200) if not flagged.is_empty() else "None.")
    return "\n".join(parts) + "\n"


def _worlds_md(warehouse: Warehouse, project: Project, day: dt.date) -> str:
    parts = [f"# Worlds on {day}\n"]
    for world in sorted(project.worlds):
        where = {"world": world}
        decisions = warehouse.read_table("world_decisions", day, day, where=where)
        parts.append(f"## {world}\n")
        if decisions.is_empty():
            parts.append("No decision recorded for the date.\n")
            continue
        allocation = warehouse.read_table("world_allocations", day, day, where=where)
        rules = warehouse.read_table("rule_results", day, day, where=where)
        failing = rules.filter(pl.col("status") != "pass").select("strategy", "rule", "status", "reason")
        parts += [
            f"Policy {decisions.get_column('policy_version')[0]}, ruleset {decisions.get_column('ruleset_hash')[0]}.\n",
            md_table(
                decisions.select("strategy", "stage", "selected", "score", "reason_code").sort("strategy")
            ),
            "\n### Allocation\n",
            md_table(allocation.select("strategy", "side", "weight").sort("strategy"))
            if not allocation.is_empty()
            else "No capital allocated.",
            "\n### Rules not passed\n",
            md_table(failing.sort("strategy", "rule"), max_rows=200) if not failing.is_empty() else "None.",
            "",
        ]
    return "\n".join(parts) + "\n"


def write_date_reports(
    instance: dg.DagsterInstance, warehouse: Warehouse, project: Project, day: dt.date, out: Path
) -> list[Path]:
    """Write the reports of `day` into `out`; returns the files written (the charts included)."""
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "checks.md": _checks_md(check_report(instance, warehouse, project, day, None), day),
        "approvals.md": _approvals_md(warehouse.read_table("approvals", day, day), day),
        "worlds.md": _worlds_md(warehouse, project, day),
    }
    for name, text in files.items():
        (out / name).write_text(text)
    written = [out / name for name in files]
    strategies = warehouse.read_table("strategy_returns", day, day, columns=["strategy"])
    if not strategies.is_empty():
        links = write_backtest_reports(
            warehouse,
            sorted(strategies.get_column("strategy").unique()),
            day,
            warehouse.read_table("trades", day, day),
            out,
        )
        written += [Path(str(link.value)) for link in links.values()]
    return written
