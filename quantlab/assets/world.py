"""Per-world assets generated from `worlds/*.yaml`: evaluation (policy as asset checks) and allocation.

For each world W: `world_evaluation/W` decides the strategies' stages every date and carries one
partition-aware asset check per rule family (`W_data_currency`, `W_sample`, `W_gates`, `W_correlation`,
`W_selection`, `W_lifecycle`) with the severity the YAML gives; a `blocking` family that fails stops
`world_allocation/W` in the same run. `world_allocation/W` allocates capital among the live strategies and
carries checks on budgets, weight limits and live-only capital. Adding a world file adds its assets and
checks with no code change.

A family's check fails as `quantlab.world.checks` says: a rule result with status `fail` for a strategy
that is active (paper or live) at the time, or for the world itself (strategy `*`). A backtest-stage
strategy failing a gate is routine and only shows in the table; an active one is what a risk desk must see.
"""

import base64
import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl

from quantlab.assets.common import StageRun, chain_asset, md_table, write
from quantlab.calendar import sessions, shift_sessions
from quantlab.partitions import TRADING_DAYS, partition_dates
from quantlab.project import Project
from quantlab.resources import ProjectFiles, Warehouse
from quantlab.world.allocate import WorldRun, WorldState, allocate_world, history_start, state_from_rows
from quantlab.world.chart import world_chart
from quantlab.world.checks import allocation_violations, family_failures, family_passed
from quantlab.world.evaluate import Evaluation, evaluate_world, metric_panel, previous_states
from quantlab.world.report import model_card, validation_report
from quantlab.world.spec import FAMILIES, WorldSpec

_SEVERITY = {
    "blocking": dg.AssetCheckSeverity.ERROR,
    "soft": dg.AssetCheckSeverity.WARN,
    "info": dg.AssetCheckSeverity.WARN,
}
ALLOCATION_CHECKS = ("budgets", "weight_limits", "live_only")  # ERROR; plus `circuit_breaker` (WARN)


def _last_before(warehouse: Warehouse, table: str, world: str, day: dt.date) -> pl.DataFrame:
    if not warehouse.has_table(table):
        return warehouse.read_table(table, end=day - dt.timedelta(days=1), where={"world": world})
    return warehouse.read(
        f"SELECT * FROM {table} WHERE world = ? AND date = (SELECT max(date) FROM {table} WHERE world = ? AND date < ?)",
        [world, world, day],
    )


def family_check(world: WorldSpec, family: str, rules: pl.DataFrame) -> dg.AssetCheckResult:
    """The asset-check result of one rule family over the rule results of the run's dates."""
    policy = world.rule(family)
    rows = rules.filter(pl.col("family") == family)
    failing = family_failures(rules, family)
    last = rows.filter(pl.col("date") == pl.col("date").max()).select(
        "strategy", "stage", "rule", "status", "reason"
    )
    return dg.AssetCheckResult(
        check_name=f"{world.id}_{family}",
        asset_key=dg.AssetKey(["world_evaluation", world.id]),
        passed=family_passed(world, family, rules),
        severity=_SEVERITY[policy.severity],
        metadata={
            "policy_version": world.policy_version,
            "ruleset_hash": world.ruleset_hash,
            "severity": policy.severity,
            "owner": policy.owner,
            "dates": rows.get_column("date").n_unique(),
            "failing_results": failing.height,
            "failing_dates": failing.get_column("date").n_unique(),
            "strategies": dg.MetadataValue.md(md_table(last)),
            "failures": dg.MetadataValue.md(
                md_table(failing.select("date", "strategy", "stage", "reason_code", "reason").tail(30))
            ),
        },
    )


def allocation_checks(world: WorldSpec, run: WorldRun, decisions: pl.DataFrame) -> list[dg.AssetCheckResult]:
    """Budgets (by side, in total and the world book's leverage), per-strategy weight limits, capital only
    for live strategies (ERROR), and the circuit breaker (WARN while it is on)."""
    key = dg.AssetKey(["world_allocation", world.id])
    out = [
        dg.AssetCheckResult(
            check_name=f"{world.id}_{name}",
            asset_key=key,
            passed=bad.is_empty(),
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"violations": bad.height, "rows": dg.MetadataValue.md(md_table(bad))},
        )
        for name, bad in allocation_violations(
            world, run.allocations, run.targets, run.returns, decisions
        ).items()
    ]
    on = run.returns.filter("circuit")
    out.append(
        dg.AssetCheckResult(
            check_name=f"{world.id}_circuit_breaker",
            asset_key=key,
            passed=on.is_empty(),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "dates_on": on.height,
                "rows": dg.MetadataValue.md(
                    md_table(on.select("date", "drawdown", "circuit_since", "exposure"))
                ),
                "events": dg.MetadataValue.md(
                    md_table(
                        run.events.filter(pl.col("event").str.starts_with("circuit")).select(
                            "date", "event", "reason"
                        )
                    )
                ),
            },
        )
    )
    return out


def run_world_evaluation(
    warehouse: Warehouse,
    project: Project,
    world: WorldSpec,
    start: dt.date,
    end: dt.date,
    run_dir: Path | None = None,
) -> StageRun:
    """Decide every session of [start, end] in date order; write `world_decisions`, `rule_results`,
    `world_snapshots` and `stage_history`. With `run_dir`, also `reports/validation_<world>.md` and a
    model card per member strategy (`reports/model_cards/<strategy>.md`)."""
    wid = world.id
    members = world.members(project.strategies)
    sides = {m: project.strategies[m].side for m in members}
    universe = sorted({s for m in members for s in (project.strategies[m].universe.symbols or [])})
    uses_all = any(project.strategies[m].universe.all for m in members)
    kp = warehouse.read_table("kpis", start, end, where={"strategy": members})
    rets = warehouse.read_table(
        "strategy_returns", end=end, where={"strategy": members}, columns=["date", "strategy", "net"]
    )
    where = {} if uses_all else {"symbol": universe}
    bars = warehouse.read_table("ohlcv", shift_sessions(start, -30), end, where=where, columns=["date"])
    prev = previous_states(_last_before(warehouse, "world_decisions", wid, start), members)
    evaluation = evaluate_world(
        world,
        members,
        [sides[m] for m in members],
        kp,
        rets,
        bars.get_column("date").unique().to_list(),
        prev,
        start,
        end,
        overrides=warehouse.read_table("overrides", where={"world": wid}),
    )
    decisions, rules = evaluation.decisions, evaluation.rules
    write(warehouse, "world_decisions", decisions, start, end, scope={"world": wid})
    write(warehouse, "rule_results", rules, start, end, scope={"world": wid})
    write(warehouse, "world_snapshots", evaluation.snapshots, start, end, scope={"world": wid})
    write(warehouse, "stage_history", evaluation.stage_history, start, end, scope={"world": wid})
    last = decisions.filter(pl.col("date") == end)
    reports = {}
    if run_dir is not None:
        reports = _write_reports(warehouse, project, world, evaluation, start, end, run_dir)
    return StageRun(
        metadata={
            **reports,
            "transitions": evaluation.stage_history.height,
            "policy_version": world.policy_version,
            "ruleset_hash": world.ruleset_hash,
            "dates": decisions.get_column("date").n_unique(),
            "live": last.filter(pl.col("stage") == "live").height,
            "paper": last.filter(pl.col("stage") == "paper").height,
            "stages": dg.MetadataValue.md(
                md_table(last.select("strategy", "stage", "stage_since", "selected", "score", "reason_code"))
            ),
        },
        checks=[family_check(world, family, rules) for family in FAMILIES],
    )


def _write_reports(
    warehouse: Warehouse,
    project: Project,
    world: WorldSpec,
    evaluation: Evaluation,
    start: dt.date,
    end: dt.date,
    run_dir: Path,
) -> dict[str, dg.MetadataValue]:
    folder = run_dir / "reports"
    (folder / "model_cards").mkdir(parents=True, exist_ok=True)
    path = folder / f"validation_{world.id}.md"
    path.write_text(
        validation_report(
            world,
            project.strategies,
            evaluation.decisions,
            evaluation.rules,
            evaluation.stage_history,
            start,
            end,
        )
    )
    span = warehouse.read("SELECT count(*) AS n, min(first_date) AS a, max(last_date) AS b FROM symbols")
    n, a, b = span.row(0) if warehouse.has_table("symbols") else (0, None, None)
    data = f"{n} symbols stored, {a} .. {b}"
    for member in world.members(project.strategies):
        (folder / "model_cards" / f"{member}.md").write_text(model_card(project.strategies[member], data))
    return {"validation_report": dg.MetadataValue.path(str(path))}


def world_state(warehouse: Warehouse, world: str, start: dt.date) -> WorldState:
    """The world at its last stored session before `start` (a new world when there is none)."""
    prev = _last_before(warehouse, "world_returns", world, start)
    if not prev.height:
        return WorldState()
    day = prev.get_column("date")[0]
    peak = warehouse.read(
        "SELECT max(equity) FROM world_returns WHERE world = ? AND date < ?", [world, start]
    )
    return state_from_rows(
        warehouse.read_table("world_allocations", day, day, where={"world": world}),
        warehouse.read_table("world_targets", day, day, where={"world": world}),
        prev.row(0, named=True),
        peak.item(),
    )


def run_world_allocation(
    warehouse: Warehouse,
    project: Project,
    world: WorldSpec,
    start: dt.date,
    end: dt.date,
    run_dir: Path | None = None,
) -> StageRun:
    """Allocate capital among the live strategies with the world's risk engine; write `world_allocations`,
    `world_targets`, `world_returns` and `world_risk_events` (and, with `run_dir`, the equity and
    allocation chart `reports/world_<world>.png`, linked from the materialization)."""
    wid = world.id
    members = world.members(project.strategies)
    sides = [project.strategies[m].side for m in members]
    decisions = warehouse.read_table("world_decisions", start, end, where={"world": wid})
    kp = warehouse.read_table("kpis", start, end, where={"strategy": members})
    appr = warehouse.read_table(
        "approvals",
        start,
        end,
        where={"strategy": members},
        columns=["date", "strategy", "symbol", "approved_weight"],
    )
    rejected = (  # every rejection of a strategy on a date is an audit row with action reject
        warehouse.read_table("audit_log", start, end, where={"strategy": members, "action": "reject"})
        .select("date", "strategy")
        .unique()
    )
    vol_col = f"annual_volatility_{world.allocation.vol_window}"
    vol = metric_panel(world, kp, members).select("date", "strategy", pl.col(vol_col).alias("vol"))
    net = warehouse.read_table(
        "strategy_returns",
        history_start(world, start),
        end,
        where={"strategy": members},
        columns=["date", "strategy", "net"],
    )
    run = allocate_world(
        world,
        members,
        sides,
        sessions(start, end),
        decisions,
        vol,
        net,
        appr,
        rejected,
        world_state(warehouse, wid, start),
    )
    write(warehouse, "world_allocations", run.allocations, start, end, scope={"world": wid})
    write(warehouse, "world_targets", run.targets, start, end, scope={"world": wid})
    write(warehouse, "world_returns", run.returns, start, end, scope={"world": wid})
    write(warehouse, "world_risk_events", run.events, start, end, scope={"world": wid})
    latest = run.allocations.filter(pl.col("date") == end)
    meta: dict = {
        "allocation": dg.MetadataValue.md(md_table(latest.select("strategy", "side", "weight"))),
        "live_strategies": latest.height,
        "risk_events": dg.MetadataValue.md(
            md_table(run.events.sort("date", descending=True).select("date", "event", "reason"))
        ),
        "book": dg.MetadataValue.md(
            md_table(run.targets.filter(pl.col("date") == end).select("symbol", "weight"))
        ),
    }
    if not latest.height:
        meta["note"] = "holding cash: no live strategy"
    if run.returns.height:
        tail = run.returns.tail(1).row(0, named=True)
        meta.update(
            equity=float(tail["equity"]),
            drawdown=float(tail["drawdown"]),
            exposure=float(tail["exposure"]),
            gross_exposure=float(tail["gross_exposure"]),
            circuit_on=bool(tail["circuit"]),
        )
    if run_dir is not None:
        meta.update(_write_chart(warehouse, wid, end, run_dir))
    return StageRun(metadata=meta, checks=allocation_checks(world, run, decisions))


def _write_chart(warehouse: Warehouse, wid: str, end: dt.date, run_dir: Path) -> dict[str, dg.MetadataValue]:
    """The world's equity curve and allocation history up to `end` (from the warehouse), as a PNG."""
    track = warehouse.read_table("world_returns", end=end, where={"world": wid})
    alloc = warehouse.read_table("world_allocations", end=end, where={"world": wid})
    path = run_dir / "reports" / f"world_{wid}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    png = world_chart(wid, track, alloc)
    path.write_bytes(png)
    inline = f"![world {wid}](data:image/png;base64,{base64.b64encode(png).decode()})"
    return {"chart": dg.MetadataValue.path(str(path)), "equity_and_allocation": dg.MetadataValue.md(inline)}


def world_assets(project: Project) -> list[dg.AssetsDefinition]:
    """Evaluation and allocation assets for every world of the project."""
    out = []
    for world in project.worlds.values():
        out.extend(_world_pair(project, world))
    return out


def _world_pair(project: Project, world: WorldSpec) -> list[dg.AssetsDefinition]:
    wid = world.id
    eval_key = dg.AssetKey(["world_evaluation", wid])
    specs = [
        dg.AssetCheckSpec(
            name=f"{wid}_{family}",
            asset=eval_key,
            partitions_def=TRADING_DAYS,
            blocking=world.rule(family).severity == "blocking",
            description=f"World `{wid}` rule family `{family}` (severity {world.rule(family).severity}, "
            f"owner {world.rule(family).owner}).",
        )
        for family in FAMILIES
    ]

    @chain_asset(
        key=eval_key,
        group_name="worlds",
        deps=["kpis", "approvals"],
        check_specs=specs,
        kinds={"duckdb"},
        description=f"{world.description or wid}: daily decisions of the world's policy ({world.policy_version}).",
    )
    def _evaluation(
        context: dg.AssetExecutionContext, warehouse: Warehouse, project_files: ProjectFiles
    ) -> dg.MaterializeResult:
        run_dir = project_files.run_dir(context.run_id)
        return run_world_evaluation(warehouse, project, world, *partition_dates(context), run_dir).result()

    alloc_key = dg.AssetKey(["world_allocation", wid])

    @chain_asset(
        key=alloc_key,
        group_name="worlds",
        deps=[eval_key],
        check_specs=[
            *[
                dg.AssetCheckSpec(
                    name=f"{wid}_{c}", asset=alloc_key, partitions_def=TRADING_DAYS, blocking=True
                )
                for c in ALLOCATION_CHECKS
            ],
            dg.AssetCheckSpec(
                name=f"{wid}_circuit_breaker",
                asset=alloc_key,
                partitions_def=TRADING_DAYS,
                description=f"WARN while world `{wid}`'s drawdown circuit breaker is on.",
            ),
        ],
        kinds={"duckdb"},
        description=f"{world.description or wid}: capital per live strategy ({world.allocation.method}) and the world's returns.",
    )
    def _allocation(
        context: dg.AssetExecutionContext, warehouse: Warehouse, project_files: ProjectFiles
    ) -> dg.MaterializeResult:
        run_dir = project_files.run_dir(context.run_id)
        return run_world_allocation(warehouse, project, world, *partition_dates(context), run_dir).result()

    return [_evaluation, _allocation]
