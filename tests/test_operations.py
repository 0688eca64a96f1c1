"""The operations paths of the README, end to end: the daily schedule (and the run artifacts of the run it
requests), a ranged single-run backfill from the `dagster` CLI, and the `quantlab checks report`, `report`
and `validate` commands on what it wrote. (Job backfills executed by a daemon: tests/test_webserver.py and
tests/test_postgres_instance.py.) Each test has its own temporary DAGSTER_HOME (the repository's
dagster.yaml) and warehouse; the data is the embedded dataset (the schedule's run: the synthetic one).
"""

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner, Result
from e2e import Stack, checks_report, make_stack, run_cli

from quantlab.calendar import all_sessions, sessions
from quantlab.cli import main
from quantlab.definitions import CHAIN_JOB, build_definitions
from quantlab.resources import MarketData, Warehouse

SYMBOLS = 5  # the embedded dataset in 2013: AAPL, FB, GOOG, IBM, MSFT
WORLDS = ("core_equity", "momentum_lab")


def _tick(schedule: dg.ScheduleDefinition, at: str) -> list[dg.RunRequest]:
    when = dt.datetime.fromisoformat(at).replace(tzinfo=dt.UTC)
    return list(schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=when)).run_requests)


def test_schedule_runs_each_session_after_the_close(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """00:30 UTC (evening in New York) requests the session that just closed, nothing after a weekend day
    or a holiday; on the synthetic dataset, which reaches today, the requested run succeeds."""
    monkeypatch.setenv("QUANTLAB_ARTIFACTS", str(tmp_path / "artifacts"))
    defs = build_definitions(
        warehouse=Warehouse(database=str(tmp_path / "w.duckdb")),
        market_data=MarketData(dataset="synthetic", synthetic_symbols=4),
    )
    (schedule,) = defs.get_repository_def().schedule_defs
    assert schedule.job_name == CHAIN_JOB
    assert [r.partition_key for r in _tick(schedule, "2013-03-01T00:30")] == ["2013-02-28"]  # Thursday
    assert [r.partition_key for r in _tick(schedule, "2013-03-02T00:30")] == ["2013-03-01"]  # Friday
    assert _tick(schedule, "2013-03-03T00:30") == [] and _tick(schedule, "2013-03-04T00:30") == []  # weekend
    assert _tick(schedule, "2013-02-19T00:30") == []  # Presidents' Day 2013-02-18
    assert _tick(schedule, "2012-10-30T00:30") == []  # hurricane Sandy closed the NYSE on 2012-10-29

    today = dt.datetime.now(dt.UTC).date()
    last = max(d for d in all_sessions() if d < today)
    (request,) = _tick(schedule, f"{last + dt.timedelta(days=1)}T00:30")
    assert request.partition_key == last.isoformat()
    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_job_def(CHAIN_JOB).execute_in_process(
        instance=instance, partition_key=request.partition_key, tags=request.tags
    )
    assert result.success
    bars = Warehouse(database=str(tmp_path / "w.duckdb")).read_table("ohlcv", last, last)
    assert bars.height == 4
    # the run's artifacts: pipeline.log and summary.json beside the stage reports, linked from the metadata
    run_dir = tmp_path / "artifacts" / "runs" / result.run_id
    log = (run_dir / "pipeline.log").read_text()
    assert "STEP_SUCCESS" in log and "world_allocation__core_equity" in log
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["job"] == CHAIN_JOB and summary["tags"]["dagster/partition"] == last.isoformat()
    assert set(summary["steps"].values()) == {"success"} and len(summary["steps"]) == 12
    assert summary["assets"]["ohlcv"]["first"] == last.isoformat()
    quality = Path(summary["assets"]["ohlcv"]["reports"]["quality_report"])
    assert quality.parent == run_dir / "reports" and quality.is_file()
    assert {c["check"] for c in summary["checks"]} >= {"missing_session", "core_equity_gates"}


def _rows_per_date(db: Path, table: str, days: list[dt.date]) -> dict[str, int]:
    df = Warehouse(database=str(db)).read(
        f"SELECT date, count(*) AS n FROM {table} WHERE date BETWEEN ? AND ? GROUP BY date",
        [days[0], days[-1]],
    )
    return {d.isoformat(): n for d, n in df.iter_rows()}


def _assert_chain_rows(stack: Stack, days: list[dt.date]) -> None:
    """Every date of `days` has its bars, features and each world's decision and rule results."""
    want = {d.isoformat() for d in days}
    assert _rows_per_date(stack.warehouse, "ohlcv", days) == dict.fromkeys(want, SYMBOLS)
    assert set(_rows_per_date(stack.warehouse, "features", days)) == want
    decisions = Warehouse(database=str(stack.warehouse)).read(
        "SELECT world, date, count(*) AS n FROM world_decisions WHERE date BETWEEN ? AND ? GROUP BY ALL",
        [days[0], days[-1]],
    )
    assert {(w, d.isoformat()) for w, d, _ in decisions.iter_rows()} == {(w, d) for w in WORLDS for d in want}
    assert set(_rows_per_date(stack.warehouse, "rule_results", days)) == want


@pytest.mark.slow
def test_ranged_backfill_from_the_dagster_cli(tmp_path: Path) -> None:
    """`dagster asset materialize --partition-range` runs the range in ONE run (single-run backfill policy);
    the check report of a date in it is read back from the warehouse, as JSON, with exit code 0."""
    stack = make_stack(tmp_path)
    days = sessions(dt.date(2013, 2, 25), dt.date(2013, 2, 28))
    out = run_cli(
        stack,
        "dagster",
        "asset",
        "materialize",
        "-m",
        "quantlab.definitions",
        "--select",
        "not group:tuning",  # the chain: tuning_studies has its own (strategy) partitions
        "--partition-range",
        f"{days[0]}...{days[-1]}",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    _assert_chain_rows(stack, days)

    instance = dg.DagsterInstance.from_config(str(stack.home))
    (run,) = instance.get_runs()
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["dagster/asset_partition_range_start"] == days[0].isoformat()
    assert run.tags["dagster/asset_partition_range_end"] == days[-1].isoformat()
    # run artifacts, linked from the materialization metadata
    event = instance.get_latest_materialization_event(dg.AssetKey("ohlcv"))
    report = Path(event.asset_materialization.metadata["quality_report"].value)
    assert report.is_file() and report.parent == stack.artifacts / "runs" / run.run_id / "reports"

    code, rows = checks_report(stack, "2013-02-27")
    assert code == 0
    by_check = {r["check"]: r for r in rows}
    assert {"schema", "missing_session", "anomalies"} <= set(by_check)
    for world in WORLDS:
        assert {f"{world}_data_currency", f"{world}_gates", f"{world}_budgets"} <= set(by_check)
    assert all(r["warehouse"]["passed"] for r in rows), rows
    assert by_check["schema"]["warehouse"]["reason"] == f"{SYMBOLS} bars stored"
    # a ranged run stores no check evaluation per partition: the report says so (planned, no verdict)
    assert all(r["dagster"] is None or r["dagster"]["passed"] is None for r in rows)

    # the other commands in-process (same code, no interpreter start-up)
    runner = CliRunner()

    def ql(*args: str) -> Result:
        return runner.invoke(main, list(args), env=stack.env())

    world = ql("checks", "report", "--date", "2013-02-27", "--world", "core_equity")
    assert world.exit_code == 0 and "core_equity_gates" in world.stdout and "momentum_lab" not in world.stdout
    nothing = ql("checks", "report", "--date", "2013-01-02", "--json")
    assert nothing.exit_code == 2 and "nothing recorded for 2013-01-02" in nothing.stderr

    out = ql("report", "--date", "2013-02-27", "--out", str(tmp_path / "r"), "--json")
    assert out.exit_code == 0, out.output
    assert {Path(f).name for f in json.loads(out.stdout)} >= {"checks.md", "approvals.md", "worlds.md"}
    checks_md = (tmp_path / "r" / "checks.md").read_text()
    assert "| ohlcv | schema | blocking | - | PASS | 0 | 5 bars stored |" in checks_md
    worlds = (tmp_path / "r" / "worlds.md").read_text()
    assert all(f"## {w}\n\nPolicy {w}@v1" in worlds for w in WORLDS)
    assert ql("report", "--date", "2013-01-02").exit_code == 2
    valid = ql("validate", "--json")
    assert valid.exit_code == 0 and json.loads(valid.stdout)["worlds"] == list(WORLDS)
