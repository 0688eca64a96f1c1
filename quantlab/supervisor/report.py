"""`approval_summary.md`: what the supervisor approved over a run's dates, and why (pure: frames in, markdown out)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import polars as pl

from quantlab.markdown import md_table
from quantlab.supervisor.rules import RULES
from quantlab.supervisor.spec import RiskLimits


def _rules_table(limits: Mapping[str, RiskLimits]) -> pl.DataFrame:
    rows = []
    for sid, lim in sorted(limits.items()):
        row = {"strategy": sid}
        for name in RULES:
            rule = getattr(lim, name)
            row[name] = "-" if rule is None else f"{rule.limit:g} {rule.action}"
        rows.append(row)
    return pl.DataFrame(rows) if rows else pl.DataFrame()


def approval_summary(
    approvals: pl.DataFrame,
    audit: pl.DataFrame,
    limits: Mapping[str, RiskLimits],
    start: dt.date,
    end: dt.date,
) -> str:
    """Markdown summary: the rules in force, per-strategy outcome counts, triggers by rule, the last day."""
    by_day = approvals.group_by("date", "strategy").agg(
        pl.col("approved").all().alias("approved"), (pl.col("risk_flags") != "").any().alias("flagged")
    )
    outcome = (
        by_day.group_by("strategy")
        .agg(
            pl.len().alias("target_dates"),
            pl.col("approved").sum().alias("approved_dates"),
            (~pl.col("approved")).sum().alias("rejected_dates"),
            (pl.col("approved") & pl.col("flagged")).sum().alias("adjusted_or_flagged_dates"),
        )
        .sort("strategy")
        if by_day.height
        else pl.DataFrame()
    )
    triggers = (
        audit.group_by("rule", "action")
        .agg(pl.len().alias("triggers"), pl.col("strategy").n_unique().alias("strategies"))
        .sort("rule", "action")
        if audit.height
        else pl.DataFrame()
    )
    last = (
        approvals.filter(pl.col("date") == approvals.get_column("date").max())
        if approvals.height
        else approvals
    )
    last_day = last.get_column("date")[0] if last.height else None
    return "\n".join(
        [
            "# Approval summary",
            "",
            f"period: {start} .. {end}; {approvals.height} approval rows, {audit.height} rule triggers",
            "",
            "## Rules in force (limit and action; `-` = not applied)",
            "",
            md_table(_rules_table(limits), max_rows=200),
            "",
            "## Outcome per strategy",
            "",
            md_table(outcome, max_rows=200),
            "",
            "## Triggers by rule",
            "",
            md_table(triggers, max_rows=200),
            "",
            f"## Last day ({last_day})",
            "",
            md_table(
                last.select("strategy", "symbol", "target_weight", "approved_weight", "approved", "reason"),
                60,
            ),
            "",
            "## Latest triggers",
            "",
            md_table(audit.sort("date", descending=True).head(30).select("date", "strategy", "reason")),
            "",
        ]
    )
