"""The `quantlab` command line: `demo` (the whole chain on the embedded data) and `validate`."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
from pathlib import Path

import click

from quantlab.config import ConfigError


def _ensure_dagster_home(root: Path) -> Path:
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(root / ".dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists() and (root / "dagster.yaml").exists():
        shutil.copy(root / "dagster.yaml", home / "dagster.yaml")
    return home


@click.group()
def main() -> None:
    """quantlab: a quant research production chain orchestrated by Dagster."""
    import warnings

    # Dagster flags the beta/preview APIs quantlab relies on (single-run backfills, partitioned checks) at
    # every import; they are documented choices, not news to a CLI user.
    warnings.filterwarnings("ignore", message=".*(beta|preview).*", category=Warning)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (the error too).")
def validate(as_json: bool) -> None:
    """Validate every strategy and world file (and supervisor.yaml, curator.yaml); exit 1 on a bad file."""
    from quantlab.project import load_project

    project = load_project()
    try:
        strategies, worlds = project.strategies, project.worlds
        project.supervisor, project.curator, project.feature_sets  # noqa: B018 - loading validates them
    except ConfigError as exc:
        click.echo(json.dumps({"ok": False, "error": str(exc)}) if as_json else str(exc), err=True)
        sys.exit(1)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": True,
                    "root": str(project.root),
                    "strategies": sorted(strategies),
                    "worlds": sorted(worlds),
                }
            )
        )
    else:
        click.echo(f"ok: {len(strategies)} strategies, {len(worlds)} worlds in {project.root}")


def _range_tags(start: dt.date, end: dt.date) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": start.isoformat(),
        "dagster/asset_partition_range_end": end.isoformat(),
    }


@main.command()
@click.option(
    "--start", type=click.DateTime(["%Y-%m-%d"]), default=None, help="First as-of date (default: data start)."
)
@click.option(
    "--end", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Last as-of date (default: data end)."
)
@click.option(
    "--recent", type=int, default=20, show_default=True, help="Sessions materialized as asset partitions."
)
def demo(start: dt.datetime | None, end: dt.datetime | None, recent: int) -> None:
    """Run the whole chain over the dataset's history and print a summary.

    Three Dagster runs on the instance in DAGSTER_HOME: the `history` job (every stage over the bulk of the
    history in one run), the partitioned chain as one ranged run over the most recent sessions, and the
    last session alone, so its asset checks are recorded per partition.
    """
    from quantlab.project import project_dir

    root = project_dir()
    _ensure_dagster_home(root)
    import dagster as dg

    from quantlab.calendar import sessions
    from quantlab.curator import embedded
    from quantlab.definitions import CHAIN_JOB, defs
    from quantlab.jobs import HISTORY_JOB
    from quantlab.project import load_project
    from quantlab.resources import MarketData, ProjectFiles, Warehouse
    from quantlab.summary import data_summary, render_text, tuning_summary, world_summary

    dataset = MarketData().dataset
    if dataset != "embedded" and (start is None or end is None):
        raise click.UsageError(f"dataset '{dataset}': give --start and --end")
    days = sessions(start.date() if start else embedded.FIRST_DATE, end.date() if end else embedded.LAST_DATE)
    if len(days) < 2:
        raise click.UsageError("the range holds fewer than two NYSE sessions")
    recent = max(1, min(recent, len(days) - 1))
    first, last = days[0], days[-1]
    instance = dg.DagsterInstance.get()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # the UI has the full event log
    runs = []
    if len(days) > recent + 1:
        hist_end = days[-recent - 1]
        history = defs.resolve_job_def(HISTORY_JOB)
        window = {"history_window": {"config": {"start": first.isoformat(), "end": hist_end.isoformat()}}}
        runs.append(
            _run_job(
                instance,
                f"[1/3] history job: the whole chain for {first} .. {hist_end} in one run",
                history,
                run_config={**quiet, "resources": window},
            )
        )
    chain = defs.resolve_job_def(CHAIN_JOB)
    if runs and not runs[-1].success:
        click.echo("history run failed; see the Dagster UI (make ui) for the failing step", err=True)
    else:
        runs += _demo_tuning(defs, instance, days[-recent - 1], quiet)
        runs.append(
            _run_job(
                instance,
                f"[2/3] partitioned chain: {days[-recent]} .. {days[-2]} as one ranged run",
                chain,
                tags=_range_tags(days[-recent], days[-2]),
                run_config=quiet,
            )
        )
        if runs[-1].success:
            runs.append(
                _run_job(
                    instance,
                    f"[3/3] partitioned chain: {last} (one partition, checks recorded per partition)",
                    chain,
                    partition_key=last.isoformat(),
                    run_config=quiet,
                )
            )
    result = runs[-1]
    success = all(r.success for r in runs)
    checks = [
        {
            "asset": ev.asset_key.to_user_string(),
            "check": ev.check_name,
            "passed": ev.passed,
            "severity": ev.severity.value,
        }
        for ev in result.get_asset_check_evaluations()
    ]
    warehouse = Warehouse()
    artifacts = ProjectFiles().run_dir(result.run_id)
    summary = {
        "run_id": result.run_id,
        "runs": [r.run_id for r in runs],
        "status": "SUCCESS" if success else "FAILURE",
        "start": first.isoformat(),
        "end": last.isoformat(),
        "dataset": dataset,
        "warehouse": str(Path(warehouse.database).resolve()),
        "artifacts": str(artifacts),
        "checks": checks,
        "data": data_summary(warehouse, last),
        "worlds": [world_summary(warehouse, w, last) for w in sorted(load_project().worlds)],
        "tuning": tuning_summary(warehouse, last),
    }
    run_file = artifacts / "summary.json"  # the last run's own summary (quantlab.run_artifacts) is kept
    if run_file.exists():
        summary["run"] = json.loads(run_file.read_text())
    run_file.write_text(json.dumps(summary, indent=2, default=str))
    text = render_text(summary)
    (artifacts / "summary.txt").write_text(text + "\n")
    click.echo(text)
    sys.exit(0 if success else 1)


DEMO_TRIALS = (
    30  # the demo's study size: enough for the deflation to show, a few seconds on the embedded data
)


def _run_job(instance, label: str, job, **kwargs):  # noqa: ANN001, ANN202 - Dagster objects
    """`job.execute_in_process(**kwargs)` on `instance` with a progress bar of its finished steps."""
    from quantlab.progress import run_with_progress, step_bar

    with step_bar(label, len(job.graph.nodes)) as bar:
        return run_with_progress(
            instance, lambda: job.execute_in_process(instance=instance, raise_on_error=False, **kwargs), bar
        )


def _demo_tuning(defs, instance, end: dt.date, run_config: dict) -> list:  # noqa: ANN001 - Dagster objects
    """The demo's tuning step: the first tunable strategy's study, topped up to DEMO_TRIALS trials over the
    history window, before the chain's recent runs compute KPIs (so its `dsr` counts those trials)."""
    from quantlab.assets.tuning import ASSET, TUNING_JOB

    try:
        job = defs.resolve_job_def(TUNING_JOB)
    except Exception:  # noqa: BLE001 - no strategy has a tuning block
        return []
    strategy = job.partitions_def.get_partition_keys()[0]
    click.echo(
        f"[tuning] {strategy}: Optuna study topped up to {DEMO_TRIALS} trials over the history to {end} ..."
    )
    config = {"total_trials": DEMO_TRIALS, "end": end.isoformat()}
    result = job.execute_in_process(
        instance=instance,
        partition_key=strategy,
        raise_on_error=False,
        run_config={**run_config, "ops": {ASSET: {"config": config}}},
    )
    return [result]


@main.group()
def world() -> None:
    """Inspect worlds."""


@world.command("report")
@click.argument("world_id")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), required=True, help="As-of date.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def world_report(world_id: str, day: dt.datetime, as_json: bool) -> None:
    """A world's decision on a date: each strategy's stage and reason, its rule results and the status of
    every rule family. Exit 0 when every family passed, 1 when one failed, 2 when there is no decision."""
    import polars as pl

    from quantlab.project import load_project
    from quantlab.resources import Warehouse
    from quantlab.world.checks import family_passed
    from quantlab.world.spec import FAMILIES

    spec = load_project().worlds.get(world_id)
    if spec is None:
        raise click.UsageError(f"unknown world '{world_id}'")
    wh, d = Warehouse(), day.date()
    decisions = wh.read_table("world_decisions", d, d, where={"world": world_id})
    if decisions.is_empty():
        click.echo(f"no decision of world '{world_id}' on {d} in {wh.database}", err=True)
        sys.exit(2)
    rules = wh.read_table("rule_results", d, d, where={"world": world_id})
    families = {f: family_passed(spec, f, rules) for f in FAMILIES}
    report = {
        "world": world_id,
        "date": d.isoformat(),
        "policy_version": decisions.get_column("policy_version")[0],
        "ruleset_hash": decisions.get_column("ruleset_hash")[0],
        "input_hash": decisions.get_column("input_hash")[0],
        "evaluate_only": bool(decisions.get_column("evaluate_only")[0]),
        "families": {f: {"passed": ok, "severity": spec.rule(f).severity} for f, ok in families.items()},
        "strategies": decisions.select("strategy", "stage", "stage_since", "selected", "score", "reason_code")
        .sort("strategy")
        .to_dicts(),
        "rules": rules.select("strategy", "rule", "stage", "status", "reason_code", "reason")
        .sort("strategy", "rule")
        .to_dicts(),
    }
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        click.echo(f"World {world_id} on {d} — {report['policy_version']} (ruleset {report['ruleset_hash']})")
        if report["evaluate_only"]:
            click.echo("  data is stale: evaluate-only (no stage changes, allocation frozen)")
        for s in report["strategies"]:
            score = "-" if s["score"] is None else f"{s['score']:.3f}"
            click.echo(f"  {s['strategy']:<22}{s['stage']:<10}score {score:>8}  {s['reason_code']}")
        click.echo("  rules:")
        with pl.Config(tbl_rows=200, tbl_width_chars=200, fmt_str_lengths=90, tbl_hide_dataframe_shape=True):
            click.echo(rules.select("strategy", "rule", "status", "reason").sort("strategy", "rule"))
        click.echo(
            "  checks: "
            + ", ".join(
                f"{f}={'PASS' if ok else spec.rule(f).severity.upper()}" for f, ok in families.items()
            )
        )
    sys.exit(0 if all(families.values()) else 1)


@world.command("override")
@click.argument("world_id")
@click.option("--strategy", required=True, help="Strategy id (a member of the world).")
@click.option(
    "--action",
    type=click.Choice(["force_active", "force_inactive", "freeze"]),
    required=True,
    help="Decision.",
)
@click.option("--reason", required=True, help="Why (recorded with the decision).")
@click.option("--actor", required=True, help="Who decides (recorded with the decision).")
@click.option(
    "--from",
    "since",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="First as-of date it applies to (default: today, UTC).",
)
@click.option(
    "--until", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Last as-of date (default: open)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the stored override as JSON.")
def world_override(
    world_id: str,
    strategy: str,
    action: str,
    reason: str,
    actor: str,
    since: dt.datetime | None,
    until: dt.datetime | None,
    as_json: bool,
) -> None:
    """Record a manual decision on a world's strategy in `overrides` (append-only, with a UTC timestamp).

    `decide` applies it from the next evaluation of its dates on (re-materialize `world_evaluation/WORLD`
    for dates already decided); each decision it changes carries an `override` rule row with actor and
    reason. Exit 2 when the world, the strategy or the dates are not valid.
    """
    import uuid

    import polars as pl

    from quantlab.project import load_project
    from quantlab.resources import Warehouse

    project = load_project()
    spec = project.worlds.get(world_id)
    if spec is None:
        raise click.UsageError(f"unknown world '{world_id}'; worlds: {', '.join(sorted(project.worlds))}")
    members = spec.members(project.strategies)
    if strategy not in members:
        raise click.UsageError(
            f"'{strategy}' is not a strategy of world '{world_id}'; members: {', '.join(members)}"
        )
    if not reason.strip() or not actor.strip():
        raise click.UsageError("an override needs a non-empty --reason and --actor")
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    start = since.date() if since else now.date()
    end = until.date() if until else None
    if end is not None and end < start:
        raise click.UsageError(f"--until {end} is before --from {start}")
    row = {
        "override_id": uuid.uuid4().hex[:12],
        "world": world_id,
        "strategy": strategy,
        "action": action,
        "reason": reason.strip(),
        "actor": actor.strip(),
        "created_at": now,
        "effective_from": start,
        "until": end,
    }
    wh = Warehouse()
    wh.append(
        "overrides", pl.DataFrame([row], schema_overrides={"until": pl.Date, "created_at": pl.Datetime("us")})
    )
    if as_json:
        click.echo(json.dumps(row, default=str))
    else:
        span = f"from {start}" + (f" until {end}" if end else " (open-ended)")
        click.echo(
            f"override {row['override_id']}: {action} {strategy} in {world_id} {span}, by {actor}: {reason} "
            f"(recorded {now:%Y-%m-%d %H:%M:%S} UTC in {wh.database}; re-materialize world_evaluation/{world_id} "
            "for dates already decided)"
        )


@main.group()
def checks() -> None:
    """Asset-check reports."""


@checks.command("report")
@click.option(
    "--date", "day", type=click.DateTime(["%Y-%m-%d"]), required=True, help="As-of date (partition)."
)
@click.option("--world", "world_id", default=None, help="Only this world's checks.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def checks_report(day: dt.datetime, world_id: str | None, as_json: bool) -> None:
    """Every asset check of a date: severity, the Dagster evaluation of that partition (if a single-partition
    run recorded one) and the warehouse's verdict with the failing rows' reasons. Exit 0 when no blocking check
    failed, 1 when one did, 2 when the warehouse holds nothing for the date."""
    import dagster as dg

    from quantlab.check_report import blocking_failed, check_report
    from quantlab.project import load_project
    from quantlab.resources import Warehouse

    project = load_project()
    if world_id is not None and world_id not in project.worlds:
        raise click.UsageError(f"unknown world '{world_id}'; worlds: {', '.join(sorted(project.worlds))}")
    warehouse, d = Warehouse(), day.date()
    rows = check_report(dg.DagsterInstance.get(), warehouse, project, d, world_id)
    if all(r["warehouse"]["passed"] is None and r["dagster"] is None for r in rows):
        click.echo(f"nothing recorded for {d} in {warehouse.database} or the Dagster instance", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
    else:
        click.echo(f"Asset checks on {d}")

        def verdict(passed: bool | None) -> str:
            return "-" if passed is None else ("PASS" if passed else "FAIL")

        click.echo(f"  {'check':<34}{'severity':<10}{'dagster':<9}{'warehouse':<10}failing  reason")
        for r in rows:
            dag = r["dagster"]
            click.echo(
                f"  {r['check']:<34}{r['severity']:<10}{verdict(None if dag is None else dag['passed']):<9}"
                f"{verdict(r['warehouse']['passed']):<10}{r['warehouse']['failing']:>7}  {r['warehouse']['reason'][:90]}"
            )
    sys.exit(1 if blocking_failed(rows) else 0)


@main.command()
@click.option(
    "--date", "day", type=click.DateTime(["%Y-%m-%d"]), required=True, help="As-of date (partition)."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder (default: <artifacts>/reports/<date>).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the files written as JSON.")
def report(day: dt.datetime, out: Path | None, as_json: bool) -> None:
    """Write the markdown reports of a date from the warehouse: asset checks, approvals, worlds, backtest
    summary (with charts) and the date's trades. Exit 2 when the warehouse holds nothing for the date."""
    import dagster as dg

    from quantlab.project import load_project
    from quantlab.reports import write_date_reports
    from quantlab.resources import ProjectFiles, Warehouse

    warehouse, d = Warehouse(), day.date()
    if warehouse.read_table("ohlcv", d, d, columns=["symbol"]).is_empty():
        click.echo(f"nothing recorded for {d} in {warehouse.database}", err=True)
        sys.exit(2)
    folder = out or ProjectFiles().artifacts_dir() / "reports" / d.isoformat()
    written = write_date_reports(dg.DagsterInstance.get(), warehouse, load_project(), d, folder)
    if as_json:
        click.echo(json.dumps([str(f) for f in written]))
    else:
        click.echo(f"reports of {d} in {folder}:")
        for f in written:
            click.echo(f"  {f}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(as_json: bool) -> None:
    """Latest materialized partition of every asset (Dagster instance), checks whose latest evaluation
    failed, and the newest date of every warehouse table."""
    import dagster as dg

    from quantlab.definitions import build_definitions
    from quantlab.resources import Warehouse
    from quantlab.schemas import TABLES

    instance = dg.DagsterInstance.get()
    graph = build_definitions().resolve_asset_graph()
    assets = []
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        event = instance.get_latest_materialization_event(key)
        mat = event.asset_materialization if event is not None else None
        assets.append(
            {
                "asset": key.to_user_string(),
                "partition": None if mat is None else mat.partition,
                "run_id": None if event is None else event.run_id,
                "at": None
                if event is None
                else dt.datetime.fromtimestamp(event.timestamp, dt.UTC).isoformat(timespec="seconds"),
            }
        )
    check_keys = sorted(graph.asset_check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name))
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys)
    failing = []
    for key, rec in latest.items():
        evaluation = rec.event.asset_check_evaluation if rec.event is not None else None
        if evaluation is not None and not evaluation.passed:
            failing.append(
                {
                    "asset": key.asset_key.to_user_string(),
                    "check": key.name,
                    "severity": evaluation.severity.value,
                    "partition": rec.partition,
                    "run_id": rec.run_id,
                }
            )
    warehouse = Warehouse()
    tables = {}
    for name, table in TABLES.items():
        if warehouse.has_table(name):
            col = table.partition_col
            newest = warehouse.read(
                f"SELECT {'max(' + col + ')' if col else 'NULL'} AS d, count(*) AS n FROM {name}"
            ).row(0)
            tables[name] = {"newest": newest[0], "rows": newest[1]}
    report = {
        "assets": assets,
        "failing_checks": failing,
        "warehouse": str(warehouse.database),
        "tables": tables,
    }
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    click.echo("Assets (latest materialization):")
    for a in assets:
        click.echo(f"  {a['asset']:<36}{a['partition'] or '-':<12}{a['at'] or 'never'}")
    click.echo(f"Failing checks (latest evaluation): {len(failing) or 'none'}")
    for f in failing:
        click.echo(f"  {f['check']:<34}{f['severity']:<6}{f['partition'] or '(range)'}  on {f['asset']}")
    click.echo(f"Warehouse {warehouse.database}:")
    for name, t in tables.items():
        click.echo(f"  {name:<22}{str(t['newest'] or ''):<12}{t['rows']:>10} rows")


@main.group()
def tune() -> None:
    """Tuning studies: run one, show its leaderboard, promote a trial to a new strategy version."""


@tune.command("run")
@click.argument("strategy")
@click.option(
    "--trials", type=int, default=None, help="Trials to add (default: the strategy's tuning.n_trials)."
)
@click.option("--total", type=int, default=None, help="Instead: add trials until the study holds this many.")
@click.option("--timeout", type=float, default=None, help="Stop adding trials after this many seconds.")
@click.option("--sampler", type=click.Choice(["tpe", "random"]), default=None)
@click.option("--pruner", type=click.Choice(["none", "median"]), default=None)
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Study window start.")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Study window end.")
def tune_run(
    strategy: str,
    trials: int | None,
    total: int | None,
    timeout: float | None,
    sampler: str | None,
    pruner: str | None,
    start: dt.datetime | None,
    end: dt.datetime | None,
) -> None:
    """Materialize the `tuning_studies` partition STRATEGY (a run of the `tuning` job on the instance in
    DAGSTER_HOME, so it shows in the UI): create or resume its study and add trials."""
    from quantlab.project import project_dir

    _ensure_dagster_home(project_dir())
    import dagster as dg

    from quantlab.assets.tuning import ASSET, TUNING_JOB
    from quantlab.definitions import defs

    config = {
        "n_trials": trials,
        "total_trials": total,
        "timeout_s": timeout,
        "sampler": sampler,
        "pruner": pruner,
        "start": start.date().isoformat() if start else None,
        "end": end.date().isoformat() if end else None,
    }
    try:
        job = defs.resolve_job_def(TUNING_JOB)
    except Exception:  # noqa: BLE001 - no tunable strategy: no tuning job
        raise click.UsageError("no strategy has a `tuning:` block") from None
    if strategy not in job.partitions_def.get_partition_keys():
        raise click.UsageError(
            f"'{strategy}' has no `tuning:` block; tunable: {job.partitions_def.get_partition_keys()}"
        )
    result = job.execute_in_process(
        instance=dg.DagsterInstance.get(),
        partition_key=strategy,
        raise_on_error=False,
        run_config={
            "loggers": {"console": {"config": {"log_level": "INFO"}}},  # one line per trial
            "ops": {ASSET: {"config": {k: v for k, v in config.items() if v is not None}}},
        },
    )
    if not result.success:
        click.echo(f"tuning run {result.run_id} failed; see the Dagster UI for the failing step", err=True)
        sys.exit(1)
    meta = result.asset_materializations_for_node(ASSET)[0].metadata
    click.echo(f"study {meta['study'].value}: {meta['trials'].value} trials in {meta['storage'].value}")
    click.echo(meta["leaderboard"].value)
    click.echo(
        f"counted for the deflated Sharpe of {strategy}: {meta['trials_counted_for_dsr'].value} trials, "
        f"E[max Sharpe] {meta['expected_max_sharpe'].value:.2f}"
    )
    if "tuning_report" in meta:
        click.echo(f"report: {meta['tuning_report'].value}")


def _study_trials(strategy: str, study: str | None):  # noqa: ANN202 - (polars frame, study name)
    import polars as pl

    from quantlab.resources import Warehouse

    trials = Warehouse().read_table("tuning_trials", where={"strategy": strategy})
    if trials.is_empty():
        raise click.UsageError(f"no tuning trials of '{strategy}' in the warehouse: run `quantlab tune run`")
    if study is None:
        study = trials.sort("started_at", nulls_last=True).get_column("study").drop_nulls()[-1]
    rows = trials.filter(pl.col("study") == study)
    if rows.is_empty():
        raise click.UsageError(f"no study '{study}' of '{strategy}'; known: {sorted(set(trials['study']))}")
    return rows, study


@tune.command("show")
@click.argument("strategy")
@click.option("--study", default=None, help="Study name (default: the strategy's latest).")
@click.option("--top", type=int, default=10, show_default=True)
def tune_show(strategy: str, study: str | None, top: int) -> None:
    """The leaderboard of a study, from the warehouse's `tuning_trials`."""
    from quantlab.markdown import md_table
    from quantlab.resources import Warehouse
    from quantlab.tuning.study import leaderboard, trial_stats

    rows, study = _study_trials(strategy, study)
    click.echo(f"study {study}: {rows.height} trials")
    click.echo(md_table(leaderboard(rows, top), max_rows=top))
    stats = trial_stats(Warehouse().read_table("tuning_trials", where={"strategy": strategy})).row(
        0, named=True
    )
    click.echo(
        f"counted for the deflated Sharpe of {strategy}: {stats['n_trials']} trials over {stats['studies']} "
        f"study(ies), variance of their daily Sharpe {stats['sr_variance']}"
    )


@tune.command("promote")
@click.argument("strategy")
@click.option("--trial", "number", type=int, required=True, help="Trial number (see `quantlab tune show`).")
@click.option("--study", default=None, help="Study name (default: the strategy's latest).")
@click.option("--dry-run", is_flag=True, help="Show the changes, write nothing.")
def tune_promote(strategy: str, number: int, study: str | None, dry_run: bool) -> None:
    """Write trial N's parameters into strategies/STRATEGY.yaml as its next version (the previous file is
    kept in strategies/.history/). Refused for a trial that did not complete or was run on another version."""
    import polars as pl

    from quantlab.project import load_project
    from quantlab.tuning.promote import changes, promote

    project = load_project()
    spec = project.strategies.get(strategy)
    if spec is None:
        raise click.UsageError(f"unknown strategy '{strategy}'")
    rows, study = _study_trials(strategy, study)
    hit = rows.filter(pl.col("trial") == number)
    if hit.is_empty():
        raise click.UsageError(f"study {study} has no trial {number}")
    trial = hit.row(0, named=True)
    if trial["state"] != "COMPLETE":
        raise click.UsageError(f"trial {number} of {study} is {trial['state']}, not COMPLETE")
    if trial["strategy_version"] != spec.version:
        raise click.UsageError(
            f"trial {number} of {study} tuned version {trial['strategy_version']} of '{strategy}', the file is at "
            f"version {spec.version}: run a study on the current version"
        )
    params = json.loads(trial["params"])
    diff = changes(spec, params)
    for path, (old, new) in diff.items():
        click.echo(f"  {path}: {old} -> {new}")
    if not diff:
        click.echo(f"trial {number} has the current parameters of '{strategy}': nothing to promote")
        return
    if dry_run:
        click.echo("dry run: nothing written")
        return
    path = project.root / "strategies" / f"{strategy}.yaml"
    try:
        new, backup = promote(path, params, f"parameters of trial {number} of tuning study {study}")
    except (ValueError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{path}: version {spec.version} -> {new.version} (previous version kept in {backup})")
