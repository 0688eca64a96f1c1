"""`validation_report.md` of a world and a model card per strategy (pure: specs and frames in, markdown out).

The validation report says what was validated and how: scope (members, period, policy version), the
validation profile (windows, data currency, stage gates, score, selection, hysteresis, rule severities and
owners), the results (per rule family: pass/fail counts, failing dates; the last day's decisions; stage
transitions; overrides in force) and the limitations of the evidence. A model card says what a strategy
is for, what data it uses, what it assumes and where it stops being valid.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from quantlab.markdown import md_table
from quantlab.strategy_lab.spec import StrategySpec
from quantlab.world.spec import FAMILIES, WorldSpec

LIMITATIONS = (
    "Metrics come from backtest returns net of the modeled costs (fees and slippage in bps) with next-bar "
    "execution; no live fills, borrow costs or market impact beyond the participation cap are modeled.",
    "The paper track is the same backtest return stream after a promotion: out of sample in time, not in "
    "execution.",
    "KPI windows are trailing session counts; a window shorter than its nominal length (young strategy) "
    "is still reported: sample sufficiency (`min_history`) is the guard.",
    "Correlation is Pearson over the correlation window's common dates; fewer than three common dates "
    "leave it unknown (no conflict).",
    "Decisions are only as current as the data: a stale world (data lag above `max_lag`) freezes stages.",
)


def validation_report(
    world: WorldSpec,
    strategies: dict[str, StrategySpec],
    decisions: pl.DataFrame,
    rules: pl.DataFrame,
    history: pl.DataFrame,
    start: dt.date,
    end: dt.date,
) -> str:
    """Markdown report of one world's evaluation over [start, end] (the run's decisions and rule rows)."""
    members = world.members(strategies)
    scope = pl.DataFrame(
        {
            "strategy": members,
            "side": [strategies[m].side for m in members],
            "tags": [", ".join(strategies[m].tags) for m in members],
            "description": [strategies[m].description for m in members],
        }
    )
    profile = [
        f"- windows: {', '.join(f'{k} = {v}' for k, v in world.windows.items())}",
        f"- data currency: max lag {world.data_currency.max_lag}, min history {world.data_currency.min_history}",
        *[
            f"- stage `{stage}` gates: `{world.gates[stage].canonical()}` (min days {world.min_days(stage)})"
            for stage in ("backtest", "paper", "live")
        ],
        f"- score: `{world.selection.score}`; top-K {world.selection.topk.total}"
        + (f", by side {dict(world.selection.topk.by_side)}" if world.selection.topk.by_side else ""),
        f"- correlation: {world.selection.correlation.max_pairwise} over `{world.selection.correlation.window}`"
        if world.selection.correlation
        else "- correlation: no limit",
        f"- hysteresis: promote after {world.selection.hysteresis.promote_after}, demote after "
        f"{world.selection.hysteresis.demote_after}, min dwell {world.selection.hysteresis.min_dwell}",
        f"- missing metrics: `{world.on_missing_metric}`",
    ]
    policies = pl.DataFrame(
        {
            "family": list(FAMILIES),
            "severity": [world.rule(f).severity for f in FAMILIES],
            "owner": [world.rule(f).owner for f in FAMILIES],
        }
    )
    results = (
        rules.group_by("family")
        .agg(
            (pl.col("status") == "pass").sum().alias("pass"),
            (pl.col("status") == "fail").sum().alias("fail"),
            (pl.col("status") == "warn").sum().alias("warn"),
            (pl.col("status") == "skip").sum().alias("skip"),
            pl.col("date").filter(pl.col("status") == "fail").n_unique().alias("failing_dates"),
        )
        .join(policies, on="family", how="right")
        .select("family", "severity", "owner", "pass", "fail", "warn", "skip", "failing_dates")
        if rules.height
        else policies
    )
    last = (
        decisions.filter(pl.col("date") == decisions.get_column("date").max())
        if decisions.height
        else decisions
    )
    overrides = rules.filter(pl.col("rule") == "override") if rules.height else rules
    lines = [
        f"# Validation report — world `{world.id}`",
        "",
        f"{world.description}".strip(),
        "",
        "## Scope",
        "",
        f"- period: {start} .. {end} ({decisions.get_column('date').n_unique() if decisions.height else 0} sessions)",
        f"- policy version {world.policy_version}, ruleset hash {world.ruleset_hash}; owners: {', '.join(world.owners)}",
        "",
        md_table(scope, max_rows=len(members)),
        "",
        "## Validation profile",
        "",
        *profile,
        "",
        "## Results by rule family",
        "",
        md_table(results),
        "",
        f"## Decisions on {last.get_column('date').max() if last.height else '-'}",
        "",
        md_table(
            last.select("strategy", "stage", "stage_since", "selected", "score", "reason_code").sort(
                "strategy"
            )
        )
        if last.height
        else "_no decision_",
        "",
        "## Stage transitions in the period",
        "",
        md_table(history.select("date", "strategy", "from_stage", "to_stage", "reason_code"), max_rows=50),
        "",
        "## Overrides in force",
        "",
        md_table(overrides.select("date", "strategy", "reason_code", "reason"), max_rows=50)
        if overrides.height
        else "_none_",
        "",
        "## Limitations",
        "",
        *[f"- {text}" for text in LIMITATIONS],
    ]
    return "\n".join(lines) + "\n"


def model_card(spec: StrategySpec, data: str) -> str:
    """A strategy's model card: purpose, data (`data`: what the warehouse holds), signal, assumptions, limits."""
    universe = "every symbol of the dataset" if spec.universe.all else ", ".join(spec.universe.symbols or [])
    port, ex, costs = spec.portfolio, spec.execution, spec.costs
    risk = {k: v for k, v in spec.risk.model_dump().items() if v is not None}
    lines = [
        f"# Model card — `{spec.id}` (version {spec.version})",
        "",
        "## Purpose",
        "",
        spec.description or "_no description_",
        f"\nTags: {', '.join(spec.tags) or '-'}; side: {spec.side}.",
        "",
        "## Data",
        "",
        f"- data: {data}; universe: {universe}",
        f"- signal: {spec.signal.model_dump_json()}",
        "- features at day t use only bars up to t (quantlab.features); targets decided at the close of t",
        "",
        "## Assumptions",
        "",
        f"- portfolio: long {port.long.describe() if port.long.enabled else 'off'}, short {port.short.describe() if port.short.enabled else 'off'}, weighting `{port.weighting}`, "
        f"max weight {port.max_weight}, gross {port.gross}; rebalance every {spec.rebalance.every} session(s)",
        f"- execution at the {ex.price} of the bar {ex.lag} session(s) after the decision"
        + (
            f"; participation cap {ex.participation_cap} of ADV({ex.adv_window}) at capital {ex.capital:,.0f}"
            if ex.participation_cap
            else ""
        ),
        f"- costs: fee {costs.fee_bps} bps + slippage {costs.slippage_bps} bps of traded notional",
        "",
        "## Limits",
        "",
        f"- supervisor overrides for this strategy: {risk or 'none (global rules apply)'}",
        "- evidence is a backtest until the strategy has spent time in `paper`; see the world's validation report",
    ]
    return "\n".join(lines) + "\n"
