"""The chain in real Dagster runs on the embedded data, into a real DuckDB file.

One module-scoped base run materializes a warm-up range; tests then run single partitions and ranges on
copies of that warehouse. The worlds here are small test worlds (short windows, quick promotions) so that
strategies move through their stages within the few months the tests can afford.
"""

import datetime as dt
import json
import shutil
import warnings
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from quantlab.calendar import sessions
from quantlab.definitions import CHAIN_JOB, build_definitions
from quantlab.jobs import HISTORY_JOB
from quantlab.resources import Warehouse
from quantlab.schemas import TABLES

warnings.filterwarnings("ignore", message=".*(beta|preview).*")

REPO = Path(__file__).resolve().parents[1]
BASE = (dt.date(2011, 9, 1), dt.date(2012, 2, 29))  # warm-up: features, strategies and worlds get going
#: tables a clean five-session range may leave empty (nothing flagged, no stage change, no manual decision,
#: no refit date of a model strategy; tuning studies are not part of the chain)
MAY_BE_EMPTY = {"quality_issues", "stage_history", "overrides", "models", "tuning_trials"}
DAYS = sessions(dt.date(2012, 3, 1), dt.date(2012, 3, 7))  # five sessions after the base range

TEST_WORLD = """
id: {id}
description: test world
owners: [tests]
strategies: {{tags: [{tag}]}}
windows: {{short: 20d, mid: 20d, long: 60d}}
data_currency: {{max_lag: 3d, min_history: 20d}}
stages:
  backtest: {{gates: {{and: ["sharpe_short >= -5", "max_dd_short <= 0.9"]}}}}
  paper: {{min_days: 2d, gates: "sample_days >= 1"}}
selection:
  score: "sharpe_short - max_dd_short"
  topk: {{total: 2}}
  correlation: {{max_pairwise: 0.99, window: short}}
  hysteresis: {{promote_after: 1, demote_after: 3, min_dwell: 2d}}
{allocation}
"""
ALLOCATION = {
    "alpha": "allocation: {method: inverse_vol, max_weight: 0.7, vol_window: short}",
    # the stateful allocation steps: smoothing, the circuit breaker (tight, so it trips and resets within
    # the test dates), the daily loss limit; risk parity and the world book limits
    "beta": """allocation: {method: risk_parity, smoothing: 0.3, max_gross: 0.8, risk_parity: {window: 20d}}
risk:
  drawdown_circuit: {max_dd: 0.01, cut_to: 0.3, cooldown: 2d, resume_below: 0.005}
  daily_loss: {limit: 0.01, cut_to: 0.5}
  exposure: {max_symbol: 0.4}""",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    shutil.copytree(REPO / "strategies", root / "strategies")
    shutil.copytree(REPO / "feature_sets", root / "feature_sets")
    shutil.copy(REPO / "supervisor.yaml", root / "supervisor.yaml")
    (root / "worlds").mkdir()
    for wid, tag in (("alpha", "equity"), ("beta", "momentum")):
        (root / "worlds" / f"{wid}.yaml").write_text(
            TEST_WORLD.format(id=wid, tag=tag, allocation=ALLOCATION[wid])
        )
    return root


def _defs(project: Path, db: Path) -> dg.Definitions:
    return build_definitions(project_root=str(project), warehouse=Warehouse(database=str(db)))


def _run_range(defs: dg.Definitions, start: dt.date, end: dt.date, instance: dg.DagsterInstance):
    tags = {
        "dagster/asset_partition_range_start": start.isoformat(),
        "dagster/asset_partition_range_end": end.isoformat(),
    }
    return defs.resolve_job_def(CHAIN_JOB).execute_in_process(instance=instance, tags=tags)


def _run_day(defs: dg.Definitions, day: dt.date, instance: dg.DagsterInstance):
    return defs.resolve_job_def(CHAIN_JOB).execute_in_process(
        instance=instance, partition_key=day.isoformat()
    )


def _tables(db: Path, start: dt.date, end: dt.date) -> dict[str, pl.DataFrame]:
    wh = Warehouse(database=str(db))
    out = {}
    for name in TABLES:
        df = wh.read_table(name, start, end)
        out[name] = df.sort(df.columns)
    return out


@pytest.fixture(scope="module")
def base(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse holding the base range, materialized by the history job (the demo's bulk path)."""
    db = tmp_path_factory.mktemp("base") / "warehouse.duckdb"
    defs = _defs(project, db)
    config = {
        "resources": {
            "history_window": {"config": {"start": BASE[0].isoformat(), "end": BASE[1].isoformat()}}
        }
    }
    result = defs.resolve_job_def(HISTORY_JOB).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), run_config=config
    )
    assert result.success
    return db


def _copy(base: Path, tmp_path: Path) -> Path:
    db = tmp_path / "warehouse.duckdb"
    shutil.copy(base, db)
    return db


def test_definitions_load_and_jobs_resolve() -> None:
    from quantlab.definitions import defs

    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert {CHAIN_JOB, HISTORY_JOB} <= {j.name for j in repo.get_all_jobs()}
    for schedule in repo.schedule_defs:
        assert repo.get_job(schedule.job_name) is not None
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert {"ohlcv", "features", "labels", "targets", "strategy_returns", "kpis", "approvals"} <= keys
    assert {"world_evaluation/core_equity", "world_allocation/core_equity"} <= keys


def test_history_fills_every_table(base: Path, project: Path) -> None:
    tables = _tables(base, *BASE)
    for name in (
        "ohlcv",
        "features",
        "labels",
        "targets",
        "strategy_returns",
        "trades",
        "kpis",
        "approvals",
        "rule_results",
        "world_decisions",
        "world_returns",
        "audit_log",
        "world_targets",
        "world_risk_events",
    ):
        assert tables[name].height > 0, name
    # beta's tight risk engine tripped and released its circuit breaker over the history, in date order
    events = tables["world_risk_events"].filter(pl.col("world") == "beta").sort("date")
    trips = events.filter(pl.col("event").is_in(["circuit_trip", "circuit_release"])).get_column("event")
    assert trips.len() >= 2 and trips.to_list()[:2] == ["circuit_trip", "circuit_release"]
    track = tables["world_returns"].filter(pl.col("world") == "beta")
    assert track.filter("circuit").height > 0
    decisions = tables["world_decisions"]
    assert decisions.filter(pl.col("stage") == "live").height > 0  # the test worlds promote within the range
    assert tables["world_allocations"].height > 0
    reports = sorted((project / "artifacts" / "runs").glob("*/reports/backtest_summary.md"))
    assert reports and "momentum_top2" in reports[-1].read_text()
    assert (reports[-1].parent / "momentum_top2_equity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run_reports = reports[-1].parent
    assert "## Rules in force" in (run_reports / "approval_summary.md").read_text()
    assert (run_reports / "world_beta.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pl.read_csv(reports[-1].parent.parent / "trades.csv").height == tables["trades"].height
    # next-bar execution: no trade on a strategy's first decision date
    first_target = (
        tables["targets"].filter(pl.col("weight") != 0).group_by("strategy").agg(pl.col("date").min())
    )
    first_trade = tables["trades"].group_by("strategy").agg(pl.col("date").min().alias("trade"))
    joined = first_target.join(first_trade, on="strategy")
    assert (joined.get_column("trade") > joined.get_column("date")).all()


def test_chain_partition_checks_per_world(project: Path, base: Path, tmp_path: Path) -> None:
    db = _copy(base, tmp_path)
    defs = _defs(project, db)
    instance = dg.DagsterInstance.ephemeral()
    day = DAYS[0]
    result = _run_day(defs, day, instance)
    assert result.success
    for world in ("alpha", "beta"):
        for family in ("data_currency", "sample", "gates", "correlation", "selection", "lifecycle"):
            key = dg.AssetCheckKey(dg.AssetKey(["world_evaluation", world]), f"{world}_{family}")
            history = instance.event_log_storage.get_asset_check_execution_history(key, limit=5)
            assert [h.partition for h in history] == [day.isoformat()], (world, family)
        for check in ("budgets", "circuit_breaker"):
            key = dg.AssetCheckKey(dg.AssetKey(["world_allocation", world]), f"{world}_{check}")
            assert (
                instance.event_log_storage.get_asset_check_execution_history(key, limit=5)[0].partition
                == day.isoformat()
            )
    rules = Warehouse(database=str(db)).read_table("rule_results", day, day)
    assert set(rules.get_column("world")) == {"alpha", "beta"}
    assert set(rules.get_column("family")) >= {"data_currency", "sample", "gates", "selection", "lifecycle"}


def test_same_partition_twice_is_identical(project: Path, base: Path, tmp_path: Path) -> None:
    db = _copy(base, tmp_path)
    defs = _defs(project, db)
    instance = dg.DagsterInstance.ephemeral()
    assert _run_day(defs, DAYS[0], instance).success
    first = _tables(db, DAYS[0], DAYS[0])
    assert _run_day(defs, DAYS[0], instance).success
    second = _tables(db, DAYS[0], DAYS[0])
    for name in TABLES:
        assert first[name].equals(second[name]), name
    assert first["ohlcv"].height == 4  # AAPL, GOOG, IBM, MSFT (FB lists in May 2012): no duplicates


def test_ranged_run_equals_day_by_day(project: Path, base: Path, tmp_path: Path) -> None:
    ranged_db = _copy(base, tmp_path)
    daily_db = tmp_path / "daily.duckdb"
    shutil.copy(base, daily_db)
    assert _run_range(_defs(project, ranged_db), DAYS[0], DAYS[-1], dg.DagsterInstance.ephemeral()).success
    daily_defs = _defs(project, daily_db)
    instance = dg.DagsterInstance.ephemeral()
    for day in DAYS:
        assert _run_day(daily_defs, day, instance).success
    ranged, daily = _tables(ranged_db, DAYS[0], DAYS[-1]), _tables(daily_db, DAYS[0], DAYS[-1])
    for name in TABLES:
        assert ranged[name].height > 0 or name in MAY_BE_EMPTY, name
        assert ranged[name].equals(daily[name]), name


def test_history_job_equals_partitioned_range(project: Path, base: Path, tmp_path: Path) -> None:
    """The demo's bulk path (ops) writes exactly what the partitioned assets write for the same range."""
    a, b = tmp_path / "assets.duckdb", tmp_path / "history.duckdb"
    shutil.copy(base, a)
    shutil.copy(base, b)
    assert _run_range(_defs(project, a), DAYS[0], DAYS[-1], dg.DagsterInstance.ephemeral()).success
    config = {
        "resources": {
            "history_window": {"config": {"start": DAYS[0].isoformat(), "end": DAYS[-1].isoformat()}}
        }
    }
    hist = _defs(project, b).resolve_job_def(HISTORY_JOB)
    assert hist.execute_in_process(instance=dg.DagsterInstance.ephemeral(), run_config=config).success
    left, right = _tables(a, DAYS[0], DAYS[-1]), _tables(b, DAYS[0], DAYS[-1])
    for name in TABLES:
        assert left[name].equals(right[name]), name


def test_failing_step_writes_nothing(project: Path, base: Path, tmp_path: Path) -> None:
    """A strategy whose universe names a symbol without data fails `targets` before any write."""
    db = _copy(base, tmp_path)
    bad = tmp_path / "project"
    shutil.copytree(project, bad)
    spec = (
        (bad / "strategies" / "momentum_top2.yaml")
        .read_text()
        .replace("{all: true}", "{symbols: [AAPL, ZZZZ]}")
    )
    assert "ZZZZ" in spec
    (bad / "strategies" / "momentum_top2.yaml").write_text(spec)
    before = _tables(db, DAYS[0], DAYS[0])["targets"]
    result = (
        _defs(bad, db)
        .resolve_job_def(CHAIN_JOB)
        .execute_in_process(
            instance=dg.DagsterInstance.ephemeral(), partition_key=DAYS[0].isoformat(), raise_on_error=False
        )
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "targets" and "ZZZZ" in failure.event_specific_data.error.message
    assert _tables(db, DAYS[0], DAYS[0])["targets"].equals(before)


def test_world_report_cli(project: Path, base: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from quantlab.cli import main

    db = _copy(base, tmp_path)
    env = {"QUANTLAB_WAREHOUSE": str(db), "QUANTLAB_PROJECT_DIR": str(project)}
    runner = CliRunner()
    result = runner.invoke(
        main, ["world", "report", "alpha", "--date", BASE[1].isoformat(), "--json"], env=env
    )
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.output)
    stored = Warehouse(database=str(db)).read_table(
        "world_decisions", BASE[1], BASE[1], where={"world": "alpha"}
    )
    assert sorted(s["strategy"] for s in report["strategies"]) == sorted(stored.get_column("strategy"))
    assert set(report["families"]) == {
        "data_currency",
        "sample",
        "gates",
        "correlation",
        "selection",
        "lifecycle",
    }
    assert result.exit_code == (0 if all(f["passed"] for f in report["families"].values()) else 1)
    missing = runner.invoke(main, ["world", "report", "alpha", "--date", "1999-01-04"], env=env)
    assert missing.exit_code == 2


def test_validate_cli_names_the_bad_file(project: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from quantlab.cli import main

    bad = tmp_path / "project"
    shutil.copytree(project, bad)
    path = bad / "strategies" / "momentum_top2.yaml"
    path.write_text(path.read_text().replace("mom_60 - 0.5 * vol_60", "mom_60 - 0.5 * vol_6O"))
    runner = CliRunner()
    assert runner.invoke(main, ["validate"], env={"QUANTLAB_PROJECT_DIR": str(project)}).exit_code == 0
    result = runner.invoke(main, ["validate"], env={"QUANTLAB_PROJECT_DIR": str(bad)})
    assert result.exit_code == 1
    assert f"{path}:8: signal.score: unknown name 'vol_6O'" in result.output


def test_every_stored_decision_is_reproduced_from_its_snapshot(project: Path, base: Path) -> None:
    """Re-deciding each stored date of the base history from its stored snapshot gives the stored rows."""
    from quantlab.project import Project
    from quantlab.world.decide import decide
    from quantlab.world.evaluate import snapshot_from_doc

    wh = Warehouse(database=str(base))
    worlds = Project(project).worlds
    snaps = wh.read_table("world_snapshots")
    assert snaps.height == len(sessions(*BASE)) * len(worlds)
    for world_id, day, input_hash, doc in snaps.sample(n=40, seed=3).iter_rows():
        plan = decide(snapshot_from_doc(worlds[world_id], json.loads(doc)))
        stored = wh.read_table("world_decisions", day, day, where={"world": world_id}).sort("strategy")
        order = sorted(range(len(plan.states)), key=lambda i: json.loads(doc)["strategies"][i])
        assert stored.get_column("input_hash").unique().to_list() == [input_hash]
        assert stored.get_column("stage").to_list() == [plan.states[i].stage for i in order]
        assert stored.get_column("reason_code").to_list() == [plan.reason_codes[i] for i in order]
        assert stored.get_column("selected").to_list() == [plan.selected[i] for i in order]
        rules = wh.read_table("rule_results", day, day, where={"world": world_id})
        assert sorted(rules.select("strategy", "rule", "status", "reason").rows()) == sorted(
            (r.strategy, r.rule, r.status, r.reason) for r in plan.rules
        )
    history = wh.read_table("stage_history")
    decisions = wh.read_table("world_decisions").sort("world", "strategy", "date")
    moved = decisions.filter(pl.col("stage") != pl.col("stage").shift(1).over("world", "strategy"))
    moved = moved.filter(pl.col("date") > BASE[0])  # the first day's change from the initial state is in too
    assert moved.height <= history.height and history.height > 0


def test_override_from_the_cli_is_applied_and_recorded(project: Path, base: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from quantlab.cli import main

    db = _copy(base, tmp_path)
    env = {"QUANTLAB_WAREHOUSE": str(db), "QUANTLAB_PROJECT_DIR": str(project)}
    runner = CliRunner()
    day = DAYS[0]
    member = Warehouse(database=str(db)).read_table(
        "world_decisions", BASE[1], BASE[1], where={"world": "alpha"}
    )
    target = member.sort("strategy").get_column("strategy")[0]
    refused = runner.invoke(
        main,
        ["world", "override", "alpha", "--strategy", target, "--action", "force_inactive", "--actor", "bob"],
        env=env,
    )
    assert refused.exit_code == 2 and "--reason" in refused.output
    blank = ["--reason", " ", "--actor", "bob"]
    args = ["world", "override", "alpha", "--strategy", target, "--action", "force_inactive"]
    assert runner.invoke(main, [*args, *blank, "--from", day.isoformat()], env=env).exit_code == 2
    ok = runner.invoke(
        main,
        [*args, "--reason", "vendor outage", "--actor", "bob", "--from", day.isoformat(), "--json"],
        env=env,
    )
    assert ok.exit_code == 0, ok.output
    stored = json.loads(ok.output)
    assert stored["actor"] == "bob" and stored["created_at"]
    defs = _defs(project, db)
    assert _run_day(defs, day, dg.DagsterInstance.ephemeral()).success
    wh = Warehouse(database=str(db))
    decision = wh.read_table("world_decisions", day, day, where={"world": "alpha", "strategy": target}).row(
        0, named=True
    )
    assert (decision["stage"], decision["reason_code"]) == ("inactive", "override_force_inactive")
    rule = wh.read_table("rule_results", day, day, where={"world": "alpha", "rule": "override"}).row(
        0, named=True
    )
    assert rule["strategy"] == target and "force_inactive by bob: vendor outage" in rule["reason"]
    snap = json.loads(wh.read_table("world_snapshots", day, day, where={"world": "alpha"})["snapshot"][0])
    assert snap["overrides"][target][:3] == ["force_inactive", "bob", "vendor outage"]


def test_validation_reports_and_model_cards(project: Path, base: Path) -> None:
    """The history run behind `base` wrote each world's validation report and its members' model cards."""
    period = f"period: {BASE[0]} .. {BASE[1]}"
    reports = [
        p
        for p in (project / "artifacts" / "runs").glob("*/reports/validation_alpha.md")
        if period in p.read_text()
    ]
    assert len(reports) == 1, "no validation report of the base history run"
    text = reports[0].read_text()
    for section in (
        "## Scope",
        "## Validation profile",
        "## Results by rule family",
        "## Stage transitions",
        "## Limitations",
    ):
        assert section in text
    assert "| gates | soft | quant |" in text
    cards = sorted(p.stem for p in reports[0].parent.glob("model_cards/*.md"))
    assert "momentum_top2" in cards
    card = (reports[0].parent / "model_cards" / "momentum_top2.md").read_text()
    assert "## Purpose" in card and "## Assumptions" in card and "fee 1.0 bps + slippage 5.0 bps" in card


def test_checks_report_and_status_cli(project: Path, base: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from quantlab.cli import main

    db, home = _copy(base, tmp_path), tmp_path / "dagster_home"
    home.mkdir()
    instance = dg.DagsterInstance.local_temp(tempdir=str(home))
    assert _run_day(_defs(project, db), DAYS[0], instance).success
    env = {"QUANTLAB_WAREHOUSE": str(db), "QUANTLAB_PROJECT_DIR": str(project), "DAGSTER_HOME": str(home)}
    runner = CliRunner()
    result = runner.invoke(main, ["checks", "report", "--date", DAYS[0].isoformat(), "--json"], env=env)
    assert result.exit_code in (0, 1), result.output
    rows = {r["check"]: r for r in json.loads(result.output)}
    assert {"schema", "stale_data", "anomalies", "alpha_gates", "beta_budgets"} <= set(rows)
    for row in rows.values():  # the single-partition run recorded every check; the warehouse agrees
        assert row["dagster"] is not None and row["dagster"]["status"] in ("SUCCEEDED", "FAILED"), row
        assert row["dagster"]["passed"] == row["warehouse"]["passed"], row
    blocking_fail = any(r["severity"] == "blocking" and not r["warehouse"]["passed"] for r in rows.values())
    assert result.exit_code == (1 if blocking_fail else 0)
    history_day = runner.invoke(
        main, ["checks", "report", "--date", BASE[1].isoformat(), "--world", "alpha", "--json"], env=env
    )
    alpha = json.loads(history_day.output)
    assert alpha and all(r["dagster"] is None and r["warehouse"]["passed"] is not None for r in alpha)
    assert runner.invoke(main, ["checks", "report", "--date", "1999-01-04"], env=env).exit_code == 2
    state = runner.invoke(main, ["status", "--json"], env=env)
    assert state.exit_code == 0, state.output
    report = json.loads(state.output)
    latest = {a["asset"]: a["partition"] for a in report["assets"]}
    assert latest["ohlcv"] == DAYS[0].isoformat() and latest["world_evaluation/alpha"] == DAYS[0].isoformat()
    assert report["tables"]["world_decisions"]["newest"] == DAYS[0].isoformat()


def test_config_sensor_requests_the_evaluation_of_a_changed_strategy(
    project: Path, base: Path, tmp_path: Path
) -> None:
    from quantlab.sensors import SENSOR

    root = tmp_path / "project"
    shutil.copytree(project, root, ignore=shutil.ignore_patterns("artifacts"))
    db = _copy(base, tmp_path)
    defs = build_definitions(project_root=str(root), warehouse=Warehouse(database=str(db)))
    sensor = defs.resolve_sensor_def(SENSOR)
    instance = dg.DagsterInstance.ephemeral()
    repo = defs.get_repository_def()

    def tick(cursor: str | None) -> dg.SensorResult | dg.SkipReason:
        return sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, cursor=cursor, repository_def=repo)
        )

    first = tick(None)
    assert not first.run_requests and first.cursor
    assert not tick(first.cursor).run_requests  # nothing changed
    (root / "strategies" / "low_vol.yaml").write_text(
        (root / "strategies" / "low_vol.yaml").read_text() + "\n# edited\n"
    )
    assert not tick(first.cursor).run_requests  # changed, but nothing materialized yet on this instance
    assert _run_day(defs, DAYS[0], instance).success
    (root / "worlds" / "alpha.yaml").write_text((root / "worlds" / "alpha.yaml").read_text() + "\n# edited\n")
    result = tick(first.cursor)
    (request,) = result.run_requests
    assert request.partition_key == DAYS[0].isoformat() and result.cursor != first.cursor
    selected = {k.to_user_string() for k in request.asset_selection}
    assert {"targets", "kpis", "world_evaluation/alpha", "world_allocation/beta"} <= selected
    assert "ohlcv" not in selected and "features" not in selected


def test_kpis_count_trades_and_measure_each_leg(base: Path) -> None:
    """`trades_<window>` counts the `trades` rows of the window's sessions; legs are measured per side."""
    wh = Warehouse(database=str(base))
    kpis = wh.read_table("kpis", *BASE)
    returns = wh.read_table("strategy_returns", end=BASE[1])
    trades = wh.read_table("trades", end=BASE[1])
    day = BASE[1]
    for sid in ("mean_reversion", "ml_gbm"):  # enough history in the base range for a full 20d window
        rows = returns.filter(pl.col("strategy") == sid).sort("date")
        last20 = rows.filter(pl.col("date") <= day).tail(20).get_column("date")
        expected = trades.filter((pl.col("strategy") == sid) & pl.col("date").is_in(last20.implode())).height
        row = kpis.filter((pl.col("strategy") == sid) & (pl.col("date") == day) & (pl.col("window") == "20d"))
        assert row.get_column("trades").item() == expected > 0
        full = kpis.filter(
            (pl.col("strategy") == sid) & (pl.col("date") == day) & (pl.col("window") == "full")
        )
        assert full.get_column("trades").item() == trades.filter(pl.col("strategy") == sid).height
        assert full.get_column("long_sharpe").item() is not None
    short = kpis.filter((pl.col("date") == day) & (pl.col("window") == "full")).select(
        "strategy", "short_max_dd"
    )
    by_id = dict(short.iter_rows())
    assert by_id["momentum_top2"] is None  # long only: no short leg
    assert by_id["ml_gbm"] > 0  # long the two best, short the worst


def test_summary_shows_each_world_track_and_allocation_history(base: Path) -> None:
    from quantlab.summary import render_text, world_summary

    wh = Warehouse(database=str(base))
    beta = world_summary(wh, "beta", BASE[1])
    months = {d[:7] for d, _ in beta["equity_curve"]}
    assert len(months) == 6 and beta["equity_curve"][-1][1] == pytest.approx(beta["track"]["equity"])
    assert beta["risk_events"]["circuit_trip"] >= 1 and beta["circuit"]["on"] in (True, False)
    assert beta["allocation_changes"] and all("%" in a or a == "cash" for _, a in beta["allocation_changes"])
    text = render_text(
        {
            "run_id": "r",
            "status": "SUCCESS",
            "start": BASE[0].isoformat(),
            "end": BASE[1].isoformat(),
            "dataset": "embedded",
            "worlds": [beta],
            "checks": [],
            "warehouse": str(base),
            "artifacts": "/tmp/a",
        }
    )
    assert "circuit breaker" in text and "equity by month 2011-09 .. 2012-02" in text
    assert "chart: /tmp/a/reports/world_beta.png" in text
